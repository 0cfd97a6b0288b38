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
from rebootd.kube.paths import RESOURCES, JsonObj, WatchKind, resource_version
from rebootd.logs import get_logger

if TYPE_CHECKING:
    from rebootd.kube.client import Kube

WATCH_STABLE_SECONDS = 1.0  # a watch up this long (or with an event) resets the follower's backoff


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED / MODIFIED / DELETED / BOOKMARK
    object: dict[str, Any]


class ObjectFollower:
    """The latest state of ONE named object, kept by list + watch.

    List with `fieldSelector=metadata.name=NAME` (its resourceVersion starts the watch), then watch
    with bookmarks and a server-side `timeoutSeconds` of `resync_seconds`; a stream the server ends
    is resumed from the last resourceVersion seen, a 410 re-lists, a broken stream or a failed
    request is resumed after a bounded exponential backoff with jitter (the Kube's RetryPolicy).

    `latest` is None while the object does not exist. "What the caller last saw" is the state at
    entry, at its last read of `latest`, or at the last return of `changed` / `wait_for`.
    """

    def __init__(
        self, *, kube: Kube, kind: WatchKind, namespace: str | None, name: str, resync_seconds: int = 300
    ) -> None:
        if resync_seconds < 1:
            raise ValueError("resync_seconds must be at least 1")
        self.kube = kube
        self.kind: WatchKind = kind
        self.namespace = namespace
        self.name = name
        self.resync_seconds = resync_seconds
        self._latest: JsonObj | None = None
        self._seen: tuple[str, str] | None = None
        self._rv: str | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def latest(self) -> JsonObj | None:
        self._seen = _version_key(self._latest)
        return self._latest

    def peek(self) -> JsonObj | None:
        """The latest state without marking it seen (`changed` still reports it)."""
        return self._latest

    async def __aenter__(self) -> Self:
        await self._relist()
        self._seen = _version_key(self._latest)
        self._task = asyncio.create_task(self._run(), name=f"rebootd.kube.follow.{self.kind}.{self.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

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

    async def _relist(self) -> None:
        items, rv = await self.kube.list_with_version(
            kind=self.kind, namespace=self.namespace, field_selector=f"metadata.name={self.name}"
        )
        obj = next((i for i in items if i.get("metadata", {}).get("name") == self.name), None)
        if obj is not None:
            # list items come without kind/apiVersion; give `latest` the shape of a GET or a watch event
            res = RESOURCES[self.kind]
            obj = {"kind": res.kind, "apiVersion": res.api_version, **obj}
        self._set(obj)
        self._rv = rv

    async def _run(self) -> None:
        log = get_logger(kind=self.kind, namespace=self.namespace, name=self.name)
        loop = asyncio.get_running_loop()
        # `failures` counts failed requests and broken or empty watches since the last stable watch
        # (one that delivered an event or stayed up for WATCH_STABLE_SECONDS): a watch that keeps
        # breaking, or a re-list that only leads to another 410, waits longer each time.
        failures = 0
        last_expired = False
        try:
            while True:
                started, events = loop.time(), 0
                try:
                    if self._rv is None:
                        await self._relist()
                        started = loop.time()
                    async for event in self.kube.watch(
                        kind=self.kind,
                        namespace=self.namespace,
                        field_selector=f"metadata.name={self.name}",
                        resource_version=self._rv,
                        timeout_seconds=self.resync_seconds,
                    ):
                        events += 1
                        self._apply(event)
                    if not events and loop.time() - started < WATCH_STABLE_SECONDS:
                        raise KubeError(status=0, reason="WatchEmpty", message="the watch ended at once")
                    failures, last_expired = 0, False  # the server ended it (timeoutSeconds): resume now
                except KubeError as exc:
                    if events or loop.time() - started >= WATCH_STABLE_SECONDS:
                        failures, last_expired = 0, False
                    failures += 1
                    expired = isinstance(exc, Expired)
                    if expired:
                        self._rv = None
                    if expired and not last_expired:
                        last_expired = True
                        log.info("rebootd.kube.follow.relist", reason=exc.reason, failures=failures)
                        continue  # re-list at once
                    last_expired = expired
                    delay = self.kube.retry.backoff(attempt=failures, rng=self.kube._rng)
                    log.info(
                        "rebootd.kube.follow.retry",
                        status=exc.status,
                        reason=exc.reason,
                        failures=failures,
                        delay=round(delay, 3),
                    )
                    await self.kube._sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must surface in the waiters, not vanish in a task
            log.error("rebootd.kube.follow.failed", error=f"{type(exc).__name__}: {exc}")
            self._failure = exc
            self._wakeup.set()

    def _apply(self, event: WatchEvent) -> None:
        rv = resource_version(event.object)
        if event.type == "BOOKMARK":
            pass
        elif event.type in ("ADDED", "MODIFIED"):
            if event.object.get("metadata", {}).get("name") == self.name:
                self._set(event.object)
        elif event.type == "DELETED":
            self._set(None)
        if rv:
            self._rv = rv


def _version_key(obj: JsonObj | None) -> tuple[str, str] | None:
    if obj is None:
        return None
    meta = obj.get("metadata", {})
    return (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
