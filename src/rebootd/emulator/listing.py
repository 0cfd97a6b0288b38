"""Paged lists: `limit`, opaque `continue` tokens and a constant list resourceVersion across pages.

Rule: the first page takes a snapshot (a list of references to the immutable stored dicts), later
pages are served from it, as etcd serves them from the list's revision; a token whose snapshot is
gone (too old, or evicted) is `410 Expired` carrying a fresh, inconsistent continue token, as
kube-apiserver answers after a compaction. Bounded: at most `max_snapshots`, each at most `ttl`
seconds on the injected monotonic clock.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rebootd.clock import Clock
from rebootd.emulator import errors

JsonObj = dict[str, Any]

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned and "
    "now may show up in the list."
)


@dataclass
class _Snapshot:
    items: Sequence[JsonObj]
    resource_version: int
    created: float


@dataclass(frozen=True)
class Page:
    items: Sequence[JsonObj]
    resource_version: int
    continue_token: str
    remaining: int | None


def _key(obj: JsonObj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


class Pager:
    def __init__(self, *, clock: Clock, ttl: float = 300.0, max_snapshots: int = 256) -> None:
        self._clock = clock
        self.ttl = ttl
        self._max = max_snapshots
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._ids = itertools.count(1)

    def expire_all(self) -> None:
        """Forget every snapshot: outstanding continue tokens become 410 Expired."""
        self._snapshots.clear()

    def _token(self, snapshot_id: int, rv: int, start: int, after: tuple[str, str] | None) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "id": snapshot_id, "start": start, "after": after})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _store(self, items: Sequence[JsonObj], rv: int) -> int:
        snapshot_id = next(self._ids)
        self._snapshots[snapshot_id] = _Snapshot(
            items=items, resource_version=rv, created=self._clock.monotonic()
        )
        while len(self._snapshots) > self._max:
            self._snapshots.popitem(last=False)
        return snapshot_id

    def _page(self, snapshot_id: int, snapshot: _Snapshot, start: int, limit: int) -> Page:
        items = snapshot.items[start : start + limit]
        end = start + len(items)
        if end >= len(snapshot.items):
            self._snapshots.pop(snapshot_id, None)
            return Page(items, snapshot.resource_version, "", None)
        token = self._token(snapshot_id, snapshot.resource_version, end, _key(items[-1]) if items else None)
        return Page(items, snapshot.resource_version, token, len(snapshot.items) - end)

    def first(self, items: Sequence[JsonObj], *, resource_version: int, limit: int) -> Page:
        if limit <= 0 or len(items) <= limit:
            return Page(items, resource_version, "", None)
        snapshot_id = self._store(items, resource_version)
        return self._page(snapshot_id, self._snapshots[snapshot_id], 0, limit)

    def next(self, token: str, *, limit: int, current: Callable[[], tuple[Sequence[JsonObj], int]]) -> Page:
        """The page after `token`; `current` lists the present state for the 410's fresh token."""
        try:
            padded = token + "=" * (-len(token) % 4)
            decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
            snapshot_id, start = int(decoded["id"]), int(decoded["start"])
            after = tuple(decoded["after"]) if decoded.get("after") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.bad_request(f"continue key is not valid: {exc}") from exc
        snapshot = self._snapshots.get(snapshot_id)
        if snapshot is not None and self._clock.monotonic() - snapshot.created > self.ttl:
            del self._snapshots[snapshot_id]
            snapshot = None
        if snapshot is None:
            items, now_rv = current()
            fresh = ""
            remaining = [obj for obj in items if after is None or _key(obj) > after]
            if remaining:
                fresh_id = self._store(remaining, now_rv)
                fresh = self._token(fresh_id, now_rv, 0, after)
            raise errors.expired(EXPIRED_MESSAGE, continue_token=fresh)
        if limit <= 0:
            limit = len(snapshot.items)
        return self._page(snapshot_id, snapshot, start, limit)
