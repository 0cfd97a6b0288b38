"""Contract section 7: watch resourceVersion semantics, selectors, 410, bookmarks, timeouts, overflow."""

from __future__ import annotations

import asyncio
import contextlib
import time
from unittest.mock import ANY

from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.backends import Cluster
from tests.integration.emulator.http import LEASES, NODES, PODS, RawApi, lease


async def test_watch_without_resource_version_starts_with_synthetic_added(
    cluster: Cluster, raw: RawApi
) -> None:
    await cluster.add_node(name="node-a")
    await cluster.add_node(name="node-b")
    events = await raw.watch(f"{NODES}?watch=1&timeoutSeconds=1", max_events=2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "node-a"),
        ("ADDED", "node-b"),
    ]
    assert events[0]["object"]["kind"] == "Node"
    assert events[0]["object"]["apiVersion"] == "v1"
    zero = await raw.watch(f"{NODES}?watch=1&resourceVersion=0&timeoutSeconds=1", max_events=2)
    assert len(zero) == 2


async def test_watch_from_a_resource_version_sends_only_later_changes(cluster: Cluster, raw: RawApi) -> None:
    created = (await raw.post(LEASES, lease("lock"))).body
    rv = created["metadata"]["resourceVersion"]
    updated = (
        await raw.put(f"{LEASES}/lock", dict(created, spec=dict(created["spec"], holderIdentity="b")))
    ).body
    await raw.delete(f"{LEASES}/lock")
    events = await raw.watch(f"{LEASES}?watch=1&resourceVersion={rv}&timeoutSeconds=1", max_events=2)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(
        updated["metadata"]["resourceVersion"]
    )


async def test_selector_enter_and_leave_become_added_and_deleted(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    rv = await cluster.resource_version()
    path = f"{NODES}/node-a"
    for value in (True, None):
        await raw.patch(
            path, {"spec": {"unschedulable": value}}, content_type="application/strategic-merge-patch+json"
        )
    events = await raw.watch(
        f"{NODES}?watch=1&resourceVersion={rv}&fieldSelector=spec.unschedulable%3Dtrue&timeoutSeconds=1",
        max_events=5,
    )
    types = [e["type"] for e in events]
    # entered, then left; on the real server the node lifecycle controller may taint the cordoned
    # node in between (a MODIFIED while it matches)
    assert (types[0], types[-1]) == ("ADDED", "DELETED")
    assert set(types[1:-1]) <= {"MODIFIED"}
    if cluster.emulator is not None:
        assert types == ["ADDED", "DELETED"]
    left = events[-1]["object"]
    assert left["spec"]["unschedulable"] is True  # the previous content ...
    assert int(left["metadata"]["resourceVersion"]) > int(events[-2]["object"]["metadata"]["resourceVersion"])


async def test_too_old_resource_version_is_an_error_event_with_410(emulator: Emulator, raw: RawApi) -> None:
    emulator.add_node(name="node-a")
    old_rv = emulator.store.resource_version
    emulator.add_node(name="node-b")
    emulator.compact()
    events = await raw.watch(f"{NODES}?watch=1&resourceVersion={old_rv - 1}", max_events=5)
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["code"] == 410
    assert status["reason"] == "Expired"
    assert status["kind"] == "Status"
    assert status["message"].startswith(f"too old resource version: {old_rv - 1} (")


async def test_bookmarks_carry_only_the_resource_version(cluster: Cluster, raw: RawApi) -> None:
    cluster.differs(
        "bookmark timing: the emulator sends one every bookmark_interval (0.3 s in tests), the real"
        " apiserver about once a minute, so a 1-2 s watch sees none there"
    )
    await cluster.add_node(name="node-a")
    rv = await cluster.resource_version()
    events = await raw.watch(
        f"{PODS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2", max_events=1
    )
    assert events[0]["type"] == "BOOKMARK"
    bookmark = events[0]["object"]
    assert bookmark == {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": ANY}}
    # the newest version when it was sent (the kubelets' heartbeats may have written since `rv`)
    assert int(bookmark["metadata"]["resourceVersion"]) >= rv


async def test_timeout_seconds_closes_the_stream_cleanly(cluster: Cluster, raw: RawApi) -> None:
    started = time.monotonic()
    events = await raw.watch(
        f"{LEASES}?watch=1&resourceVersion={await cluster.resource_version()}&timeoutSeconds=1", max_events=5
    )
    elapsed = time.monotonic() - started
    assert events == []
    assert 0.9 <= elapsed < 5.0
    if (
        cluster.emulator is not None
    ):  # the emulator also forgets the watcher (the real server's is not visible)
        assert cluster.emulator.store.watcher_count() == 0


async def test_events_arrive_while_the_watch_is_open(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    rv = await cluster.resource_version()
    received: list[tuple[str, str]] = []

    async def consume() -> None:
        async for event in raw.watch_stream(
            f"{NODES}?watch=1&resourceVersion={rv}&timeoutSeconds=5", max_events=10
        ):
            received.append((event["type"], event["object"]["metadata"]["name"]))
            if received[-1] == ("ADDED", "node-b"):
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await cluster.set_node_ready(name="node-a", ready=False)
    await cluster.add_node(name="node-b")
    await asyncio.wait_for(task, timeout=5)
    # our change first, then node-b; on the real server the node lifecycle controller may answer
    # node-a's NotReady (a taint) in between
    assert received[0] == ("MODIFIED", "node-a")
    assert received[-1] == ("ADDED", "node-b")
    assert set(received[1:-1]) <= {("MODIFIED", "node-a")}
    if cluster.emulator is not None:
        assert received == [("MODIFIED", "node-a"), ("ADDED", "node-b")]


async def test_a_watcher_that_falls_behind_gets_410_instead_of_unbounded_memory(
    emulator: Emulator, raw: RawApi
) -> None:
    emulator.store.watch_queue_size = 5
    emulator.add_node(name="node-a")
    rv = emulator.store.resource_version
    received: list[dict[str, object]] = []

    async def consume() -> None:
        async for event in raw.watch_stream(
            f"{NODES}?watch=1&resourceVersion={rv}&timeoutSeconds=5", max_events=20
        ):
            received.append(event)

    task = asyncio.create_task(consume())
    for _ in range(100):  # bounded: until the server registered the watcher
        if emulator.store.watcher_count():
            break
        await asyncio.sleep(0.01)
    for index in range(10):  # ten events before the stream handler can run again: its queue holds five
        emulator.add_node(name=f"extra-{index}")
    await asyncio.wait_for(task, timeout=5)
    assert [e["type"] for e in received] == ["ERROR"]
    assert received[0]["object"]["code"] == 410  # type: ignore[index]
    assert emulator.store.watcher_count() == 0


async def test_bookmarks_never_run_ahead_of_the_events_they_follow(cluster: Cluster, raw: RawApi) -> None:
    cluster.differs(
        "bookmark timing: the emulator sends one every bookmark_interval (0.3 s in tests), the real"
        " apiserver about once a minute, so a 1-2 s watch sees none there"
    )
    await cluster.add_node(name="node-a")
    rv = await cluster.resource_version()
    stop = asyncio.Event()

    async def churn() -> None:
        ready = False
        while not stop.is_set():
            ready = not ready
            await cluster.set_node_ready(name="node-a", ready=ready)
            await cluster.add_pod(
                name=f"p-{(await cluster.resource_version())}", node="node-a"
            )  # other kinds move RV too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.01)

    writer = asyncio.create_task(churn())
    try:
        events = await raw.watch(
            f"{NODES}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1",
            max_events=10_000,
        )
    finally:
        stop.set()
        await writer
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert {e["type"] for e in events} == {"MODIFIED", "BOOKMARK"}


async def test_watch_list_sends_initial_events_then_an_end_bookmark(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    last = await cluster.add_node(name="node-b")
    query = "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    events = await raw.watch(f"{NODES}?{query}&timeoutSeconds=1", max_events=3)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    bookmark = events[2]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    # at the server's latest version when it was sent (real controllers may have written since)
    latest = await cluster.resource_version()
    marked = int(bookmark["metadata"]["resourceVersion"])
    assert int(last["metadata"]["resourceVersion"]) <= marked <= latest
    if cluster.emulator is not None:
        assert marked == latest
