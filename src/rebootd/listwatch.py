"""The one list+watch loop of rebootd (kopf's and client-go's reflector shape).

Rule: list (its resourceVersion starts the watch), then watch with bookmarks and a server-side
`timeoutSeconds`; every event, bookmarks included, moves the resourceVersion on, so:
- a stream the server ends (timeoutSeconds) is resumed at once from the last resourceVersion;
- a stream that breaks, or a request that fails, is resumed from the last resourceVersion after
  a back-off (a failed list is retried the same way);
- 410 Gone (the resourceVersion is too old) drops the resourceVersion: the first re-list is at
  once, a re-list that only leads to another 410 waits a back-off first;
- a watch that ends at once with nothing in it counts as a failure (the guard against a server
  or proxy that closes every stream at once: without it the loop spins on the API).
The back-off attempt counts failures since the last stable watch (one that delivered an event, or
stayed up `stable_seconds`), so a watch that keeps breaking waits longer each time, and one good
watch resets it. Every wait is bounded (the back-off cap; the Kube's read timeout on a stream) and
interrupted by cancelling the task that runs the loop.

What to do after each watch is `after_watch` (pure, unit-tested); `ListWatch` does the I/O and
hands the results to its owner: `on_list(items)` after each list, `on_event(type, object)` for
each ADDED / MODIFIED / DELETED. Its owners: `kube.ObjectFollower` (one object by name),
`drain.NodePods` (a node's pods) and `recovery.Cache` (the recovery gate's caches).

It sees the API through `WatchApi` (which `kube.Kube` is) and is told which exceptions are API
errors and which is 410: it imports nothing of `kube`, which builds its follower on it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol

from rebootd.backoff import Backoff
from rebootd.logs import get_logger

__all__ = [
    "STABLE_SECONDS",
    "ApiErrors",
    "Ending",
    "ListWatch",
    "Progress",
    "Step",
    "WatchApi",
    "after_watch",
]

JsonObj = dict[str, Any]
Ending = Literal["ended", "expired", "failed"]
STABLE_SECONDS = 1.0  # a watch up this long (or with an event) resets the back-off


# --- pure: what to do after a watch ---------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """The loop's memory between watches: failures since the last stable watch, and whether the
    last one ended in 410."""

    failures: int = 0
    expired_last: bool = False


@dataclass(frozen=True)
class Step:
    """What to do next: drop the resourceVersion (re-list) or resume from it; wait back-off
    attempt `backoff_attempt` first (0: at once)."""

    relist: bool
    backoff_attempt: int
    progress: Progress
    why: str


def after_watch(
    *, progress: Progress, ending: Ending, events: int, seconds: float, stable_seconds: float = STABLE_SECONDS
) -> Step:
    """The next step after a watch (or the list before it) that delivered `events` events in
    `seconds` and then `ending`: the server ended it, 410, or anything else failed."""
    stable = events > 0 or seconds >= stable_seconds
    failures, expired_last = (0, False) if stable else (progress.failures, progress.expired_last)
    if ending == "ended":
        if stable:
            return Step(relist=False, backoff_attempt=0, progress=Progress(), why="resume")
        failures += 1
        return Step(
            relist=False, backoff_attempt=failures, progress=Progress(failures=failures), why="ended at once"
        )
    failures += 1
    if ending == "expired":
        again = Progress(failures=failures, expired_last=True)
        if not expired_last:
            return Step(relist=True, backoff_attempt=0, progress=again, why="expired")
        return Step(relist=True, backoff_attempt=failures, progress=again, why="expired again")
    return Step(relist=False, backoff_attempt=failures, progress=Progress(failures=failures), why="failed")


# --- I/O: the loop --------------------------------------------------------------------------------


class WatchEventLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def object(self) -> JsonObj: ...


class WatchApi(Protocol):
    """The two calls the loop makes (`kube.Kube` has them)."""

    async def list_with_version(
        self, *, kind: Any, namespace: str | None, field_selector: str | None, label_selector: str | None
    ) -> tuple[list[JsonObj], str]: ...

    def watch(
        self,
        *,
        kind: Any,
        namespace: str | None,
        field_selector: str | None,
        label_selector: str | None,
        resource_version: str | None,
        timeout_seconds: int | None,
    ) -> AsyncIterator[Any]: ...


@dataclass(frozen=True)
class ApiErrors:
    """Which exceptions are the API's (anything else is a bug and ends the loop), and which of
    them is 410 Gone."""

    error: type[Exception]
    expired: type[Exception]


class ListWatch:
    """One collection (or one object, by a field selector) kept by list + watch; see the rule."""

    def __init__(
        self,
        *,
        api: WatchApi,
        errors: ApiErrors,
        kind: str,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        watch_timeout: int,
        backoff: Backoff,
        on_list: Callable[[list[JsonObj]], None],
        on_event: Callable[[str, JsonObj], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        stable_seconds: float = STABLE_SECONDS,
    ) -> None:
        if watch_timeout < 1:
            raise ValueError("watch_timeout must be at least 1 second")
        self._api = api
        self._errors = errors
        self.kind = kind
        self.namespace = namespace
        self.field_selector = field_selector
        self.label_selector = label_selector
        self._watch_timeout = watch_timeout
        self._backoff = backoff
        self._on_list = on_list
        self._on_event = on_event
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._stable_seconds = stable_seconds
        self._rv: str | None = None
        self._log = get_logger(kind=kind, namespace=namespace, selector=field_selector or label_selector)

    @property
    def resource_version(self) -> str | None:
        """Where the next watch starts; None until listed, and after a 410."""
        return self._rv

    async def relist(self) -> None:
        """List once (errors propagate) and hand the items to `on_list`."""
        items, rv = await self._api.list_with_version(
            kind=self.kind,
            namespace=self.namespace,
            field_selector=self.field_selector,
            label_selector=self.label_selector,
        )
        self._on_list(items)
        self._rv = rv

    async def run(self) -> NoReturn:
        """List (unless already listed) and watch until cancelled; raises only what is not an API
        error (a bug in a handler)."""
        loop = asyncio.get_running_loop()
        progress = Progress()
        while True:
            started, events = loop.time(), 0
            ending: Ending = "ended"
            error: Exception | None = None
            try:
                if self._rv is None:
                    await self.relist()
                    started = loop.time()
                # never left early: a cancellation is raised inside the stream, which closes itself
                async for event in self._api.watch(
                    kind=self.kind,
                    namespace=self.namespace,
                    field_selector=self.field_selector,
                    label_selector=self.label_selector,
                    resource_version=self._rv,
                    timeout_seconds=self._watch_timeout,
                ):
                    events += 1
                    self._apply(event)
            except self._errors.expired as exc:
                ending, error = "expired", exc
            except self._errors.error as exc:
                ending, error = "failed", exc
            step = after_watch(
                progress=progress,
                ending=ending,
                events=events,
                seconds=loop.time() - started,
                stable_seconds=self._stable_seconds,
            )
            progress = step.progress
            if step.relist:
                self._rv = None
            if step.backoff_attempt:
                delay = self._backoff.delay(attempt=step.backoff_attempt, rng=self._rng)
                self._log.info(
                    "rebootd.listwatch.retry",
                    why=step.why,
                    error=str(error) if error is not None else None,
                    failures=progress.failures,
                    delay=round(delay, 3),
                )
                await self._sleep(delay)
            elif step.relist:
                self._log.info("rebootd.listwatch.relist", why=step.why, error=str(error))

    def _apply(self, event: WatchEventLike) -> None:
        rv = (event.object.get("metadata") or {}).get("resourceVersion")
        if event.type != "BOOKMARK":
            self._on_event(event.type, event.object)
        if rv:
            self._rv = str(rv)
