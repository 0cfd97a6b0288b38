"""The post-reboot health gate: the slot is freed only once the workloads we disrupted are healthy.

Rule: after the node is back (new bootID, Ready) and uncordoned, wait until
  (a) every pod on the node is Ready (terminal pods aside) and none is in CrashLoopBackOff;
  (b) every controller whose pods the drain evicted has at least as many Ready pods as it had
      just before the drain (the baseline recorded in our node mark; a mark too large to keep
      per-owner details checks (a) and (c) only);
  (c) every PodDisruptionBudget that covered evicted pods is back to currentHealthy >=
      desiredHealthy.
Not met within recovery-timeout: the caller halts the rollout with the reason returned here, which
names the pod or workload at fault. The wait is event-driven: small list+watch caches of the pods
and PDBs involved, re-evaluated on every change, bounded by the timeout.

`read_boot_id` reads the host's own boot id, the first half of the proof of reboot (the cycle
compares it with the one recorded before the reboot, then waits for the Node to report it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rebootd.backoff import Backoff
from rebootd.clock import Clock
from rebootd.kube import Expired, Kube, KubeError
from rebootd.listwatch import ApiErrors, ListWatch
from rebootd.logs import get_logger
from rebootd.pods import controller_of, covering_pdbs, evictable_pods, is_finished, pod_is_ready, pod_key
from rebootd.waits import reap, wait_any

JsonObj = dict[str, Any]
CACHE_WATCH_TIMEOUT = 60  # seconds: each watch request's server-side timeoutSeconds
CACHE_BACKOFF = Backoff(base=0.2, cap=5.0, jitter="full")  # after a failed list or watch
CRASH_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerError"})


def read_boot_id(path: Path) -> str:
    """The host's boot id (`/proc/sys/kernel/random/boot_id` is not namespaced: a container reads
    the host's). "" when it cannot be read; the caller decides what that means."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


# --- pure: the baseline and the three conditions -------------------------------------------


def baseline(
    *,
    node_pods: Iterable[Mapping[str, Any]],
    namespace_pods: Iterable[Mapping[str, Any]],
    pdbs: Iterable[Mapping[str, Any]],
    pod_selector: str,
    clock: Clock,
) -> dict[str, Any]:
    """What "healthy again" means for this drain: Ready pods per controller, and the PDBs involved."""
    evicted = evictable_pods(node_pods, pod_selector=pod_selector, now=clock.now())
    owners: dict[str, dict[str, Any]] = {}
    for pod in evicted:
        owner = controller_of(pod)
        if owner is None or owner.kind == "DaemonSet":
            continue
        namespace = pod["metadata"].get("namespace", "")
        owners[owner.uid] = {"kind": owner.kind, "name": owner.name, "namespace": namespace, "ready": 0}
    for pod in namespace_pods:
        owner = controller_of(pod)
        if (
            owner is not None
            and owner.uid in owners
            and pod_is_ready(pod)
            and not pod["metadata"].get("deletionTimestamp")
        ):
            owners[owner.uid]["ready"] += 1
    pdb_list = list(pdbs)
    covering = {
        f"{pdb['metadata'].get('namespace', '')}/{pdb['metadata']['name']}"
        for pod in evicted
        for pdb in covering_pdbs(pod, pdb_list)
    }
    return {"owners": owners, "pdbs": sorted(covering)}


def container_trouble(pod: Mapping[str, Any]) -> str | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CRASH_REASONS:
            return f"container {status.get('name')} is in {waiting['reason']}"
    return None


def node_pods_problem(pods: Iterable[Mapping[str, Any]], *, node: str) -> str | None:
    """(a): the first pod on the node that is not Ready, or crash-looping."""
    for pod in sorted(pods, key=pod_key):
        if is_finished(pod) or pod["metadata"].get("deletionTimestamp"):
            continue
        trouble = container_trouble(pod)
        if trouble is not None:
            return f"pod {pod_key(pod)} on {node}: {trouble}"
        if not pod_is_ready(pod):
            return f"pod {pod_key(pod)} on {node} is not Ready"
    return None


def owners_problem(
    pods: Iterable[Mapping[str, Any]], *, owners: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """(b): a controller with fewer Ready pods than before the drain."""
    ready: dict[str, int] = dict.fromkeys(owners, 0)
    crashing: dict[str, str] = {}
    for pod in pods:
        owner = controller_of(pod)
        if owner is None or owner.uid not in owners or pod["metadata"].get("deletionTimestamp"):
            continue
        if pod_is_ready(pod):
            ready[owner.uid] += 1
        elif (trouble := container_trouble(pod)) is not None:
            crashing.setdefault(owner.uid, f"pod {pod_key(pod)}: {trouble}")
    for uid, info in sorted(owners.items(), key=lambda kv: (kv[1]["namespace"], kv[1]["name"])):
        if ready[uid] < int(info["ready"]):
            why = f"; {crashing[uid]}" if uid in crashing else ""
            return (
                f"{info['kind']} {info['namespace']}/{info['name']} has {ready[uid]} Ready pods, "
                f"had {info['ready']} before the drain{why}"
            )
    return None


def pdbs_problem(pdbs: Iterable[Mapping[str, Any]], *, names: Iterable[str]) -> str | None:
    """(c): a PDB that covered evicted pods and is not back to its desired health."""
    wanted = set(names)
    for pdb in pdbs:
        key = f"{pdb['metadata'].get('namespace', '')}/{pdb['metadata']['name']}"
        if key not in wanted:
            continue
        status = pdb.get("status") or {}
        healthy, desired = int(status.get("currentHealthy", 0)), int(status.get("desiredHealthy", 0))
        if healthy < desired:
            return f"PodDisruptionBudget {key} has {healthy} healthy pods, needs {desired}"
    return None


# --- I/O: small informers and the gate ------------------------------------------------------


class Cache:
    """The objects of one list+watch (the one loop, `rebootd.listwatch`), kept current and keyed
    `namespace/name`; `changed` is set on every list and event, `synced` after the first list."""

    def __init__(
        self,
        *,
        kube: Kube,
        kind: str,
        namespace: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = CACHE_WATCH_TIMEOUT,
        backoff: Backoff = CACHE_BACKOFF,
    ) -> None:
        self._kind = kind
        self.objects: dict[str, JsonObj] = {}
        self.changed = asyncio.Event()
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop = ListWatch(
            api=kube,
            errors=ApiErrors(error=KubeError, expired=Expired),
            kind=kind,
            namespace=namespace,
            field_selector=field_selector,
            watch_timeout=watch_timeout,
            backoff=backoff,
            on_list=self._listed,
            on_event=self._apply,
        )

    async def __aenter__(self) -> Cache:
        self._task = asyncio.create_task(self._loop.run(), name=f"rebootd.recovery.cache.{self._kind}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        await reap(task)

    def check(self) -> None:
        """Raise what ended the loop (a bug: API errors are retried there, never raised)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"the {self._kind} cache stopped") from task.exception()

    def _listed(self, items: list[JsonObj]) -> None:
        self.objects = {self._key(o): o for o in items}
        self.synced.set()
        self.changed.set()

    def _apply(self, event_type: str, obj: JsonObj) -> None:
        if event_type == "DELETED":
            self.objects.pop(self._key(obj), None)
        else:
            self.objects[self._key(obj)] = obj
        self.changed.set()

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class WorkloadRecovery:
    """The gate as the cycle uses it: `record` before the drain, `wait_healthy` after uncordon."""

    def __init__(self, *, kube: Kube, clock: Clock, pod_selector: str = "") -> None:
        self._kube = kube
        self._clock = clock
        self._pod_selector = pod_selector

    async def record(self, *, node: str) -> dict[str, Any]:
        node_pods = await self._kube.list_pods(field_selector=f"spec.nodeName={node}")
        namespaces = sorted({p["metadata"].get("namespace", "") for p in node_pods})
        # The namespaces' pods and PDBs at once: this read sits between taking the slot and the cordon.
        lists = await asyncio.gather(
            *(self._kube.list_pods(namespace=ns) for ns in namespaces),
            *(self._kube.list_pdbs(namespace=ns) for ns in namespaces),
        )
        namespace_pods = [pod for items in lists[: len(namespaces)] for pod in items]
        pdbs = [pdb for items in lists[len(namespaces) :] for pdb in items]
        return baseline(
            node_pods=node_pods,
            namespace_pods=namespace_pods,
            pdbs=pdbs,
            pod_selector=self._pod_selector,
            clock=self._clock,
        )

    async def wait_healthy(
        self, *, node: str, evidence: Mapping[str, Any], within: float, stop: asyncio.Event
    ) -> str | None:
        base = evidence.get("baseline") or {"owners": {}, "pdbs": []}
        owners: Mapping[str, Mapping[str, Any]] = base.get("owners") or {}
        pdb_names: list[str] = list(base.get("pdbs") or [])
        namespaces = sorted(
            {str(o["namespace"]) for o in owners.values()} | {n.split("/", 1)[0] for n in pdb_names}
        )
        log = get_logger(node=node)
        deadline = self._clock.monotonic() + within
        async with contextlib.AsyncExitStack() as stack:
            node_cache = await stack.enter_async_context(
                Cache(kube=self._kube, kind="pods", field_selector=f"spec.nodeName={node}")
            )
            pod_caches = [
                await stack.enter_async_context(Cache(kube=self._kube, kind="pods", namespace=ns))
                for ns in namespaces
            ]
            pdb_caches = [
                await stack.enter_async_context(
                    Cache(kube=self._kube, kind="poddisruptionbudgets", namespace=ns)
                )
                for ns in sorted({n.split("/", 1)[0] for n in pdb_names})
            ]
            caches = [node_cache, *pod_caches, *pdb_caches]
            problem: str | None = "not yet observed"
            while not stop.is_set():
                for cache in caches:
                    cache.check()
                    cache.changed.clear()  # before evaluating: a change during evaluation wakes us
                if all(c.synced.is_set() for c in caches):
                    problem = (
                        node_pods_problem(node_cache.objects.values(), node=node)
                        or owners_problem((p for c in pod_caches for p in c.objects.values()), owners=owners)
                        or pdbs_problem((p for c in pdb_caches for p in c.objects.values()), names=pdb_names)
                    )
                    if problem is None:
                        log.info("rebootd.recovery.healthy")
                        return None
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    break
                await wait_any(events=[*(c.changed for c in caches), stop], seconds=min(remaining, 5.0))
            log.warning("rebootd.recovery.unhealthy", problem=problem)
            return problem
