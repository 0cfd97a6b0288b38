"""`rebootd simulate --control-plane real`: the rollout on a real Kubernetes control plane.

Rule: the built etcd, kube-apiserver, kube-controller-manager and kube-scheduler (issue 15's
`rebootd.controlplane`) start in the run's work directory; rebootd's own RBAC from
deploy/kustomize/base (its ServiceAccount, ClusterRole, Role and bindings) is applied, and every
daemon holds a real token of that ServiceAccount from the TokenRequest API, with its node in its
User-Agent (`rebootd@NODE`, the identity the invariants need: all daemons share one
ServiceAccount). The machines are `ApiMachines` (kubelets that speak only the API); the real
scheduler places the workload's pods, the real controller-manager recreates them and maintains the
PodDisruptionBudget's status. Every node needs a reboot. The run ends when every node rebooted and
the Lease holds no slot (or the deadline passes); then the same report and the same invariants as
on the emulator, judged from the kube-apiserver's audit log (the daemons' reads are audited too,
so the request figures and the 403 count cover every request) merged with the machines' notes
(reboot needs, requests, machines going down). Only the `default` scenario runs here: the others
need the emulator's fault injection or scripted writes. A request of a daemon refused with 403
fails the run.

Without the built binaries: `ControlPlaneMissing`, whose message names the command that builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from rebootd.controlplane import Binaries, BuildError, ControlPlane, locate_binaries, running_control_plane
from rebootd.controlplane.build import BUILD_COMMAND, find_module_dir
from rebootd.kube import Kube
from rebootd.lock import state_of
from rebootd.lockstate import StateFormatError
from rebootd.sim.audit import Note, client_of, history_from_audit
from rebootd.sim.harness import DaemonSeams, SimNode
from rebootd.sim.invariants import is_rebootd
from rebootd.sim.kubelet import ApiMachines, KubeletTiming
from rebootd.sim.report import PerNodeMinimum, Report, RunFacts, build_report, render_text, to_json

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:rebootd"
LOCK_NAME = "rebootd"
WORKLOAD_NAMESPACE = "apps"
RBAC_FILES = ("serviceaccount.yaml", "clusterrole.yaml", "role.yaml")
GRACE_SECONDS = 30
POLL = 0.2
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HALTED = 0, 1, 2, 3
ZONE_LABEL = "topology.kubernetes.io/zone"


class ControlPlaneMissing(RuntimeError):
    """The control plane cannot run here; the message says what to do (exit 2)."""


@dataclass
class RealOutcome:
    report: Report
    control_plane: dict[str, str]
    title: str
    status: str  # completed | halted | timed_out
    wall_seconds: float
    command: str
    events: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)  # the daemons' requests answered 403

    @property
    def exit_code(self) -> int:
        if not self.report.ok or self.status == "timed_out" or self.forbidden:
            return EXIT_FAILED
        return EXIT_HALTED if self.status == "halted" else EXIT_OK

    def summary_line(self) -> str:
        if self.exit_code == EXIT_FAILED:
            failed = [n for n, c in self.report.invariants.items() if not c.ok]
            if self.status == "timed_out":
                failed.append("timed out")
            if self.forbidden:
                failed.append(
                    f"{len(self.forbidden)} requests refused (403): {', '.join(self.forbidden[:5])}"
                )
            return f"Result: FAILED ({'; '.join(failed)}); exit 1. Reproduce: {self.command}"
        if self.exit_code == EXIT_HALTED:
            return f"Result: HALTED ({self.report.halted_reason}); every invariant held; exit 3"
        return "Result: completed; every invariant held; exit 0"

    def render(self) -> str:
        return render_text(
            self.report,
            title=self.title,
            outcome=self.summary_line(),
            history_source="the kube-apiserver's audit log and the machines' notes",
        )

    def to_json(self) -> dict[str, Any]:
        data = to_json(self.report, extra={"scenario": "default", "status": self.status})
        data["control_plane"] = dict(self.control_plane)
        data["exit_code"] = self.exit_code
        data["wall_seconds"] = round(self.wall_seconds, 3)
        data["command"] = self.command
        data["history_source"] = "kube-apiserver audit log"
        data["forbidden"] = list(self.forbidden)
        return data


def rbac_documents(base: Path) -> list[dict[str, Any]]:
    """The base's ServiceAccount, roles and bindings, in the namespace kustomize gives them."""
    docs = []
    for name in RBAC_FILES:
        for doc in yaml.safe_load_all((base / name).read_text()):
            if not doc:
                continue
            if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                doc["metadata"]["namespace"] = NAMESPACE
            docs.append(doc)
    return docs


def _collection(doc: Mapping[str, Any]) -> str:
    version = str(doc["apiVersion"])
    plural = {
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Namespace": "namespaces",
        "Deployment": "deployments",
        "PodDisruptionBudget": "poddisruptionbudgets",
        "DaemonSet": "daemonsets",
        "Node": "nodes",
        "Secret": "secrets",
        "ConfigMap": "configmaps",
    }[str(doc["kind"])]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    namespace = (doc.get("metadata") or {}).get("namespace")
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def create(plane: ControlPlane, doc: Mapping[str, Any]) -> None:
    try:
        plane.request("POST", _collection(doc), body=doc)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


def workload(*, replicas: int) -> list[dict[str, Any]]:
    labels = {"app": "web"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WORKLOAD_NAMESPACE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": WORKLOAD_NAMESPACE},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": GRACE_SECONDS,
                        "containers": [{"name": "web", "image": "registry.invalid/web:1"}],
                    },
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": WORKLOAD_NAMESPACE},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
        },
    ]


def layout(*, nodes: int, zones: int) -> dict[str, str]:
    width = max(3, len(str(nodes - 1)))
    return {f"node-{i:0{width}d}": f"zone-{chr(ord('a') + i % zones)}" for i in range(nodes)}


def daemon_env(
    *, concurrency: int, zone_concurrency: int, drain: float, boot: float, release: float
) -> dict[str, str]:
    return {
        "REBOOTD_PERIOD": "1s",
        "REBOOTD_LOCK_NAMESPACE": NAMESPACE,
        "REBOOTD_LOCK_NAME": LOCK_NAME,
        "REBOOTD_LOCK_TTL": "5s",
        "REBOOTD_LOCK_RENEW_INTERVAL": "1s",
        "REBOOTD_LOCK_RELEASE_DELAY": f"{release:g}s",
        "REBOOTD_CONCURRENCY": str(concurrency),
        "REBOOTD_ZONE_CONCURRENCY": str(zone_concurrency),
        "REBOOTD_BOOT_TIMEOUT": f"{boot * 3 + 10:g}s",
        "REBOOTD_RECOVERY_TIMEOUT": "30s",
        "REBOOTD_DRAIN_TIMEOUT": f"{drain * 4 + 20:g}s",
        "REBOOTD_MIN_REBOOT_INTERVAL": "0s",
    }


async def simulate_real(
    *,
    nodes: int,
    zones: int,
    concurrency: int,
    zone_concurrency: int,
    drain_seconds: float,
    boot_seconds: float,
    recovery_seconds: float,
    release_delay: float,
    workdir: Path,
    command: str,
    deadline_seconds: float | None = None,
    binaries: Binaries | None = None,
) -> RealOutcome:
    """One rollout on a real control plane (see the module rule)."""
    try:
        found = binaries if binaries is not None else locate_binaries()
        base = find_module_dir().parent / "deploy" / "kustomize" / "base"
    except BuildError as exc:
        raise ControlPlaneMissing(
            f"--control-plane real needs the control-plane binaries: {exc}. Build them with "
            f"`{BUILD_COMMAND}` (or `python -m rebootd.controlplane build`) from a checkout of rebootd"
        ) from exc
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        plane = await asyncio.to_thread(
            stack.enter_context, running_control_plane(binaries=found, work_dir=workdir / "controlplane")
        )
        return await _run(
            plane=plane,
            base=base,
            zones=layout(nodes=nodes, zones=zones),
            concurrency=concurrency,
            zone_concurrency=zone_concurrency,
            drain_seconds=drain_seconds,
            boot_seconds=boot_seconds,
            recovery_seconds=recovery_seconds,
            release_delay=release_delay,
            workdir=workdir,
            command=command,
            deadline_seconds=deadline_seconds,
            started=started,
        )
    raise AssertionError("unreachable")


async def _run(
    *,
    plane: ControlPlane,
    base: Path,
    zones: Mapping[str, str],
    concurrency: int,
    zone_concurrency: int,
    drain_seconds: float,
    boot_seconds: float,
    recovery_seconds: float,
    release_delay: float,
    workdir: Path,
    command: str,
    deadline_seconds: float | None,
    started: float,
) -> RealOutcome:
    for doc in rbac_documents(base):
        await asyncio.to_thread(create, plane, doc)
    token = await asyncio.to_thread(plane.service_account_token, namespace=NAMESPACE, name="rebootd")
    daemon_kubeconfig = plane.write_kubeconfig(workdir / "daemon.kubeconfig", user=token)
    notes: list[Note] = []
    timing = KubeletTiming(
        boot_seconds=boot_seconds, pod_start=recovery_seconds, grace_scale=drain_seconds / GRACE_SECONDS
    )
    machines = ApiMachines(kubeconfig=plane.kubeconfig, timing=timing, notes=notes)
    sims: list[SimNode] = []
    events: list[str] = []
    try:
        for name, zone in zones.items():
            await machines.add(name, labels={ZONE_LABEL: zone})
        for doc in workload(replicas=max(2, len(zones))):
            await asyncio.to_thread(create, plane, doc)
        await _wait(lambda: _workload_ready(plane, len(zones)), within=60.0, what="the workload's pods Ready")
        env = daemon_env(
            concurrency=concurrency,
            zone_concurrency=zone_concurrency,
            drain=drain_seconds,
            boot=boot_seconds,
            release=release_delay,
        )
        origin = time.time()
        for name in zones:
            sim = SimNode(
                emulator=None,
                name=name,
                workdir=workdir / "nodes" / name,
                env=env,
                host=machines,
                kubeconfig=daemon_kubeconfig,
                seams=DaemonSeams(connect=functools.partial(Kube.connect, user_agent=f"rebootd@{name}")),
                time_scale=0.1,
            )
            sims.append(sim)
            sim.require_reboot()
            notes.append(Note(time=datetime.now(UTC), event="reboot_needed", client="simulator", node=name))
        for sim in sims:
            await sim.start()
        per_node = drain_seconds + boot_seconds + recovery_seconds + release_delay
        deadline = (
            deadline_seconds
            if deadline_seconds is not None
            else 120.0 + 10.0 * per_node * len(zones) / concurrency
        )
        status = await _supervise(plane, machines, zones=zones, within=deadline)
    finally:
        for sim in sims:
            await sim.stop()
        await machines.close()
    ended = time.time()
    report, forbidden = await judge(
        plane,
        zones=zones,
        notes=notes,
        concurrency=concurrency,
        zone_concurrency=zone_concurrency,
        minimum=PerNodeMinimum(
            drain=drain_seconds, boot=boot_seconds, recovery=recovery_seconds, release_delay=release_delay
        ),
        origin=origin,
        ended=ended,
        timed_out=status == "timed_out",
    )
    version = plane.version
    title = (
        f"rebootd simulate: {len(zones)} nodes in {len(set(zones.values()))} zones, "
        f"concurrency {concurrency}, scenario default, on a real control plane: "
        f"kube-apiserver {version.get('gitVersion')} "
        "(etcd, kube-controller-manager, kube-scheduler; API-only simulated kubelets)\n"
        "Scenario: every node needs a reboot; a Deployment with a PodDisruptionBudget; invariants from the "
        "kube-apiserver's audit log"
    )
    return RealOutcome(
        report=report,
        control_plane={
            "name": "kube-apiserver",
            "version": str(version.get("gitVersion", "")),
            "url": plane.url,
        },
        title=title,
        status=status,
        wall_seconds=time.monotonic() - started,
        command=command,
        events=events,
        forbidden=forbidden,
    )


def refusals(events: list[dict[str, Any]], *, user: str) -> list[str]:
    """Every request of `user` the server answered 403, as `verb resource/subresource name`."""
    out = []
    for event in events:
        if (event.get("user") or {}).get("username") != user:
            continue
        if int((event.get("responseStatus") or {}).get("code") or 0) == 403:
            ref = event.get("objectRef") or {}
            what = "/".join(x for x in (ref.get("resource"), ref.get("subresource")) if x)
            out.append(f"{event.get('verb')} {what} {ref.get('namespace', '')}/{ref.get('name', '')}")
    return out


async def judge(
    plane: ControlPlane,
    *,
    zones: Mapping[str, str],
    notes: list[Note],
    concurrency: int,
    zone_concurrency: int,
    minimum: PerNodeMinimum,
    origin: float,
    ended: float,
    timed_out: bool = False,
) -> tuple[Report, list[str]]:
    """The report of a run from the kube-apiserver's audit log and the machines' notes, and the
    daemons' requests refused with 403."""
    nodes = (await asyncio.to_thread(plane.request, "GET", "/api/v1/nodes"))["items"]
    final_nodes = [n for n in nodes if n["metadata"]["name"] in zones]
    await asyncio.sleep(0.5)  # the audit log is written as responses go out
    events = await asyncio.to_thread(plane.audit_events)
    history = history_from_audit(events, notes)
    counts: dict[tuple[str, str], int] = {}
    for event in events:
        client = client_of(event)
        if is_rebootd(client) and event.get("stage") == "ResponseComplete":
            key = (client, str(event.get("verb")))
            counts[key] = counts.get(key, 0) + 1
    report = build_report(
        RunFacts(
            history=history,
            final_nodes=final_nodes,
            zones=zones,
            needed=list(zones),
            admin_cordoned=(),
            concurrency=concurrency,
            zone_concurrency=zone_concurrency,
            window=None,
            minimum=minimum,
            request_counts=counts,
            origin=origin,
            ended=ended,
            lock_namespace=NAMESPACE,
            lock_name=LOCK_NAME,
            timed_out=timed_out,
        )
    )
    return report, refusals(events, user=SERVICE_ACCOUNT)


async def _wait(probe: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {within:g} s")
        await asyncio.sleep(POLL)


async def _workload_ready(plane: ControlPlane, replicas: int) -> bool:
    path = f"/apis/apps/v1/namespaces/{WORKLOAD_NAMESPACE}/deployments/web"
    deployment = await asyncio.to_thread(plane.request, "GET", path)
    want = max(2, replicas)
    return int((deployment.get("status") or {}).get("readyReplicas") or 0) >= want


async def _supervise(
    plane: ControlPlane, machines: ApiMachines, *, zones: Mapping[str, str], within: float
) -> str:
    """Until every machine rebooted once and the Lease holds no slot: completed; a halt: halted."""
    deadline = time.monotonic() + within
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LOCK_NAME}"
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        try:
            lease = await asyncio.to_thread(plane.request, "GET", path)
            state = state_of(lease)
        except (urllib.error.HTTPError, StateFormatError):
            continue
        if state.halted:
            return "halted"
        rebooted = all(machines.machines[name].boots >= 2 for name in zones)
        if rebooted and not state.holders:
            return "completed"
    return "timed_out"
