"""Which scenarios of `rebootd simulate` run on a real control plane, and their objects there.

Rule: pure. A scenario runs on the real control plane when everything it does is the
simulator's own doing (the machines and their API-only kubelets, the daemons, an operator's or
an admin's API calls), never the emulator's: seeded API faults, scripted node writes (a write
held or its response lost) and partitions are injected by the emulator and a real
kube-apiserver cannot be made to produce them; a Node that must stay Ready longer than the real
controller-manager's node-monitor grace cannot either. `real_unsupported` names the fault that
keeps a scenario off the real plane. The real plane runs on wall-clock time: a window scenario
gets a window opening `WINDOW_LEAD` seconds after the daemons start (`window_env`). The
workloads are Kubernetes objects the real controllers and scheduler act on (`workload_documents`):
a node-pinned workload prefers its nodes (node affinity) and keeps one pod per node (pod
anti-affinity), so once scaled its new pods go elsewhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rebootd.sim.scenarios import ScenarioPlan, Workload

REAL_NODE_MONITOR_GRACE = 5  # seconds: the launcher's --node-monitor-grace-period
# Actions the real run carries out (the machines, the daemons, the admin's API calls).
REAL_ACTIONS = frozenset(
    {"break_pod", "fail_boot", "fail_reboot", "scale", "require_reboot", "freeze", "duplicate_daemon"}
)
WINDOW_LEAD = 8.0  # seconds from the daemons' start to the window's opening
RUN_LABEL = "rebootd.io/sim-run"
GRACE_SECONDS = 30
HOSTNAME = "kubernetes.io/hostname"


def real_unsupported(plan: ScenarioPlan) -> str | None:
    """Why the scenario cannot run on a real control plane (the emulator-only fault it needs),
    or None when it can."""
    if plan.faults is not None:
        return (
            "it injects seeded API faults (5xx, 429, 409, dropped watches, responses lost after the "
            "write) through the emulator's fault injector; a real kube-apiserver does not produce "
            "them on demand"
        )
    if plan.scripts:
        what = ", ".join(
            f"{s.what} #{s.nth}: " + ("response lost" if s.lose else f"held while {s.hold_for} runs")
            for s in plan.scripts
        )
        return (
            f"it scripts a daemon's Node write ({what}) through the emulator's write hook; a real "
            "kube-apiserver cannot hold a write nor lose its response"
        )
    if any(a.kind == "partition" for a in plan.actions):
        return "it partitions a daemon from the API through the emulator's fault injector"
    if plan.node_monitor_grace > REAL_NODE_MONITOR_GRACE:
        return (
            f"it needs a Node to stay Ready for {plan.node_monitor_grace:g} s after its machine died "
            "(the emulator's node-monitor grace); the real controller-manager here marks it NotReady "
            f"after {REAL_NODE_MONITOR_GRACE} s"
        )
    other = sorted({a.kind for a in plan.actions} - REAL_ACTIONS)
    if other:
        return f"its actions {', '.join(other)} are carried out on the emulator only"
    if plan.clock_offsets:
        return "it skews the daemons' clocks against the emulator's"
    return None


def window_env(*, start: datetime, rounds: int, per_node: float) -> dict[str, str]:
    """A maintenance window opening WINDOW_LEAD seconds after `start` (UTC, wall clock), long
    enough for three times the rollout's lower bound plus a minute, on every day."""
    opens = (start + timedelta(seconds=WINDOW_LEAD)).replace(microsecond=0) + timedelta(seconds=1)
    closes = opens + timedelta(seconds=3 * rounds * per_node + 60)
    return {
        "REBOOTD_START_TIME": opens.strftime("%H:%M:%S"),
        "REBOOTD_END_TIME": closes.strftime("%H:%M:%S"),
        "REBOOTD_TIME_ZONE": "UTC",
        "REBOOTD_REBOOT_DAYS": "mon,tue,wed,thu,fri,sat,sun",
    }


def _pod_template(*, name: str, run: str, grace: int, nodes: tuple[str, ...]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "nodeSelector": {RUN_LABEL: run},
        "containers": [{"name": name, "image": f"registry.invalid/{name}:1"}],
    }
    if nodes:
        spec["affinity"] = {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "preference": {
                            "matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": list(nodes)}]
                        },
                    }
                ]
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": name}}, "topologyKey": HOSTNAME}
                ]
            },
        }
    return {"metadata": {"labels": {"app": name}}, "spec": spec}


def _pdb(
    *, name: str, namespace: str, min_available: int | None, max_unavailable: int | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def workload_documents(
    *, plan: ScenarioPlan, namespace: str, run: str, replicas: int, concurrency: int
) -> list[dict[str, Any]]:
    """The run's namespace, the `web` Deployment with its PDB (allowing the concurrency), the
    `agent` DaemonSet (a node-local pod on every node) and the scenario's own workloads, every
    pod kept to the run's nodes (label RUN_LABEL=run)."""
    workloads = (
        Workload(kind="Deployment", name="web", replicas=replicas, pdb_max_unavailable=concurrency),
        Workload(kind="DaemonSet", name="agent"),
        *plan.workloads,
    )
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for w in workloads:
        template = _pod_template(
            name=w.name,
            run=run,
            grace=w.grace_seconds if w.grace_seconds is not None else GRACE_SECONDS,
            nodes=w.nodes,
        )
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app": w.name}}, "template": template}
        if w.kind != "DaemonSet":
            spec["replicas"] = w.replicas
        if w.kind == "StatefulSet":
            spec["serviceName"] = w.name
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": w.kind,
                "metadata": {"name": w.name, "namespace": namespace},
                "spec": spec,
            }
        )
        if w.pdb_min_available is not None or w.pdb_max_unavailable is not None:
            docs.append(
                _pdb(
                    name=w.name,
                    namespace=namespace,
                    min_available=w.pdb_min_available,
                    max_unavailable=w.pdb_max_unavailable,
                )
            )
    return docs
