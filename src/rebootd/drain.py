"""Eviction-based drain of one node, with the semantics of `kubectl drain` 1.32 as kured runs it.

Rule: evict through the Eviction API only (PodDisruptionBudgets are the workloads' veto and are
never bypassed), wait until every evicted pod is really gone, and never wait unboundedly: the
global `timeout`, a `stop` event and task cancellation all abort cleanly, and a drain that cannot
finish says which pods are left and why. Cordoning is not done here (the cycle cordons first).

Order, as k8s.io/kubectl/pkg/drain: list the node's pods (`fieldSelector=spec.nodeName=NODE`,
`labelSelector=pod_selector`, paged), filter each pod (`pods.filter_pod`, pure; the filters run in kubectl's
order and the first one that leaves a pod on the node decides), then evict every remaining pod
concurrently and wait for each to disappear. kured's settings are fixed on: `--force`, `--ignore-daemonsets`,
`--delete-emptydir-data` (so no filter verdict is an error, only "evict" or "skip").

Eviction answers: 201 -> wait for the pod to be gone; 404 -> gone; 429 (a PDB allows no
disruption) -> retry after `retry_429` seconds (kubectl's fixed 5 s; a server Retry-After is not
honoured, as kubectl does not); 403 with cause NamespaceTerminating -> wait if the pod is
terminating, else retry later; 500 "more than one PodDisruptionBudget" and anything else -> the
drain fails at once naming the pod (kubectl carries on with the other pods and fails at the end;
since a failed drain is undone anyway, evicting more pods first would only disrupt more).

Differences from kubectl, all deliberate:
- Waiting for deletion watches the node's pods (one list + one watch stream for the whole drain)
  instead of GETting every pod every second. "Gone" is the same test: the pod's uid is no longer
  there (404, or a new pod with the same name and another uid). `poll` paces the re-evaluation of
  the skip-wait-for-delete timeout (no request) and is the first back-off of a failing pod watch.
- In-flight eviction requests are bounded (`concurrency`, default 20) where kubectl starts one
  goroutine per pod; the bound is on requests, not on pods, so a pod a PDB blocks never keeps
  others from being evicted.
- 409 on an eviction (the apiserver lost a race updating the PDB; nothing was evicted) is retried
  like a 429, where kubectl gives up on the pod.
- The 429 reason is kept per pod (naming the PDB from the Status cause) and logged at most once
  a minute per pod; a DrainTimeout lists every pod still there with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from rebootd.backoff import Backoff
from rebootd.clock import Clock, SystemClock
from rebootd.kube import Conflict, Expired, Kube, KubeError, NotFound, TooManyRequests
from rebootd.listwatch import ApiErrors, ListWatch
from rebootd.logs import get_logger
from rebootd.pods import (
    Owner,
    controller_of,
    daemonset_to_check,
    deletion_time,
    filter_pod,
    pod_key,
    pod_uid,
    terminating_too_long,
)
from rebootd.selectors import SelectorError, label_selector_from_object, parse_label_selector
from rebootd.waits import sleep_or_stop

JsonObj = dict[str, Any]

NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
MULTIPLE_PDBS_TEXT = "more than one PodDisruptionBudget"
BLOCKED_LOG_INTERVAL = 60.0
MAX_PODS_IN_MESSAGE = 10
WATCH_RETRY_GROWTH = 4  # the pod watch's back-off grows from `poll` to this many times it

_BUDGET_CAUSE = re.compile(
    r"The disruption budget (?P<name>\S+) needs (?P<need>\d+) healthy pods? and has (?P<has>\d+)"
)
_BUDGET_PROCESSING = re.compile(r"The disruption budget (?P<name>\S+) is still being processed")


# --- options, results, errors -------------------------------------------------------------------


@dataclass(frozen=True)
class DrainOptions:
    """How to drain (kured's `--drain-grace-period`, `--drain-timeout`,
    `--skip-wait-for-delete-timeout`, `--drain-pod-selector`)."""

    grace_period: int = -1  # seconds each pod gets; -1: the pod's own terminationGracePeriodSeconds
    timeout: float = 0.0  # the whole drain; 0: no limit
    skip_wait_for_delete_timeout: int = 0  # stop waiting for pods terminating longer than this; 0: never
    pod_selector: str = ""  # only pods matching this label selector are evicted
    poll: float = 1.0
    retry_429: float = 5.0
    concurrency: int = 20
    watch_timeout: int = 60  # server-side timeoutSeconds of each watch request

    def __post_init__(self) -> None:
        if self.grace_period < -1:
            raise ValueError(f"grace_period must be -1 or more, got {self.grace_period}")
        if self.timeout < 0 or self.skip_wait_for_delete_timeout < 0:
            raise ValueError("timeout and skip_wait_for_delete_timeout must not be negative")
        if self.poll <= 0 or self.retry_429 <= 0 or self.concurrency < 1 or self.watch_timeout < 1:
            raise ValueError("poll, retry_429, concurrency and watch_timeout must be positive")
        try:
            parse_label_selector(self.pod_selector)
        except SelectorError as exc:
            raise ValueError(f"pod_selector {self.pod_selector!r}: {exc}") from None


@dataclass(frozen=True)
class EvictedPod:
    """A pod this drain removed from the node (evicted, or found already gone)."""

    namespace: str
    name: str
    uid: str
    owner: Owner | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "owner": self.owner.to_json() if self.owner is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvictedPod:
        owner = data.get("owner")
        return cls(
            namespace=str(data.get("namespace", "")),
            name=str(data.get("name", "")),
            uid=str(data.get("uid", "")),
            owner=Owner.from_json(owner) if isinstance(owner, Mapping) else None,
        )


@dataclass(frozen=True)
class SkippedPod:
    """A pod left on the node, and why (DaemonSet-managed, mirror pod, long terminating)."""

    namespace: str
    name: str
    reason: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DrainResult:
    evicted: tuple[EvictedPod, ...] = ()
    skipped: tuple[SkippedPod, ...] = ()

    @property
    def owners(self) -> tuple[Owner, ...]:
        """The distinct controllers of the evicted pods, in eviction-list order."""
        seen: dict[tuple[str, str], Owner] = {}
        for pod in self.evicted:
            if pod.owner is not None:
                seen.setdefault((pod.owner.kind, pod.owner.uid), pod.owner)
        return tuple(seen.values())


class DrainError(Exception):
    """The drain could not complete; the message names the node and the pods concerned."""


class DrainTimeout(DrainError):
    """The global timeout passed; `pending` maps each pod still there to why."""

    def __init__(self, message: str, *, pending: Mapping[str, str]) -> None:
        super().__init__(message)
        self.pending = dict(pending)


class DrainStopped(DrainError):
    """The `stop` event was set before the drain finished."""


# --- pure: eviction answers ---------------------------------------------------------------------


def _causes(exc: KubeError) -> list[Mapping[str, Any]]:
    details = exc.body.get("details")
    causes = details.get("causes") if isinstance(details, Mapping) else None
    return [c for c in causes if isinstance(c, Mapping)] if isinstance(causes, list) else []


def describe_refusal(exc: KubeError) -> str:
    """Why an eviction was refused with 429, for humans: names the PodDisruptionBudget when the
    Status cause does (`The disruption budget NAME needs D healthy pods and has C currently`)."""
    for cause in _causes(exc):
        message = str(cause.get("message", ""))
        if m := _BUDGET_CAUSE.search(message):
            return (
                f"PodDisruptionBudget {m['name']} allows 0 disruptions "
                f"(needs {m['need']} healthy pods, has {m['has']})"
            )
        if m := _BUDGET_PROCESSING.search(message):
            return f"PodDisruptionBudget {m['name']} is still being processed by the server"
    return f"eviction refused ({exc.status} {exc.reason}): {exc.message}"


def is_namespace_terminating(exc: KubeError) -> bool:
    return exc.status == 403 and any(c.get("reason") == NAMESPACE_TERMINATING_CAUSE for c in _causes(exc))


def is_multiple_pdbs(exc: KubeError) -> bool:
    return exc.status == 500 and MULTIPLE_PDBS_TEXT in exc.message


def pdbs_selecting(pod: Mapping[str, Any], pdbs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the PodDisruptionBudgets (policy/v1 selector semantics) that select `pod`."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    names = []
    for pdb in pdbs:
        try:
            selector = label_selector_from_object((pdb.get("spec") or {}).get("selector"))
        except SelectorError:
            continue
        if selector.matches(labels):
            names.append(str((pdb.get("metadata") or {}).get("name", "")))
    return sorted(names)


def describe_pending(pending: Mapping[str, str], *, limit: int = MAX_PODS_IN_MESSAGE) -> str:
    """`ns/a: why; ns/b: why` for at most `limit` pods, then `+N more`."""
    items = [f"{key}: {why}" for key, why in sorted(pending.items())]
    more = f"; +{len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


# --- I/O: the pods on the node, by list + watch -------------------------------------------------


class NodePods:
    """The latest state of the pods on one node, kept by the one list+watch loop
    (`rebootd.listwatch`), keyed by uid.

    A pod is gone once its uid is not there: deleted, or replaced by a new pod with the same name
    (another uid). Waiters are woken on every change. Resumes, re-lists after a 410 and the
    back-off after a failure are the loop's; the back-off starts at `retry_delay` (the drain's
    `poll`) and grows to WATCH_RETRY_GROWTH times it, no more: a drain is short and waits on this
    watch to see its pods gone."""

    def __init__(
        self,
        *,
        kube: Kube,
        node: str,
        retry_delay: float,
        watch_timeout: int,
    ) -> None:
        self._pods: dict[str, JsonObj] = {}
        self._synced = False
        self._wakeup = asyncio.Event()
        self._loop = ListWatch(
            api=kube,
            errors=ApiErrors(error=KubeError, expired=Expired),
            kind="pods",
            field_selector=f"spec.nodeName={node}",
            watch_timeout=watch_timeout,
            backoff=Backoff(base=retry_delay, cap=retry_delay * WATCH_RETRY_GROWTH, jitter="full"),
            on_list=self._listed,
            on_event=self._apply,
        )

    @property
    def synced(self) -> bool:
        return self._synced

    def get(self, uid: str) -> JsonObj | None:
        """The pod with this uid as last seen; None when it is gone (or before the first list)."""
        return self._pods.get(uid)

    async def changed(self, *, within: float) -> None:
        """Return at the next change, or after `within` seconds. (`asyncio.timeout`, not `wait_for`:
        on Python 3.11 `wait_for` can swallow a cancellation that races the wake-up, and a drain
        cancelled because its slot was lost must stop.)"""
        wakeup = self._wakeup
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await wakeup.wait()

    def _notify(self) -> None:
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def _listed(self, items: list[JsonObj]) -> None:
        self._pods = {pod_uid(p): p for p in items}
        self._synced = True
        self._notify()

    def _apply(self, event_type: str, obj: JsonObj) -> None:
        uid = pod_uid(obj)
        if event_type == "DELETED":
            self._pods.pop(uid, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self._pods[uid] = obj
        self._notify()

    async def run(self) -> NoReturn:
        """Keep the state until cancelled; never returns (raises only a bug)."""
        await self._loop.run()


# --- I/O: the drain -----------------------------------------------------------------------------


async def drain_node(
    kube: Kube,
    *,
    node: str,
    options: DrainOptions,
    stop: asyncio.Event | None = None,
    clock: Clock | None = None,
    fence: Callable[[], None] | None = None,
) -> DrainResult:
    """Evict every pod of `node` that kubectl drain would (see the module rule) and wait until they
    are gone. Raises DrainTimeout, DrainStopped or DrainError; cancellation propagates, and so
    does whatever `fence()` raises: it is checked right before each eviction is sent."""
    run = _Drain(
        kube=kube,
        node=node,
        options=options,
        clock=clock if clock is not None else SystemClock(),
        fence=fence,
    )
    return await run.run(stop)


class _Drain:
    def __init__(
        self,
        *,
        kube: Kube,
        node: str,
        options: DrainOptions,
        clock: Clock,
        fence: Callable[[], None] | None = None,
    ) -> None:
        self.kube = kube
        self.fence = fence
        self.node = node
        self.opt = options
        self.clock = clock
        self.log = get_logger(node=node)
        self.stage = "listing pods"
        self.pending: dict[str, str] = {}  # pod key -> why it is still there
        self._requests = asyncio.Semaphore(options.concurrency)

    async def run(self, stop: asyncio.Event | None) -> DrainResult:
        if stop is not None and stop.is_set():
            raise DrainStopped(f"drain of node {self.node} stopped before it started")
        started = self.clock.monotonic()
        try:
            async with asyncio.timeout(self.opt.timeout or None) as deadline:
                result = await _first_of(self._drain(), stop=stop, name=f"rebootd.drain.{self.node}")
        except _Stopped:
            self.log.info("rebootd.drain.stopped", stage=self.stage, pending=len(self.pending))
            raise DrainStopped(f"drain of node {self.node} stopped while {self.stage}") from None
        except TimeoutError:
            if not deadline.expired():
                raise
            message = f"drain of node {self.node} timed out after {self.opt.timeout:g}s while {self.stage}"
            if self.pending:
                message += f"; {len(self.pending)} pod(s) still there: {describe_pending(self.pending)}"
            self.log.warning(
                "rebootd.drain.timeout", stage=self.stage, pending=describe_pending(self.pending)
            )
            raise DrainTimeout(message, pending=self.pending) from None
        self.log.info(
            "rebootd.drain.done",
            evicted=len(result.evicted),
            skipped=len(result.skipped),
            seconds=round(self.clock.monotonic() - started, 3),
        )
        return result

    async def _drain(self) -> DrainResult:
        pods = await self.kube.list_pods(
            field_selector=f"spec.nodeName={self.node}", label_selector=self.opt.pod_selector or None
        )
        self.stage = "checking pods"
        to_evict, skipped = await self._plan(pods)
        self.log.info("rebootd.drain.started", pods=len(pods), evict=len(to_evict), skipped=len(skipped))
        if not to_evict:
            return DrainResult(evicted=(), skipped=tuple(skipped))
        self.stage = "evicting pods"
        self.pending = {pod_key(p): "eviction not sent yet" for p in to_evict}
        tracker = NodePods(
            kube=self.kube, node=self.node, retry_delay=self.opt.poll, watch_timeout=self.opt.watch_timeout
        )
        # One task group: the first failure (a pod's, or the pod watch ending) cancels the rest.
        try:
            async with asyncio.TaskGroup() as group:
                watcher = group.create_task(_watch_pods(tracker), name=f"rebootd.drain.watch.{self.node}")
                tasks = [
                    group.create_task(
                        self._evict_and_wait(p, tracker), name=f"rebootd.drain.pod.{pod_key(p)}"
                    )
                    for p in to_evict
                ]
                await asyncio.wait(tasks)
                watcher.cancel()
        except BaseExceptionGroup as failures:
            raise _first_failure(failures) from None
        return DrainResult(evicted=tuple(t.result() for t in tasks), skipped=tuple(skipped))

    async def _plan(self, pods: Sequence[JsonObj]) -> tuple[list[JsonObj], list[SkippedPod]]:
        exists: dict[tuple[str, str], bool] = {}
        to_evict: list[JsonObj] = []
        skipped: list[SkippedPod] = []
        now = self.clock.now()
        for pod in pods:
            meta = pod.get("metadata") or {}
            namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            daemonset = daemonset_to_check(pod)
            found: bool | None = None
            if daemonset is not None:
                if (namespace, daemonset) not in exists:
                    exists[(namespace, daemonset)] = await self._daemonset_exists(namespace, daemonset, pod)
                found = exists[(namespace, daemonset)]
            verdict = filter_pod(
                pod,
                now=now,
                skip_wait_for_delete_timeout=self.opt.skip_wait_for_delete_timeout,
                daemonset_exists=found,
            )
            if verdict.evict:
                to_evict.append(pod)
                for warning in verdict.warnings:
                    self.log.warning("rebootd.drain.pod_warning", pod=pod_key(pod), warning=warning)
            else:
                skipped.append(SkippedPod(namespace=namespace, name=name, reason=verdict.reason))
                self.log.info("rebootd.drain.pod_skipped", pod=pod_key(pod), reason=verdict.reason)
        return to_evict, skipped

    async def _daemonset_exists(self, namespace: str, name: str, pod: JsonObj) -> bool:
        try:
            await self.kube.get_daemonset(namespace=namespace, name=name)
        except NotFound:
            return False
        except KubeError as exc:
            raise DrainError(
                f"drain of node {self.node}: cannot check DaemonSet {namespace}/{name} "
                f"of pod {pod_key(pod)}: {exc}"
            ) from exc
        return True

    async def _evict_and_wait(self, pod: JsonObj, tracker: NodePods) -> EvictedPod:
        meta = pod.get("metadata") or {}
        namespace, name, uid = str(meta.get("namespace", "")), str(meta.get("name", "")), pod_uid(pod)
        key = pod_key(pod)
        evicted = EvictedPod(namespace=namespace, name=name, uid=uid, owner=controller_of(pod))
        grace = self.opt.grace_period if self.opt.grace_period >= 0 else None
        last_logged = -BLOCKED_LOG_INTERVAL
        while True:
            self.pending[key] = "evicting"
            try:
                async with self._requests:
                    await self.kube.evict_pod(
                        namespace=namespace, name=name, grace_period_seconds=grace, fence=self.fence
                    )
            except NotFound:
                self._gone(key, how="already gone")
                return evicted
            except TooManyRequests as exc:
                why = describe_refusal(exc)
            except Conflict as exc:  # the PDB changed under the eviction: nothing happened, try again
                why = f"eviction conflicted (409): {exc.message}"
            except KubeError as exc:
                if is_namespace_terminating(exc):
                    current = tracker.get(uid) or pod
                    if deletion_time(current) is not None:
                        break  # terminating already; an eviction can never succeed: wait for it
                    why = f"namespace {namespace} is terminating"
                elif is_multiple_pdbs(exc):
                    raise DrainError(await self._multiple_pdbs_message(pod)) from exc
                else:
                    raise DrainError(f"drain of node {self.node}: cannot evict pod {key}: {exc}") from exc
            else:
                break
            self.pending[key] = why
            if self.clock.monotonic() - last_logged >= BLOCKED_LOG_INTERVAL:
                last_logged = self.clock.monotonic()
                self.log.warning(
                    "rebootd.drain.eviction_blocked", pod=key, reason=why, retry_in=self.opt.retry_429
                )
            await sleep_or_stop(seconds=self.opt.retry_429, stop=None)
            if tracker.synced and tracker.get(uid) is None:
                self._gone(key, how="gone while blocked")  # deleted by someone else meanwhile
                return evicted
        self.log.info("rebootd.drain.evicted", pod=key)
        await self._wait_gone(key=key, uid=uid, tracker=tracker)
        return evicted

    async def _wait_gone(self, *, key: str, uid: str, tracker: NodePods) -> None:
        while True:
            if tracker.synced:
                current = tracker.get(uid)
                if current is None:
                    self._gone(key, how="deleted")
                    return
                if terminating_too_long(
                    current,
                    now=self.clock.now(),
                    skip_wait_for_delete_timeout=self.opt.skip_wait_for_delete_timeout,
                ):
                    self._gone(
                        key,
                        how=f"terminating for over {self.opt.skip_wait_for_delete_timeout}s: not waited for",
                    )
                    return
                grace = (current.get("metadata") or {}).get("deletionGracePeriodSeconds")
                self.pending[key] = "terminating" + (f" (grace period {grace}s)" if grace is not None else "")
            else:
                self.pending[key] = "evicted; waiting to see it gone"
            await tracker.changed(within=self.opt.poll)

    def _gone(self, key: str, *, how: str) -> None:
        self.pending.pop(key, None)
        self.log.info("rebootd.drain.pod_gone", pod=key, how=how)

    async def _multiple_pdbs_message(self, pod: JsonObj) -> str:
        key = pod_key(pod)
        namespace = str((pod.get("metadata") or {}).get("namespace", ""))
        try:
            names = pdbs_selecting(pod, await self.kube.list_pdbs(namespace=namespace))
        except KubeError:
            names = []
        which = f" ({', '.join(names)})" if names else ""
        return (
            f"drain of node {self.node}: cannot evict pod {key}: it is selected by more than one "
            f"PodDisruptionBudget{which}, which the eviction API does not support; fix the budgets"
        )


class _Stopped(Exception):
    """The `stop` event was set (turned into DrainStopped by the caller)."""


async def _raise_when_set(stop: asyncio.Event) -> NoReturn:
    await stop.wait()
    raise _Stopped


async def _first_of(
    work: Coroutine[Any, Any, DrainResult], *, stop: asyncio.Event | None, name: str
) -> DrainResult:
    """`work`'s result, or `_Stopped` as soon as `stop` is set (the work is then cancelled); the
    work's own failure wins over a stop set at the same moment."""
    if stop is None:
        return await work
    try:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(work, name=name)
            stopper = group.create_task(_raise_when_set(stop), name=f"{name}.stop")
            await asyncio.wait([task])
            stopper.cancel()
    except BaseExceptionGroup as failures:
        raise _first_failure(failures) from None
    return task.result()


async def _watch_pods(tracker: NodePods) -> NoReturn:
    """The pod watch never ends on its own: its ending (a bug) fails the drain."""
    try:
        await tracker.run()
    except Exception as exc:
        raise DrainError(f"the pod watch ended unexpectedly: {exc!r}") from exc


def _first_failure(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure that made a task group cancel the rest: a DrainError or a fence's verdict
    before the `_Stopped` it raced with (several fail together only when they end in one step)."""
    flat = list(_leaves(failures))
    return next((exc for exc in flat if not isinstance(exc, _Stopped)), flat[0])


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
