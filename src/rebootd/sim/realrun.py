"""`rebootd simulate --control-plane real`: the rollout on a real Kubernetes control plane.

Rule: the built etcd, kube-apiserver, kube-controller-manager and kube-scheduler (issue 15's
`rebootd.controlplane`) start in the run's work directory (or a plane given by the caller is
shared: each run has its own node names, workload namespace and token, clears the lock Lease left
by the run before and reads the audit log from its own start on); rebootd's own RBAC from
deploy/kustomize/base (its ServiceAccount, ClusterRole, Role and bindings) is applied, and every
daemon holds a real token of that ServiceAccount from the TokenRequest API, with its node in its
User-Agent (`rebootd@NODE`, the identity the invariants need: all daemons share one
ServiceAccount). The machines are `ApiMachines` (kubelets that speak only the API); the real
scheduler places the workloads' pods, the real controller-manager recreates them and maintains the
PodDisruptionBudgets' status. The scenario is `rebootd simulate`'s own plan (`scenarios.py`):
every scenario runs here unless it needs an emulator-only fault (`realplan.real_unsupported`:
then `check_runnable` raises ScenarioError, exit 2, naming it); its actions are the simulator's
(a pod that crash-loops after the reboot and a machine that never boots are the API kubelet's, a
failing reboot command, a frozen or duplicate daemon the daemon harness's, a scale-up an admin's
API call), fired by the same triggers (`follow.due`) on the Lease as polled here. The run ends
when every node that needed it rebooted and the Lease holds no slot, or a halt was seen (and
watched a lock TTL more), or the deadline passes; then the same report, invariants and scenario
expectations (`expect.scenario_checks`) as on the emulator, judged from the kube-apiserver's
audit log (the daemons' reads are audited too, so the request figures and the 403 count cover
every request) merged with the machines' notes (reboot needs, requests, machines going down). A
request of a daemon refused with 403 fails the run. The real plane runs on the wall clock: the
window scenario's window opens a few seconds after the daemons start.

Without the built binaries: `ControlPlaneMissing`, whose message names the command that builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import urllib.error
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from rebootd.controlplane import Binaries, BuildError, ControlPlane, locate_binaries, running_control_plane
from rebootd.controlplane.build import BUILD_COMMAND, find_module_dir
from rebootd.emulator.history import HistoryRecord
from rebootd.kube import Kube
from rebootd.schedule import Window
from rebootd.settings import load_settings
from rebootd.sim.audit import Note, client_of, history_from_audit, parse_time
from rebootd.sim.expect import Check, justified_halt, scenario_checks
from rebootd.sim.follow import LockFollower, due
from rebootd.sim.harness import DaemonSeams, FreezeArm, SimNode
from rebootd.sim.invariants import is_rebootd
from rebootd.sim.kubelet import Api, ApiError, ApiMachines, Endpoint, KubeletTiming
from rebootd.sim.realplan import RUN_LABEL, real_unsupported, window_env, workload_documents
from rebootd.sim.report import PerNodeMinimum, Report, RunFacts, build_report, render_text, to_json
from rebootd.sim.scenarios import SCENARIOS, Action, ScenarioError, ScenarioPlan, plan_scenario
from rebootd.sim.shape import RolloutShape

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:rebootd"
LOCK_NAME = "rebootd"
WORKLOAD_NAMESPACE = "apps"
RBAC_FILES = ("serviceaccount.yaml", "clusterrole.yaml", "role.yaml", "heartbeat-role.yaml")
GRACE_SECONDS = 30
POLL = 0.1
LOCK_TTL = 5.0  # seconds (REBOOTD_LOCK_TTL of the daemons here)
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
    scenario: str = "default"
    events: list[str] = field(default_factory=list)  # the scenario's actions carried out
    forbidden: list[str] = field(default_factory=list)  # the daemons' requests answered 403
    checks: list[Check] = field(default_factory=list)  # the scenario's expectations
    halt_justified: str | None = None
    history: list[HistoryRecord] = field(default_factory=list)  # what the invariants judged

    @property
    def exit_code(self) -> int:
        if (
            not self.report.ok
            or self.status == "timed_out"
            or self.forbidden
            or not all(ok for ok, _ in self.checks)
        ):
            return EXIT_FAILED
        return EXIT_HALTED if self.status == "halted" else EXIT_OK

    def summary_line(self) -> str:
        if self.exit_code == EXIT_FAILED:
            failed = [n for n, c in self.report.invariants.items() if not c.ok]
            if self.status == "timed_out":
                failed.append("timed out")
            failed += [text for ok, text in self.checks if not ok]
            if self.forbidden:
                failed.append(
                    f"{len(self.forbidden)} requests refused (403): {', '.join(self.forbidden[:5])}"
                )
            return f"Result: FAILED ({'; '.join(failed)}); exit 1. Reproduce: {self.command}"
        if self.exit_code == EXIT_HALTED:
            return f"Result: HALTED ({self.report.halted_reason}); every invariant held; exit 3"
        return "Result: completed; every invariant held; exit 0"

    def render(self) -> str:
        text = render_text(
            self.report,
            title=self.title,
            outcome=self.summary_line(),
            history_source="the kube-apiserver's audit log and the machines' notes",
        )
        extra = []
        if self.events:
            extra += ["Scenario actions", *(f"  {e}" for e in self.events)]
        if self.checks:
            extra += [
                "Scenario expectations",
                *(f"  {'PASS' if ok else 'FAIL'}  {t}" for ok, t in self.checks),
            ]
        if extra:
            head, _, tail = text.rpartition("\n\n")
            text = "\n".join([head, "", *extra, "", tail])
        return text

    def to_json(self) -> dict[str, Any]:
        data = to_json(self.report, extra={"scenario": self.scenario, "status": self.status})
        data["scenario_expectations"] = [{"ok": ok, "detail": text} for ok, text in self.checks]
        data["scenario_actions"] = list(self.events)
        data["halt_justified"] = self.halt_justified
        data["control_plane"] = dict(self.control_plane)
        data["exit_code"] = self.exit_code
        data["wall_seconds"] = round(self.wall_seconds, 3)
        data["command"] = self.command
        data["history_source"] = "kube-apiserver audit log"
        data["forbidden"] = list(self.forbidden)
        return data


def rbac_documents(base: Path) -> list[dict[str, Any]]:
    """The base's ServiceAccount, roles and bindings (the heartbeat Role in kube-node-lease
    included), in the namespace kustomize gives them."""
    docs = []
    for name in RBAC_FILES:
        for doc in yaml.safe_load_all((base / name).read_text()):
            if not doc:
                continue
            if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):  # where the base leaves it unset
                doc["metadata"].setdefault("namespace", NAMESPACE)
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
        "StatefulSet": "statefulsets",
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
        "REBOOTD_LOCK_TTL": f"{LOCK_TTL:g}s",
        "REBOOTD_LOCK_RENEW_INTERVAL": "1s",
        "REBOOTD_LOCK_RELEASE_DELAY": f"{release:g}s",
        "REBOOTD_CONCURRENCY": str(concurrency),
        "REBOOTD_ZONE_CONCURRENCY": str(zone_concurrency),
        "REBOOTD_BOOT_TIMEOUT": f"{boot * 3 + 10:g}s",
        "REBOOTD_RECOVERY_TIMEOUT": "30s",
        "REBOOTD_DRAIN_TIMEOUT": f"{drain * 4 + 20:g}s",
        "REBOOTD_MIN_REBOOT_INTERVAL": "0s",
    }


@dataclass(frozen=True, kw_only=True)
class RealConfig(RolloutShape):
    """What to run on the real control plane (the command's flags)."""

    nodes: int = 5
    # node names `<prefix>-000`...; another prefix per run lets several runs share one plane
    prefix: str = "node"

    def zones_of(self) -> dict[str, str]:
        return {
            name.replace("node-", f"{self.prefix}-", 1): zone
            for name, zone in layout(nodes=self.nodes, zones=self.zones).items()
        }

    def plan(self) -> ScenarioPlan:
        """The scenario's plan at the concurrency it needs (a usage error if another was asked)."""
        zones = self.zones_of()
        plan = plan_scenario(
            self.scenario,
            zones=zones,
            concurrency=self.concurrency,
            seed=self.seed,
            lock_ttl=LOCK_TTL,
            per_node=self.minimum.total,
            boot_seconds=self.boot_seconds,
        )
        if plan.concurrency is not None and plan.concurrency != self.concurrency:
            if self.concurrency != 1:
                raise ScenarioError(
                    f"{self.scenario} runs at concurrency {plan.concurrency} (got {self.concurrency})"
                )
            return plan_scenario(
                self.scenario,
                zones=zones,
                concurrency=plan.concurrency,
                seed=self.seed,
                lock_ttl=LOCK_TTL,
                per_node=self.minimum.total,
                boot_seconds=self.boot_seconds,
            )
        return plan


def check_runnable(config: RealConfig) -> ScenarioPlan:
    """The plan, or ScenarioError naming the emulator-only fault the scenario needs (exit 2)."""
    plan = config.plan()
    why = real_unsupported(plan)
    if why is not None:
        raise ScenarioError(
            f"scenario {config.scenario} cannot run with --control-plane real: {why}. "
            f"Run it on the emulator (drop --control-plane real); on a real control plane: "
            f"{', '.join(real_scenarios())}"
        )
    return plan


def real_scenarios() -> list[str]:
    """The scenarios that run on a real control plane (with the default sizes)."""
    out = []
    for name in SCENARIOS:
        try:
            if real_unsupported(RealConfig(scenario=name).plan()) is None:
                out.append(name)
        except ScenarioError:
            continue
    return out


async def simulate_real(
    config: RealConfig,
    *,
    workdir: Path,
    command: str,
    deadline_seconds: float | None = None,
    binaries: Binaries | None = None,
    plane: ControlPlane | None = None,
) -> RealOutcome:
    """One rollout on a real control plane (see the module rule): on `plane` when given (runs
    with other prefixes may share it), else on one started and stopped here."""
    plan = check_runnable(config)
    try:
        base = find_module_dir().parent / "deploy" / "kustomize" / "base"
        found = binaries if binaries is not None or plane is not None else locate_binaries()
    except BuildError as exc:
        raise ControlPlaneMissing(
            f"--control-plane real needs the control-plane binaries: {exc}. Build them with "
            f"`{BUILD_COMMAND}` (or `python -m rebootd.controlplane build`) from a checkout of rebootd"
        ) from exc
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if plane is None:
            assert found is not None
            plane = await asyncio.to_thread(
                stack.enter_context, running_control_plane(binaries=found, work_dir=workdir / "controlplane")
            )
        run = RealRun(plane=plane, config=config, plan=plan, base=base, workdir=workdir, command=command)
        return await run.run(deadline_seconds=deadline_seconds, started=started)
    raise AssertionError("unreachable")


class RealRun:
    """One scenario's rollout on a real control plane: set up, start, supervise, judge."""

    def __init__(
        self,
        *,
        plane: ControlPlane,
        config: RealConfig,
        plan: ScenarioPlan,
        base: Path,
        workdir: Path,
        command: str,
    ) -> None:
        self.plane = plane
        self.config = config
        self.plan = plan
        self.base = base
        self.workdir = workdir
        self.command = command
        self.zones = config.zones_of()
        self.concurrency = plan.concurrency or config.concurrency
        self.namespace = (
            f"{WORKLOAD_NAMESPACE}-{config.prefix}" if config.prefix != "node" else WORKLOAD_NAMESPACE
        )
        self.notes: list[Note] = []
        self.events: list[str] = []
        self.follower = LockFollower()
        self.targets: dict[int, str] = {}
        self.broken_pods: dict[str, str] = {}
        self.sims: dict[str, SimNode] = {}
        self._done: set[int] = set()
        self._first_seen: dict[int, float] = {}
        self._origin = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.env: dict[str, str] = {}
        self.window_start: datetime | None = None

    def elapsed(self) -> float:
        return time.time() - self._origin

    def rebooted(self) -> Counter[str]:
        return Counter(n.node for n in self.notes if n.event == "reboot_started")

    async def run(self, *, deadline_seconds: float | None, started: float) -> RealOutcome:
        plane, config = self.plane, self.config
        for doc in rbac_documents(self.base):
            await asyncio.to_thread(create, plane, doc)
        await asyncio.to_thread(clear_lock, plane)
        since = datetime.now(UTC)  # the audit log from here on is this run's
        token = await asyncio.to_thread(plane.service_account_token, namespace=NAMESPACE, name="rebootd")
        daemon_kubeconfig = plane.write_kubeconfig(self.workdir / "daemon.kubeconfig", user=token)
        timing = KubeletTiming(
            boot_seconds=config.boot_seconds,
            pod_start=config.recovery_seconds,
            grace_scale=config.drain_seconds / GRACE_SECONDS,
            status_delay=self.plan.kubelet_post_delay,
        )
        self.machines = ApiMachines(kubeconfig=plane.kubeconfig, timing=timing, notes=self.notes)
        self.admin = Api(endpoint=Endpoint.from_kubeconfig(plane.kubeconfig), user_agent="rebootd-sim-admin")
        status = "timed_out"
        try:
            for name, zone in self.zones.items():
                await self.machines.add(name, labels={ZONE_LABEL: zone, RUN_LABEL: config.prefix})
                if name in self.plan.admin_cordoned:
                    await self._patch(f"/api/v1/nodes/{name}", {"spec": {"unschedulable": True}})
            docs = workload_documents(
                plan=self.plan,
                namespace=self.namespace,
                run=config.prefix,
                replicas=max(2, len(self.zones)),
                concurrency=self.concurrency,
            )
            for doc in docs:
                await asyncio.to_thread(create, plane, doc)
            await _wait(lambda: self._workloads_ready(docs), within=90.0, what="the workloads' pods Ready")
            self.env = daemon_env(
                concurrency=self.concurrency,
                zone_concurrency=config.zone_concurrency,
                drain=config.drain_seconds,
                boot=config.boot_seconds,
                release=config.release_delay,
            )
            self.env.update(self.plan.env)
            rounds = -(-len(self.plan.needed) // self.concurrency)
            if self.plan.clock_start is not None:  # the window opens a few seconds from now
                self.window_start = datetime.now(UTC)
                self.env.update(
                    window_env(start=self.window_start, rounds=rounds, per_node=config.minimum.total)
                )
            self._origin = time.time()
            for name in self.zones:
                self.sims[name] = SimNode(
                    emulator=None,
                    name=name,
                    workdir=self.workdir / "nodes" / name,
                    env=self.env,
                    host=self.machines,
                    kubeconfig=daemon_kubeconfig,
                    seams=DaemonSeams(connect=functools.partial(Kube.connect, user_agent=f"rebootd@{name}")),
                    time_scale=0.1,
                )
            for name in self.plan.needed:
                if name not in self.plan.deferred:
                    self._require_reboot(name)
            for sim in self.sims.values():
                await sim.start()
            deadline = (
                deadline_seconds
                if deadline_seconds is not None
                else 120.0
                + 10.0 * config.minimum.total * rounds
                + (60.0 if self.plan.name == "window" else 0.0)
            )
            status = await self._supervise(within=deadline)
        finally:
            for task in self._tasks:
                task.cancel()
            for sim in self.sims.values():
                await sim.stop()
            await self.machines.close()
            await self.admin.close()
        ended = time.time()
        for name, sim in self.sims.items():
            if sim.frozen:
                self.events.append(f"(the daemon of {name} was frozen {sim.frozen} time(s))")
        window = load_settings(environ=self.env).window if self.window_start is not None else None
        report, forbidden, history = await judge_history(
            plane,
            zones=self.zones,
            notes=self.notes,
            concurrency=self.concurrency,
            zone_concurrency=config.zone_concurrency,
            minimum=config.minimum,
            origin=self._origin,
            ended=ended,
            timed_out=status == "timed_out",
            admin_cordoned=self.plan.admin_cordoned,
            needed=self.plan.needed,
            window=window,
            since=since,
        )
        checks = scenario_checks(
            plan=self.plan,
            targets=self.targets,
            report=report,
            status=status,
            history=history,
            broken_pods=self.broken_pods,
            halted_at=self.follower.halted_at,
            reboot_requests={name: sim.reboot_requests for name, sim in self.sims.items()},
            window=(self.window_start, window)
            if self.window_start is not None and window is not None
            else None,
        )
        version = plane.version
        zone_limit = f", zone concurrency {config.zone_concurrency}" if config.zone_concurrency else ""
        title = (
            f"rebootd simulate: {len(self.zones)} nodes in {len(set(self.zones.values()))} zones, "
            f"concurrency {self.concurrency}{zone_limit}, scenario {self.plan.name}, "
            f"on a real control plane: kube-apiserver {version.get('gitVersion')} "
            "(etcd, kube-controller-manager, kube-scheduler; API-only simulated kubelets)\n"
            f"Scenario: {self.plan.summary}; invariants from the kube-apiserver's audit log"
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
            command=self.command,
            scenario=self.plan.name,
            events=self.events,
            forbidden=forbidden,
            checks=checks,
            halt_justified=justified_halt(self.plan, self.targets),
            history=history,
        )

    # -- set-up and supervision ------------------------------------------------------------------
    async def _patch(self, path: str, body: Mapping[str, Any]) -> None:
        await self.admin.call("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def _workloads_ready(self, docs: list[dict[str, Any]]) -> bool:
        for doc in docs:
            if doc["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
                continue
            obj = await self.admin.call("GET", f"{_collection(doc)}/{doc['metadata']['name']}")
            status = obj.get("status") or {}
            if doc["kind"] == "DaemonSet":
                want = int(status.get("desiredNumberScheduled") or 0)
                if want < len(self.zones) or int(status.get("numberReady") or 0) < want:
                    return False
            elif int(status.get("readyReplicas") or 0) < int(doc["spec"]["replicas"]):
                return False
        return True

    def _require_reboot(self, name: str) -> None:
        self.notes.append(Note(time=datetime.now(UTC), event="reboot_needed", client="simulator", node=name))
        self.sims[name].require_reboot()

    async def _look(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LOCK_NAME}"
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            self.follower.observe(await self.admin.call("GET", path), now=time.time())

    def _complete(self, rebooted: Mapping[str, int]) -> bool:
        if any(rebooted.get(n, 0) == 0 for n in self.plan.needed):
            return False
        if self.follower.state.holders:
            return False
        return all(m.up for m in self.machines.machines.values())

    async def _supervise(self, *, within: float) -> str:
        """Until every node that needed it rebooted and the Lease holds no slot (completed), or a
        halt was seen and the run watched a lock TTL more (halted), or the deadline (timed_out)."""
        deadline = time.monotonic() + within
        halt_seen: float | None = None
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            await self._look()
            rebooted = self.rebooted()
            await self._fire(rebooted)
            if self.follower.halted is not None:
                halt_seen = halt_seen if halt_seen is not None else time.monotonic()
                if time.monotonic() - halt_seen >= LOCK_TTL + 1.0:
                    return "halted"
            elif self._complete(rebooted):
                return "completed"
        return "timed_out"

    async def _fire(self, rebooted: Mapping[str, int]) -> None:
        for index, action in enumerate(self.plan.actions):
            if index in self._done:
                continue
            node = due(
                action,
                follower=self.follower,
                rebooted=rebooted,
                needed=self.plan.needed,
                elapsed=self.elapsed(),
                first_seen=self._first_seen,
            )
            if node is None:
                continue
            self._done.add(index)
            self.targets[index] = node
            self.events.append(f"[{self.elapsed():7.2f}s] {action.describe(node or None)}")
            await self._apply(action, node)

    async def _apply(self, action: Action, node: str) -> None:
        if action.kind == "break_pod":
            pods = await self.admin.call(
                "GET", f"/api/v1/namespaces/{self.namespace}/pods?fieldSelector=spec.nodeName%3D{node}"
            )
            for pod in pods.get("items") or []:
                name = str(pod["metadata"]["name"])
                if name.startswith("agent-"):
                    self.machines.break_after_reboot(node, namespace=self.namespace, pod_prefix=name)
                    self.broken_pods[node] = name
        elif action.kind == "fail_boot":
            self.machines.machines[node].never_boots = True
        elif action.kind == "fail_reboot":
            self.sims[node].reboot_fails = True
        elif action.kind == "require_reboot":
            for name in action.nodes or (node,):
                self._require_reboot(name)
        elif action.kind == "scale":
            path = f"/apis/apps/v1/namespaces/{self.namespace}/statefulsets/{action.workload}"
            await self._patch(path, {"spec": {"replicas": action.replicas}})
        elif action.kind == "freeze":
            if node:
                self.sims[node].freeze(seconds=action.seconds, verb=action.verb, nth=action.nth)
            else:  # the first daemon to get there
                arm = FreezeArm(seconds=action.seconds, verb=action.verb, nth=action.nth)
                for sim in self.sims.values():
                    sim.freeze(seconds=action.seconds, verb=action.verb, nth=action.nth, arm=arm)
        elif action.kind == "duplicate_daemon":
            uid = await self.sims[node].start_duplicate()
            self.events.append(f"[{self.elapsed():7.2f}s]   second daemon for {node} started (pod uid {uid})")
        else:  # real_unsupported() keeps every other kind off the real plane
            raise ScenarioError(f"action {action.kind} does not run on a real control plane")


def clear_lock(plane: ControlPlane) -> None:
    """No lock Lease from an earlier run on this plane (its finalizer removed, then deleted)."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LOCK_NAME}"
    try:
        lease = plane.request("GET", path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return
        raise
    lease["metadata"]["finalizers"] = []
    with contextlib.suppress(urllib.error.HTTPError):
        plane.request("PUT", path, body=lease)
    with contextlib.suppress(urllib.error.HTTPError):
        plane.request("DELETE", path)


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


async def judge_history(
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
    admin_cordoned: Sequence[str] = (),
    needed: Sequence[str] | None = None,
    window: Window | None = None,
    since: datetime | None = None,
) -> tuple[Report, list[str], list[HistoryRecord]]:
    """The report of a run from the kube-apiserver's audit log and the machines' notes, the
    daemons' requests refused with 403, and the history it read; only the audit events from
    `since` on (a plane shared by runs one after another), admin cordons, the nodes that needed
    a reboot (default: all) and the maintenance window of the run."""
    nodes = (await asyncio.to_thread(plane.request, "GET", "/api/v1/nodes"))["items"]
    final_nodes = [n for n in nodes if n["metadata"]["name"] in zones]
    await asyncio.sleep(0.5)  # the audit log is written as responses go out
    events = await asyncio.to_thread(plane.audit_events)
    if since is not None:
        events = [
            e
            for e in events
            if parse_time(str(e.get("stageTimestamp") or e.get("requestReceivedTimestamp"))) >= since
        ]
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
            needed=list(zones) if needed is None else list(needed),
            admin_cordoned=tuple(admin_cordoned),
            concurrency=concurrency,
            zone_concurrency=zone_concurrency,
            window=window,
            minimum=minimum,
            request_counts=counts,
            origin=origin,
            ended=ended,
            lock_namespace=NAMESPACE,
            lock_name=LOCK_NAME,
            timed_out=timed_out,
        )
    )
    return report, refusals(events, user=SERVICE_ACCOUNT), history


async def _wait(probe: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {within:g} s")
        await asyncio.sleep(POLL)
