"""Following one named object by list + watch.

Rule: `ObjectFollower` keeps the latest state of one object, so waiters react to a change within
a second instead of polling; a broken watch is resumed after the Kube's bounded backoff, a 410
re-lists, and a bug in the loop surfaces in the waiters instead of vanishing in a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from rebootd.kube.errors import Expired, KubeError
from rebootd.kube.paths import RESOURCES, JsonObj, WatchKind
from rebootd.listwatch import ApiErrors, ListWatch
from rebootd.logs import get_logger
from rebootd.waits import reap

if TYPE_CHECKING:
    from rebootd.kube.client import Kube


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED / MODIFIED / DELETED / BOOKMARK
    object: dict[str, Any]


class ObjectFollower:
    """The latest state of ONE named object, kept by the one list+watch loop (`rebootd.listwatch`).

    List with `fieldSelector=metadata.name=NAME` (its resourceVersion starts the watch), then watch
    with bookmarks and a server-side `timeoutSeconds` of `resync_seconds`; resumes, re-lists and
    back-offs (the Kube's RetryPolicy, its sleep and its random source) are the loop's.

    `latest` is None while the object does not exist. "What the caller last saw" is the state at
    entry, at its last read of `latest`, or at the last return of `changed` / `wait_for`.

    With `label_selector` the server sends the object only while it matches (entering: ADDED,
    leaving: DELETED, as kube's cacheWatcher does): `latest` is then None also while it exists but
    does not match, and the server sends nothing for the writes that leave it unmatched.
    """

    def __init__(
        self,
        *,
        kube: Kube,
        kind: WatchKind,
        namespace: str | None,
        name: str,
        resync_seconds: int = 300,
        label_selector: str | None = None,
    ) -> None:
        if resync_seconds < 1:
            raise ValueError("resync_seconds must be at least 1")
        self.kube = kube
        self.kind: WatchKind = kind
        self.namespace = namespace
        self.name = name
        self.resync_seconds = resync_seconds
        self.label_selector = label_selector
        self._latest: JsonObj | None = None
        self._seen: tuple[str, str] | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._loop = ListWatch(
            api=kube,
            errors=ApiErrors(error=KubeError, expired=Expired),
            kind=kind,
            namespace=namespace,
            field_selector=f"metadata.name={name}",
            label_selector=label_selector,
            watch_timeout=resync_seconds,
            backoff=kube.retry.backoff_policy,
            on_list=self._listed,
            on_event=self._apply,
            sleep=kube._sleep,
            rng=kube._rng,
        )

    @property
    def latest(self) -> JsonObj | None:
        self._seen = _version_key(self._latest)
        return self._latest

    def peek(self) -> JsonObj | None:
        """The latest state without marking it seen (`changed` still reports it)."""
        return self._latest

    async def __aenter__(self) -> Self:
        await self._loop.relist()
        self._seen = _version_key(self._latest)
        self._task = asyncio.create_task(self._run(), name=f"rebootd.kube.follow.{self.kind}.{self.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        await reap(task)

    async def changed(self, *, timeout: float) -> bool:  # noqa: ASYNC109 - the waiters' interface
        """Wait until the object's version differs from what the caller last saw (True), or the
        timeout passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._raise_if_failed()
            key = _version_key(self._latest)
            if key != self._seen:
                self._seen = key
                return True
            if not await self._wait_wakeup(deadline - loop.time()):
                return False

    async def wait_for(
        self,
        predicate: Callable[[JsonObj], bool],
        *,
        timeout: float,  # noqa: ASYNC109 - the waiters' interface
    ) -> JsonObj | None:
        """The object once it exists and `predicate(object)` holds; None when the timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._raise_if_failed()
            obj = self._latest
            if obj is not None and predicate(obj):
                self._seen = _version_key(obj)
                return obj
            if not await self._wait_wakeup(deadline - loop.time()):
                return None

    async def _wait_wakeup(self, remaining: float) -> bool:
        if remaining <= 0:
            return False
        wakeup = self._wakeup
        try:  # not `wait_for`: on Python 3.11 it can swallow a cancellation racing the wake-up
            async with asyncio.timeout(remaining):
                await wakeup.wait()
        except TimeoutError:
            return False
        return True

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._task is None:
            raise RuntimeError("ObjectFollower used outside `async with`")

    def _set(self, obj: JsonObj | None) -> None:
        changed = _version_key(obj) != _version_key(self._latest)
        self._latest = obj
        if changed:
            wakeup, self._wakeup = self._wakeup, asyncio.Event()
            wakeup.set()

    def _listed(self, items: list[JsonObj]) -> None:
        obj = next((i for i in items if i.get("metadata", {}).get("name") == self.name), None)
        if obj is not None:
            # list items come without kind/apiVersion; give `latest` the shape of a GET or a watch event
            res = RESOURCES[self.kind]
            obj = {"kind": res.kind, "apiVersion": res.api_version, **obj}
        self._set(obj)

    async def _run(self) -> None:
        try:
            await self._loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must surface in the waiters, not vanish in a task
            get_logger(kind=self.kind, namespace=self.namespace, name=self.name).error(
                "rebootd.kube.follow.failed", error=f"{type(exc).__name__}: {exc}"
            )
            self._failure = exc
            self._wakeup.set()

    def _apply(self, event_type: str, obj: JsonObj) -> None:
        if event_type in ("ADDED", "MODIFIED"):
            if obj.get("metadata", {}).get("name") == self.name:
                self._set(obj)
        elif event_type == "DELETED":
            self._set(None)


def _version_key(obj: JsonObj | None) -> tuple[str, str] | None:
    if obj is None:
        return None
    meta = obj.get("metadata", {})
    return (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
