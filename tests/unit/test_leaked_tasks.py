"""The leaked-task check every test runs under (tests/fixtures/tasks.py, tests/conftest.py)."""

from __future__ import annotations

import asyncio

from tests.fixtures.tasks import leaked_tasks


async def test_a_task_left_running_is_named_and_cancelled() -> None:
    before = asyncio.all_tasks()
    forgotten = asyncio.create_task(asyncio.sleep(3600), name="forgotten-watch")

    leaked = await leaked_tasks(before=before, grace=0.05)

    assert len(leaked) == 1
    assert leaked[0].startswith("forgotten-watch (<coroutine object sleep")
    assert forgotten.cancelled()


async def test_a_task_that_ends_within_the_grace_is_no_leak() -> None:
    before = asyncio.all_tasks()
    ending = asyncio.create_task(asyncio.sleep(0.01), name="ending")

    assert await leaked_tasks(before=before, grace=1.0) == []
    assert ending.done()
    assert not ending.cancelled()


async def test_tasks_running_before_the_test_are_not_its_leaks() -> None:
    earlier = asyncio.create_task(asyncio.sleep(3600), name="earlier")
    try:
        assert await leaked_tasks(before=asyncio.all_tasks(), grace=0.01) == []
        assert not earlier.done()
    finally:
        earlier.cancel()
        await asyncio.gather(earlier, return_exceptions=True)
