"""The store: one global resourceVersion, bounded history, watch translation, ordered dispatch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd.emulator.store import ADDED, DELETED, MODIFIED, Store, StoreEvent, TooOldResourceVersion


def obj(name: str, *, namespace: str = "", **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": fields.pop("labels", {})}, **fields}


def test_one_resource_version_counter_for_every_bucket() -> None:
    store = Store(initial_rv=100)
    a = store.put("nodes", obj("a"))
    b = store.put("leases.coordination.k8s.io", obj("b", namespace="ns"))
    assert (a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"]) == ("101", "102")
    gone = store.remove("nodes", "", "a")
    assert gone is not None
    assert gone["metadata"]["resourceVersion"] == "103"
    assert store.remove("nodes", "", "a") is None


async def test_watch_translates_selector_enter_and_leave() -> None:
    store = Store()
    store.put("nodes", obj("a", labels={"x": "1"}))
    rv = store.resource_version
    store.put("nodes", obj("a", labels={"x": "2"}))
    store.put("nodes", obj("a", labels={"x": "1", "y": "1"}))
    store.remove("nodes", "", "a")
    watcher, backlog = store.watch(
        "nodes", namespace=None, predicate=lambda o: o["metadata"]["labels"].get("x") == "1", since=rv
    )
    assert [kind for kind, _ in backlog] == [DELETED, ADDED, DELETED]
    left = backlog[0][1]
    assert left["metadata"]["labels"] == {"x": "1"}
    assert left["metadata"]["resourceVersion"] == str(rv + 1)
    store.unwatch(watcher)


async def test_history_window_makes_old_resource_versions_too_old() -> None:
    store = Store(history_size=3, initial_rv=0)
    for index in range(5):
        store.put("nodes", obj(f"n{index}"))
    with pytest.raises(TooOldResourceVersion) as info:
        store.watch("nodes", namespace=None, predicate=None, since=1)
    assert (info.value.requested, info.value.oldest) == (1, 3)
    watcher, backlog = store.watch("nodes", namespace=None, predicate=None, since=2)
    assert [o["metadata"]["name"] for _, o in backlog] == ["n2", "n3", "n4"]
    store.unwatch(watcher)
    fresh, backlog = store.watch(
        "leases", namespace=None, predicate=None, since=1
    )  # other buckets keep theirs
    assert backlog == []
    store.unwatch(fresh)


def test_listener_writes_are_dispatched_after_the_current_event() -> None:
    store = Store(initial_rv=0)
    seen: list[tuple[int, str]] = []

    def listener(event: StoreEvent) -> None:
        seen.append((event.rv, event.type))
        if event.storage == "nodes" and event.type == ADDED:
            store.put("events", obj("e", namespace="default"))

    store.add_listener(listener)
    store.add_listener(lambda event: seen.append((event.rv, "second")))
    store.put("nodes", obj("a"))
    assert seen == [(1, ADDED), (1, "second"), (2, ADDED), (2, "second")]


def test_pods_are_indexed_by_node() -> None:
    store = Store()
    store.put("pods", obj("p", namespace="ns", spec={"nodeName": "n1"}))
    store.put("pods", obj("q", namespace="ns", spec={"nodeName": "n1"}))
    store.put("pods", obj("p", namespace="ns", spec={"nodeName": "n2"}))
    assert [p["metadata"]["name"] for p in store.pods_on_node("n1")] == ["q"]
    store.remove("pods", "ns", "p")
    assert store.pods_on_node("n2") == []


@given(
    st.lists(st.tuples(st.sampled_from(["put", "remove"]), st.sampled_from(["a", "b", "c"])), max_size=30),
    st.integers(min_value=0, max_value=30),
)
def test_a_watch_from_rv_n_replays_exactly_the_later_changes(ops: list[tuple[str, str]], cut: int) -> None:
    store = Store(initial_rv=0)
    log: list[tuple[int, str, str]] = []
    for op, name in ops:
        if op == "put":
            existed = store.get("nodes", "", name) is not None
            stored = store.put("nodes", obj(name))
            log.append((int(stored["metadata"]["resourceVersion"]), MODIFIED if existed else ADDED, name))
        elif store.remove("nodes", "", name) is not None:
            log.append((store.resource_version, DELETED, name))
    since = min(cut, store.resource_version)
    watcher, backlog = store.watch("nodes", namespace=None, predicate=None, since=since)
    expected = [(rv, kind, name) for rv, kind, name in log if rv > since]
    got = [(int(o["metadata"]["resourceVersion"]), kind, o["metadata"]["name"]) for kind, o in backlog]
    assert got == expected
    store.unwatch(watcher)


async def test_indexed_watchers_get_only_their_objects_including_a_move_away() -> None:
    store = Store(initial_rv=0)
    on_n1, _ = store.watch(
        "pods",
        namespace=None,
        predicate=lambda o: (o.get("spec") or {}).get("nodeName") == "n1",
        since=0,
        index=("spec.nodeName", "n1"),
    )
    by_name, _ = store.watch(
        "pods",
        namespace=None,
        predicate=lambda o: o["metadata"]["name"] == "b",
        since=0,
        index=("metadata.name", "b"),
    )
    store.put("pods", obj("a", namespace="ns", spec={"nodeName": "n1"}))
    store.put("pods", obj("b", namespace="ns", spec={"nodeName": "n2"}))
    store.put("pods", obj("a", namespace="ns", spec={"nodeName": "n2"}))  # leaves n1
    seen_n1 = [on_n1.queue.get_nowait() for _ in range(on_n1.queue.qsize())]
    assert [(kind, o["metadata"]["name"]) for kind, o in seen_n1] == [(ADDED, "a"), (DELETED, "a")]
    seen_b = [by_name.queue.get_nowait() for _ in range(by_name.queue.qsize())]
    assert [(kind, o["metadata"]["name"]) for kind, o in seen_b] == [(ADDED, "b")]
    assert store.watcher_count() == 2
    store.unwatch(on_n1)
    store.unwatch(by_name)
    assert store.watcher_count() == 0
    with pytest.raises(ValueError, match="cannot index"):
        store.watch("pods", namespace=None, predicate=None, since=None, index=("status.phase", "Running"))
