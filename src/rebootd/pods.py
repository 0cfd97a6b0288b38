"""Pure facts about pods and PodDisruptionBudgets: kubectl drain's filters (which drain.py
applies), and what the PDB preflight and the recovery gate judge.

Rule: no I/O and no I/O library, nothing of rebootd's but the pure selectors (an import contract
in pyproject.toml); the pods a drain would evict are exactly these filters (DaemonSet pods assumed
to have their DaemonSet), and a PDB refuses an eviction by the eviction API's own rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rebootd.selectors import label_selector_from_object, parse_label_selector

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class Owner:
    """A pod's controller (its ownerReference with `controller: true`)."""

    kind: str
    name: str
    uid: str
    api_version: str = ""

    def to_json(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Owner:
        return cls(
            kind=str(data.get("kind", "")),
            name=str(data.get("name", "")),
            uid=str(data.get("uid", "")),
            api_version=str(data.get("apiVersion", "")),
        )


# --- kubectl drain's filters (drain.py evicts what they let go) ---------------------------------


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def pod_uid(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


def controller_of(pod: Mapping[str, Any]) -> Owner | None:
    """metav1.GetControllerOf: the ownerReference with `controller: true`, if any."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return Owner(
                kind=str(ref.get("kind", "")),
                name=str(ref.get("name", "")),
                uid=str(ref.get("uid", "")),
                api_version=str(ref.get("apiVersion", "")),
            )
    return None


def is_finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in FINISHED_PHASES


def deletion_time(pod: Mapping[str, Any]) -> datetime | None:
    raw = (pod.get("metadata") or {}).get("deletionTimestamp")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def terminating_too_long(pod: Mapping[str, Any], *, now: datetime, skip_wait_for_delete_timeout: int) -> bool:
    """kubectl's shouldSkipPod: deletionTimestamp set and more than N whole seconds ago (N > 0)."""
    if skip_wait_for_delete_timeout <= 0:
        return False
    since = deletion_time(pod)
    return since is not None and int((now - since).total_seconds()) > skip_wait_for_delete_timeout


def daemonset_to_check(pod: Mapping[str, Any]) -> str | None:
    """The DaemonSet whose existence decides this pod's fate: the name of its controlling
    DaemonSet unless the pod has finished (a finished DaemonSet pod is simply removed)."""
    owner = controller_of(pod)
    if owner is None or owner.kind != "DaemonSet" or is_finished(pod):
        return None
    return owner.name


def has_local_storage(pod: Mapping[str, Any]) -> bool:
    return any(
        isinstance(v, Mapping) and v.get("emptyDir") is not None
        for v in (pod.get("spec") or {}).get("volumes") or []
    )


@dataclass(frozen=True)
class Verdict:
    """What the filters decided for one pod: evict it, or skip it for `reason`. `warnings` are
    kubectl's warnings for pods evicted thanks to force / delete-emptydir-data."""

    evict: bool
    reason: str = ""
    warnings: tuple[str, ...] = field(default=())


def filter_pod(
    pod: Mapping[str, Any],
    *,
    now: datetime,
    skip_wait_for_delete_timeout: int,
    daemonset_exists: bool | None = None,
) -> Verdict:
    """kubectl's filters in order (skipDeleted, daemonSet, mirrorPod, localStorage, unreplicated)
    with force, ignore-daemonsets and delete-emptydir-data on. `daemonset_exists` answers the GET
    of `daemonset_to_check(pod)` (ignored when that is None)."""
    if terminating_too_long(pod, now=now, skip_wait_for_delete_timeout=skip_wait_for_delete_timeout):
        return Verdict(evict=False, reason=f"terminating for more than {skip_wait_for_delete_timeout}s")
    warnings: list[str] = []
    daemonset = daemonset_to_check(pod)
    if daemonset is not None:
        if daemonset_exists is None:
            raise ValueError(f"pod {pod_key(pod)}: DaemonSet {daemonset} must be looked up first")
        if daemonset_exists:
            return Verdict(evict=False, reason=f"DaemonSet-managed (DaemonSet {daemonset})")
        warnings.append(f"orphaned: DaemonSet {daemonset} not found")
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if MIRROR_POD_ANNOTATION in annotations:
        return Verdict(evict=False, reason="mirror pod (static pod managed by the kubelet)")
    finished = is_finished(pod)
    if has_local_storage(pod) and not finished:
        warnings.append("deleting Pods with local storage (emptyDir)")
    if not finished and controller_of(pod) is None:
        warnings.append("deleting Pods that declare no controller")
    return Verdict(evict=True, warnings=tuple(warnings))


# --- the PDB preflight and the recovery gate -------------------------------------------------------


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def evictable_pods(
    pods: Iterable[Mapping[str, Any]], *, pod_selector: str, now: datetime
) -> list[Mapping[str, Any]]:
    """The pods a drain of this node would evict (DaemonSet pods are assumed to have their
    DaemonSet, as almost always; terminal pods have nothing to disrupt)."""
    selector = parse_label_selector(pod_selector)
    chosen = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or is_finished(pod):
            continue
        if not selector.matches(meta.get("labels") or {}):
            continue
        verdict = filter_pod(pod, now=now, skip_wait_for_delete_timeout=0, daemonset_exists=True)
        if verdict.evict:
            chosen.append(pod)
    return chosen


def covering_pdbs(pod: Mapping[str, Any], pdbs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return [
        pdb
        for pdb in pdbs
        if (pdb.get("metadata") or {}).get("namespace") == meta.get("namespace")
        and label_selector_from_object((pdb.get("spec") or {}).get("selector")).matches(labels)
    ]


def pdb_refusal(pod: Mapping[str, Any], pdb: Mapping[str, Any]) -> str | None:
    """Why an eviction of `pod` under `pdb` would be refused now (the eviction API's rules), or None."""
    status = pdb.get("status") or {}
    name = f"{pdb['metadata'].get('namespace')}/{pdb['metadata']['name']}"
    healthy, desired = int(status.get("currentHealthy", 0)), int(status.get("desiredHealthy", 0))
    if not pod_is_ready(pod):
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
        if policy == "AlwaysAllow" or healthy >= desired:
            return None
    if int(status.get("disruptionsAllowed", 0)) >= 1:
        return None
    return f"PodDisruptionBudget {name} allows 0 disruptions (needs {desired} healthy pods, has {healthy})"
