"""The one interruptible sleep: bounded by its seconds, cut short by the stop event, never
swallowing a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from rebootd.waits import reap, sleep_or_stop, wait_any


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


async def test_wait_any_returns_true_as_soon_as_one_event_is_set_and_leaves_no_waiter() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, second.set)
    before = len(asyncio.all_tasks())
    async with asyncio.timeout(5.0):
        assert await wait_any(events=[first, second], seconds=3600) is True
    assert len(asyncio.all_tasks()) == before


async def test_wait_any_returns_false_when_the_seconds_pass_with_none_set() -> None:
    assert await wait_any(events=[asyncio.Event(), asyncio.Event()], seconds=0.02) is False


async def test_wait_any_with_an_event_already_set_returns_at_once() -> None:
    done = asyncio.Event()
    done.set()
    assert await wait_any(events=[asyncio.Event(), done], seconds=3600) is True


async def test_wait_any_lets_a_cancellation_through() -> None:
    task = asyncio.create_task(wait_any(events=[asyncio.Event()], seconds=3600))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wait_any_without_a_bound_waits_for_an_event() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, stop.set)
    async with asyncio.timeout(5.0):
        assert await wait_any(events=[asyncio.Event(), stop], seconds=None) is True


async def test_reap_ends_a_background_task_and_lets_the_callers_own_cancellation_through() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await reap(task)
    assert task.cancelled()
    await reap(None)  # nothing to reap

    async def slow_to_end() -> None:  # takes a while to end once cancelled
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            raise

    went_on = False

    async def reaper() -> None:
        nonlocal went_on
        inner = asyncio.create_task(slow_to_end())
        await asyncio.sleep(0)
        await reap(inner)  # the reaper itself is cancelled while it waits here
        went_on = True

    outer = asyncio.create_task(reaper())
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not went_on
