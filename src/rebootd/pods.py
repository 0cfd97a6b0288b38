"""Pure facts about pods and PodDisruptionBudgets shared by the PDB preflight and the recovery gate.

Rule: no I/O is done here (the module reuses drain.py's filters, so importing it still loads the
Kubernetes facade); the pods a drain would evict are exactly drain.py's filters (DaemonSet pods assumed
to have their DaemonSet), and a PDB refuses an eviction by the eviction API's own rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rebootd.drain import filter_pod, is_finished
from rebootd.selectors import label_selector_from_object, parse_label_selector


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
