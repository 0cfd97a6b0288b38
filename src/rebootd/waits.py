"""The one interruptible sleep: wait some seconds, or less when a stop Event is set; and its
sibling for several events (`wait_any`).

Rule: a task that pauses (a back-off, a period between checks, a deliberate delay) pauses with
`sleep_or_stop`, so a stop request (SIGTERM, a lost slot, a halted rollout) ends the pause at
once instead of after it, and every pause is bounded by its `seconds`. A cancellation is never
swallowed: it uses `asyncio.timeout`, not `asyncio.wait_for`, which on Python 3.11 can lose a
cancellation that races the wake-up (and the slot guard cancels the drain that way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

__all__ = ["reap", "sleep_or_stop", "wait_any"]


async def sleep_or_stop(*, seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep `seconds` (a negative value counts as 0), returning early once `stop` is set;
    True when `stop` is set (before, during or at the end of the sleep). `stop` None: a plain,
    still cancellable, sleep."""
    if stop is None:
        await asyncio.sleep(max(0.0, seconds))
        return False
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()
    return stop.is_set()


async def wait_any(*, events: Sequence[asyncio.Event], seconds: float | None) -> bool:
    """Wait until one of `events` is set (True) or `seconds` pass (False; None: no bound, for a
    caller whose events include one that surely comes, such as a stop). The per-event waiters
    live in a task group: none outlives the call, a cancellation reaps them and propagates."""
    if any(event.is_set() for event in events):
        return True
    with contextlib.suppress(TimeoutError):
        async with (
            asyncio.timeout(None if seconds is None else max(0.0, seconds)),
            asyncio.TaskGroup() as group,
        ):
            waiters = [group.create_task(event.wait()) for event in events]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
    return any(event.is_set() for event in events)


async def reap(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (None: nothing to do). Its own
    cancellation is swallowed; a cancellation of the caller itself still propagates."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
