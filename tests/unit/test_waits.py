"""The one interruptible sleep: bounded by its seconds, cut short by the stop event, never
swallowing a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from rebootd.waits import sleep_or_stop


async def test_sleep_or_stop_sleeps_its_seconds_when_nothing_stops_it() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sleep_or_stop(seconds=0.05, stop=asyncio.Event()) is False
    assert loop.time() - started >= 0.05


async def test_sleep_or_stop_returns_at_once_when_stop_is_already_set() -> None:
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(1.0):
        assert await sleep_or_stop(seconds=3600, stop=stop) is True


async def test_sleep_or_stop_returns_early_when_stop_is_set_during_the_sleep() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, stop.set)
    async with asyncio.timeout(5.0):
        assert await sleep_or_stop(seconds=3600, stop=stop) is True


async def test_sleep_or_stop_without_a_stop_event_is_a_plain_bounded_sleep() -> None:
    assert await sleep_or_stop(seconds=-1.0, stop=None) is False


async def test_sleep_or_stop_lets_a_cancellation_through() -> None:
    task = asyncio.create_task(sleep_or_stop(seconds=3600, stop=asyncio.Event()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
