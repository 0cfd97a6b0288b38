"""The emulator's object store: plain dicts, one global resourceVersion, watch fan-out, history.

Rules:
- Stored objects are never mutated in place: every write stores a new dict, so a watch event or a
  list snapshot may keep a reference to an old one safely (callers copy before changing).
- One resourceVersion counter for every type; a write that changes nothing is not a write.
- Each resource keeps a bounded window of past events; a watch from before the window is `410`.
- Watchers get events through their own bounded queue; a watcher that falls behind is marked
  overflowed (the HTTP layer answers it with a 410 ERROR) instead of growing memory.
- Events are dispatched in resourceVersion order: a listener that writes from inside a dispatch
  has its event queued behind the current one.
Everything runs on one event loop thread; nothing here awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@dataclass(frozen=True)
class StoreEvent:
    """One change. `obj` is the object after the change (for DELETED: the last state, stamped with
    the deletion's resourceVersion); `old` the object before (None for ADDED)."""

    rv: int
    storage: str
    type: str
    obj: JsonObj
    old: JsonObj | None


Predicate = Callable[[JsonObj], bool]


@dataclass
class Watcher:
    """A registered watch: events of one store bucket, optionally one namespace and a predicate
    (label/field selectors). `queue` carries (type, object) pairs ready to serialise."""

    storage: str
    namespace: str | None
    predicate: Predicate | None
    queue: asyncio.Queue[tuple[str, JsonObj]]
    overflowed: bool = False
    closed: bool = False
    index: tuple[str, str] | None = None  # (field, value) the selector pins: fan-out by look-up

    def _matches(self, obj: JsonObj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return self.predicate is None or self.predicate(obj)

    def translate(self, event: StoreEvent) -> tuple[str, JsonObj] | None:
        """The event this watcher sees: selector enter -> ADDED, leave -> DELETED (with the previous
        content stamped with the event's resourceVersion), as kube's cacheWatcher does."""
        if event.type == DELETED:
            return (DELETED, event.obj) if self._matches(event.obj) else None
        now = self._matches(event.obj)
        before = self._matches(event.old)
        if now and before:
            return MODIFIED, event.obj
        if now:
            return ADDED, event.obj
        if before and event.old is not None:
            left = dict(event.old)
            left["metadata"] = dict(event.old["metadata"], resourceVersion=str(event.rv))
            return DELETED, left
        return None

    def offer(self, event: StoreEvent) -> None:
        if self.closed or self.overflowed:
            return
        seen = self.translate(event)
        if seen is None:
            return
        try:
            self.queue.put_nowait(seen)
        except asyncio.QueueFull:
            self.overflowed = True


INDEXED_FIELDS = frozenset({"metadata.name", "spec.nodeName"})


def index_value(field_name: str, obj: JsonObj | None) -> str:
    """The value of an indexable field ("" when absent or for no object)."""
    if obj is None:
        return ""
    if field_name == "metadata.name":
        return str(obj["metadata"].get("name", ""))
    return str((obj.get("spec") or {}).get("nodeName") or "")


class TooOldResourceVersion(Exception):
    def __init__(self, *, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass
class _Bucket:
    objects: dict[Key, JsonObj] = field(default_factory=dict)
    history: deque[StoreEvent] = field(default_factory=deque)
    compacted_rv: int = 0  # events at or below this RV are gone from `history`
    watchers: list[Watcher] = field(default_factory=list)  # offered every event
    indexed: dict[tuple[str, str], list[Watcher]] = field(default_factory=dict)  # offered on a match only
    index_fields: dict[str, int] = field(default_factory=dict)  # field -> indexed watchers using it


class Store:
    def __init__(
        self, *, history_size: int = 50_000, watch_queue_size: int = 20_000, initial_rv: int = 1000
    ) -> None:
        self._rv = initial_rv
        self._initial_rv = initial_rv
        self._history_size = history_size
        self.watch_queue_size = watch_queue_size
        self._buckets: dict[str, _Bucket] = {}
        self.pods_by_node: dict[str, set[Key]] = {}
        self.pods_by_owner: dict[str, set[Key]] = {}  # controller ownerReference uid -> pods
        self._listeners: list[Callable[[StoreEvent], None]] = []
        self._pending: deque[StoreEvent] = deque()
        self._dispatching = False

    # -- reading ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _bucket(self, storage: str) -> _Bucket:
        bucket = self._buckets.get(storage)
        if bucket is None:
            bucket = _Bucket(compacted_rv=self._initial_rv)
            self._buckets[storage] = bucket
        return bucket

    def get(self, storage: str, namespace: str, name: str) -> JsonObj | None:
        """The stored object (do not mutate it) or None."""
        return self._bucket(storage).objects.get((namespace, name))

    def iter_objects(self, storage: str, namespace: str | None = None) -> Iterator[JsonObj]:
        for (ns, _), obj in self._bucket(storage).objects.items():
            if namespace is None or ns == namespace:
                yield obj

    def sorted_objects(self, storage: str, namespace: str | None = None) -> list[JsonObj]:
        """Objects in etcd key order (namespace, name)."""
        objects = self._bucket(storage).objects
        keys = sorted(k for k in objects if namespace is None or k[0] == namespace)
        return [objects[k] for k in keys]

    def pods_on_node(self, node: str) -> list[JsonObj]:
        objects = self._bucket("pods").objects
        return [objects[k] for k in sorted(self.pods_by_node.get(node, ())) if k in objects]

    def count(self, storage: str) -> int:
        return len(self._bucket(storage).objects)

    # -- writing ---------------------------------------------------------------------------------

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def put(self, storage: str, obj: JsonObj) -> JsonObj:
        """Store `obj` (a dict nobody else holds) as a new version; returns it with its new RV."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "") or "", meta["name"])
        bucket = self._bucket(storage)
        old = bucket.objects.get(key)
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        bucket.objects[key] = obj
        if storage == "pods":
            self._reindex_pod(key, old, obj)
        self._emit(
            StoreEvent(rv=rv, storage=storage, type=ADDED if old is None else MODIFIED, obj=obj, old=old)
        )
        return obj

    def remove(self, storage: str, namespace: str, name: str) -> JsonObj | None:
        bucket = self._bucket(storage)
        old = bucket.objects.pop((namespace, name), None)
        if old is None:
            return None
        rv = self.next_rv()
        gone = dict(old)
        gone["metadata"] = dict(old["metadata"], resourceVersion=str(rv))
        if storage == "pods":
            self._reindex_pod((namespace, name), old, None)
        self._emit(StoreEvent(rv=rv, storage=storage, type=DELETED, obj=gone, old=old))
        return gone

    def pods_of_owner(self, uid: str) -> list[JsonObj]:
        """Pods whose controller ownerReference has `uid`, in key order."""
        objects = self._bucket("pods").objects
        return [objects[k] for k in sorted(self.pods_by_owner.get(uid, ())) if k in objects]

    def _reindex_pod(self, key: Key, old: JsonObj | None, new: JsonObj | None) -> None:
        old_owner, new_owner = _controller_uid(old), _controller_uid(new)
        if old_owner != new_owner or new is None:
            if old_owner:
                self.pods_by_owner.get(old_owner, set()).discard(key)
            if new_owner and new is not None:
                self.pods_by_owner.setdefault(new_owner, set()).add(key)
        old_node = ((old or {}).get("spec") or {}).get("nodeName") or ""
        new_node = ((new or {}).get("spec") or {}).get("nodeName") or ""
        if old is not None and old_node:
            keys = self.pods_by_node.get(old_node)
            if keys is not None:
                keys.discard(key)
        if new is not None and new_node:
            self.pods_by_node.setdefault(new_node, set()).add(key)

    def _emit(self, event: StoreEvent) -> None:
        self._pending.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                current = self._pending.popleft()
                bucket = self._bucket(current.storage)
                bucket.history.append(current)
                while len(bucket.history) > self._history_size:
                    bucket.compacted_rv = bucket.history.popleft().rv
                for watcher in bucket.watchers:
                    watcher.offer(current)
                if bucket.indexed:
                    self._offer_indexed(bucket, current)
                for listener in self._listeners:
                    listener(current)
        finally:
            self._dispatching = False

    # -- watching --------------------------------------------------------------------------------

    @staticmethod
    def _offer_indexed(bucket: _Bucket, event: StoreEvent) -> None:
        for field_name in bucket.index_fields:
            values = {index_value(field_name, event.obj), index_value(field_name, event.old)}
            for value in values:
                for watcher in bucket.indexed.get((field_name, value), ()):
                    watcher.offer(event)

    def add_listener(self, listener: Callable[[StoreEvent], None]) -> None:
        """In-process observers (the simulated controllers); called after watchers, in RV order."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[StoreEvent], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def watch(
        self,
        storage: str,
        *,
        namespace: str | None,
        predicate: Predicate | None,
        since: int | None,
        index: tuple[str, str] | None = None,
    ) -> tuple[Watcher, list[tuple[str, JsonObj]]]:
        """Register a watcher. With `since` = N the returned backlog holds the events after N
        (raises TooOldResourceVersion when they are no longer kept); with None the backlog is the
        current state as ADDED events. Registration and backlog are taken atomically. `index`
        (one of INDEXED_FIELDS and the value the predicate requires of it) lets the fan-out skip
        this watcher for events of other objects; the predicate still decides."""
        if index is not None and index[0] not in INDEXED_FIELDS:
            raise ValueError(f"cannot index watchers by {index[0]!r}")
        bucket = self._bucket(storage)
        watcher = Watcher(
            storage=storage,
            namespace=namespace,
            predicate=predicate,
            queue=asyncio.Queue(maxsize=self.watch_queue_size),
            index=index,
        )
        backlog: list[tuple[str, JsonObj]] = []
        if since is None:
            for obj in self.sorted_objects(storage, namespace):
                if predicate is None or predicate(obj):
                    backlog.append((ADDED, obj))
        else:
            if since < bucket.compacted_rv:
                raise TooOldResourceVersion(requested=since, oldest=bucket.compacted_rv + 1)
            for event in _events_after(bucket.history, since):
                if index is not None and index[1] not in (
                    index_value(index[0], event.obj),
                    index_value(index[0], event.old),
                ):
                    continue
                seen = watcher.translate(event)
                if seen is not None:
                    backlog.append(seen)
        if index is None:
            bucket.watchers.append(watcher)
        else:
            bucket.indexed.setdefault(index, []).append(watcher)
            bucket.index_fields[index[0]] = bucket.index_fields.get(index[0], 0) + 1
        return watcher, backlog

    def unwatch(self, watcher: Watcher) -> None:
        watcher.closed = True
        bucket = self._bucket(watcher.storage)
        if watcher.index is None:
            if watcher in bucket.watchers:
                bucket.watchers.remove(watcher)
            return
        group = bucket.indexed.get(watcher.index, [])
        if watcher in group:
            group.remove(watcher)
            remaining = bucket.index_fields.get(watcher.index[0], 1) - 1
            if remaining:
                bucket.index_fields[watcher.index[0]] = remaining
            else:
                bucket.index_fields.pop(watcher.index[0], None)
        if not group:
            bucket.indexed.pop(watcher.index, None)

    def close_watchers(self) -> None:
        """Wake every watcher so its stream ends (server shutdown)."""
        for bucket in self._buckets.values():
            for watcher in [*bucket.watchers, *(w for group in bucket.indexed.values() for w in group)]:
                watcher.closed = True
                with contextlib.suppress(asyncio.QueueFull):
                    watcher.queue.put_nowait(("CLOSED", {}))

    def watcher_count(self) -> int:
        return sum(len(b.watchers) + sum(len(g) for g in b.indexed.values()) for b in self._buckets.values())

    def compact(self) -> None:
        """Forget all past events (as an etcd compaction would): older watch RVs become 410."""
        for bucket in self._buckets.values():
            bucket.history.clear()
            bucket.compacted_rv = self._rv
        self._initial_rv = self._rv

    def all_storages(self) -> Iterable[str]:
        return list(self._buckets)


def _events_after(history: deque[StoreEvent], rv: int) -> list[StoreEvent]:
    if not history or history[-1].rv <= rv:
        return []
    # binary search over the deque (RVs increase)
    lo, hi = 0, len(history)
    while lo < hi:
        mid = (lo + hi) // 2
        if history[mid].rv <= rv:
            lo = mid + 1
        else:
            hi = mid
    return [history[i] for i in range(lo, len(history))]


def _controller_uid(obj: JsonObj | None) -> str:
    if obj is None:
        return ""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""
