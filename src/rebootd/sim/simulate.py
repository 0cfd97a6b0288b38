"""`rebootd simulate`: a whole cluster's rollout in one process, judged from the API's history.

Rule: the simulation sets up the emulator (nodes in zones, workloads with PDBs, the scenario's
extras), gives every node its own real daemon (in-process `SimNode`s, or `rebootd run`
subprocesses with `processes=True`), asks every node that needs it to reboot, carries out the
scenario's actions when their triggers fire, and waits, bounded by a hard timeout, until the
rollout is complete or halted. Everything it decides on (triggers, the end, the report) is read
from the emulator, never from the daemons. Durations are scaled down: a drain takes
`drain_seconds`, a boot `boot_seconds`, restarted pods are Ready `recovery_seconds` after boot.

Exit codes of the command (`exit_code`): 0 the rollout completed and every invariant held;
1 an invariant failed, the rollout timed out, or the scenario's expected outcome did not happen;
2 a usage error; 3 the rollout halted (with its reason in the report) and every invariant held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from rebootd import admin
from rebootd.clock import Clock, OffsetClock, SystemClock
from rebootd.emulator.emulator import Emulator, EmulatorTiming
from rebootd.emulator.errors import ApiError
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.emulator.registry import DeleteOptions
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.emulator.scripted import NodeWriteRule, ScriptedWrites
from rebootd.emulator.store import StoreEvent
from rebootd.kube import Kube, KubeError, RetryPolicy
from rebootd.lock import LeaseStore, mark_of, state_of
from rebootd.lockstate import StateFormatError
from rebootd.logs import get_logger
from rebootd.node import is_ready
from rebootd.schedule import Window
from rebootd.settings import load_settings
from rebootd.sim.expect import HALT_CAUSES, justified_halt, scenario_checks
from rebootd.sim.follow import LockFollower, due
from rebootd.sim.harness import DaemonSeams, FreezeArm, SimNode, node_identity, node_token, tokens_for
from rebootd.sim.invariants import is_rebootd
from rebootd.sim.live import NoProgress, Progress, snapshot_of
from rebootd.sim.processes import HostAgent, ProcessNode
from rebootd.sim.report import Report, RunFacts, build_report, render_text, to_json
from rebootd.sim.scenarios import (
    OPERATOR_ACTIONS,
    Action,
    ActionKind,
    ScenarioError,
    ScenarioPlan,
    plan_scenario,
)
from rebootd.sim.shape import RolloutShape
from rebootd.sim.worker import WorkerNode, WorkerPool, clock_spec

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HALTED = 3

LOCK_NAMESPACE = "kube-system"
LOCK_NAME = "rebootd"
ADMIN = "admin"  # the simulated harness's client identity (exempt from faults)
SIMULATOR = "simulator"  # who records the nodes' reboot needs (the sentinel files appearing)
OPERATOR = "operator"  # the operator running rebootd's admin commands (its own token; no faults)
OPERATOR_TOKEN = "token-operator"  # noqa: S105 - the emulator's simulated bearer token, not a secret
ACTION_WITHIN = 10.0  # the longest an operator action (or a held write waiting on one) may take
GRACE_SECONDS = 30  # the workloads' terminationGracePeriodSeconds, scaled to drain_seconds
AUTO_WORKERS_FROM = 16  # nodes from which the daemons run in worker processes by default
TICK = 0.1  # the longest the supervisor waits between looks when nothing changes

FaultPreset = Literal["none", "light", "heavy"]
# stuck: a node that never booted still holds its slot and no node was left waiting to notice it,
# so no halt was recorded (nothing else needed a reboot); the rollout needs an operator anyway.
Status = Literal["completed", "halted", "stuck", "timed_out"]


@dataclass(frozen=True, kw_only=True)
class SimulationConfig(RolloutShape):
    """What to simulate on the emulator (the command's flags)."""

    faults: FaultPreset = "none"
    processes: bool = False
    timeout: float | None = None  # None: derived from the lower bound
    time_scale: float = 0.1  # the daemons' internal intervals (hand-off grace 2 s, drain poll 1 s)
    spread_seconds: float = 0.0  # the reboot-required files appear over this long (0: all at once)
    workers: int | None = None  # worker processes for in-process daemons; 0 = this process; None = auto

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise ValueError("workers must be >= 0")
        super().__post_init__()

    # -- derived settings ------------------------------------------------------------------------
    @property
    def lock_ttl(self) -> float:
        return 5.0 if self.processes else 3.5

    @property
    def worker_count(self) -> int:
        """Worker processes for the daemons: none with --processes or few nodes; else one per CPU
        (at most 4), so the emulator's loop is not also every daemon's loop."""
        if self.processes:
            return 0
        if self.workers is not None:
            return self.workers
        if self.nodes < AUTO_WORKERS_FROM:
            return 0
        return max(1, min(4, os.cpu_count() or 1))

    def daemon_env(self) -> dict[str, str]:
        """Every daemon's settings, as `REBOOTD_*` environment variables."""
        slow = 5.0 if self.processes else 0.0  # a process start costs about a second on 2 cores
        return {
            "REBOOTD_PERIOD": "1s",
            "REBOOTD_LOCK_NAMESPACE": LOCK_NAMESPACE,
            "REBOOTD_LOCK_NAME": LOCK_NAME,
            "REBOOTD_LOCK_TTL": f"{self.lock_ttl:g}s",
            "REBOOTD_LOCK_RENEW_INTERVAL": "1s",
            "REBOOTD_LOCK_RELEASE_DELAY": f"{self.release_delay:g}s",
            "REBOOTD_CONCURRENCY": str(self.concurrency),
            "REBOOTD_ZONE_CONCURRENCY": str(self.zone_concurrency),
            "REBOOTD_BOOT_TIMEOUT": f"{self.boot_seconds * 3 + 2 + slow:g}s",
            "REBOOTD_RECOVERY_TIMEOUT": f"{max(2.0, self.recovery_seconds * 8) + slow:g}s",
            "REBOOTD_DRAIN_TIMEOUT": f"{self.drain_seconds * 4 + 2:g}s",
            "REBOOTD_MIN_REBOOT_INTERVAL": "0s",
        }

    def timing(self) -> EmulatorTiming:
        return EmulatorTiming(
            grace_scale=self.drain_seconds / GRACE_SECONDS,
            pod_ready_delay=self.recovery_seconds,
            boot_seconds=self.boot_seconds,
            bookmark_interval=1.0,
            partition_hang=0.5,
        )

    def command(self) -> str:
        """The command line that runs this simulation again."""
        defaults = SimulationConfig()
        argv = ["rebootd", "simulate"]
        flags = (
            ("nodes", "--nodes"),
            ("zones", "--zones"),
            ("concurrency", "--concurrency"),
            ("zone_concurrency", "--zone-concurrency"),
            ("drain_seconds", "--drain-seconds"),
            ("boot_seconds", "--boot-seconds"),
            ("recovery_seconds", "--recovery-seconds"),
            ("release_delay", "--release-delay"),
            ("spread_seconds", "--spread"),
            ("faults", "--faults"),
            ("seed", "--seed"),
            ("scenario", "--scenario"),
            ("timeout", "--timeout"),
        )
        for attr, flag in flags:
            value = getattr(self, attr)
            if value != getattr(defaults, attr) or attr == "seed":
                argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        if self.processes:
            argv.append("--processes")
        return shlex.join(argv)


def layout(config: SimulationConfig) -> dict[str, str]:
    """node -> zone: node-000, node-001, ... round-robin over zone-a, zone-b, ..."""

    def zone(i: int) -> str:
        return f"zone-{chr(ord('a') + i)}" if config.zones <= 26 else f"zone-{i:02d}"

    width = max(3, len(str(config.nodes - 1)))
    return {f"node-{i:0{width}d}": zone(i % config.zones) for i in range(config.nodes)}


class ClusterSetup(Protocol):
    """A cluster other than the generated layout (`rebootd.sim.whatif`: a snapshot of a real
    one): the nodes that run a daemon (node -> zone), the plan, the clock, and how to fill the
    emulator before the daemons start."""

    def zones(self) -> dict[str, str]: ...

    def plan(self, config: SimulationConfig) -> ScenarioPlan: ...

    def clock(self) -> Clock: ...

    def populate(self, emulator: Emulator) -> None: ...

    def deadline(self) -> float | None:
        """When the run ends (monotonic seconds), if the cluster decides it (a window closing)."""
        ...


class NodeRunner(Protocol):
    """What the simulation needs from a node's daemon, in-process or a subprocess."""

    name: str

    def require_reboot(self) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> int | None: ...

    def crash(self, *, restart_after: float = 0.0) -> bool: ...

    async def start_duplicate(self) -> str: ...


@dataclass
class Outcome:
    """How the run ended, the report, and what the scenario's actions did."""

    config: SimulationConfig
    plan: ScenarioPlan
    report: Report
    status: Status
    checks: list[tuple[bool, str]] = field(default_factory=list)  # scenario expectations
    halt_justified: str | None = None  # what the scenario did that justifies a halt, if anything
    events: list[str] = field(default_factory=list)  # actions carried out, with their times
    wall_seconds: float = 0.0
    faults_injected: dict[str, int] = field(default_factory=dict)  # per fault kind, seeded ones
    origin: float = 0.0  # the emulator clock's monotonic time the daemons started (timelines count from it)

    @property
    def exit_code(self) -> int:
        if not self.report.ok or not all(ok for ok, _ in self.checks) or self.status == "timed_out":
            return EXIT_FAILED
        return EXIT_HALTED if self.status in ("halted", "stuck") else EXIT_OK

    def summary_line(self) -> str:
        code = self.exit_code
        if code == EXIT_FAILED:
            failed = [n for n, c in self.report.invariants.items() if not c.ok]
            failed += [text for ok, text in self.checks if not ok]
            if self.status == "timed_out":
                failed.append("timed out")
            return f"Result: FAILED ({'; '.join(failed)}); exit {code}. Reproduce: {self.config.command()}"
        if code == EXIT_HALTED and self.status == "stuck":
            return (
                f"Result: STUCK ({', '.join(sorted(self.report.stuck_holders))} never came back and no node "
                f"was left waiting to notice it, so no halt was recorded); every invariant held; exit {code}"
            )
        if code == EXIT_HALTED:
            return f"Result: HALTED ({self.report.halted_reason}); every invariant held; exit {code}"
        return f"Result: completed; every invariant held; exit {code}"

    def title(self) -> str:
        c = self.config
        zone_limit = f", zone concurrency {c.zone_concurrency}" if c.zone_concurrency else ""
        workers = c.worker_count
        mode = (
            "rebootd run processes"
            if c.processes
            else f"daemons in {workers} worker processes"
            if workers
            else "in-process daemons"
        )
        return (
            f"rebootd simulate: {c.nodes} nodes in {c.zones} zones, concurrency {c.concurrency}{zone_limit}, "
            f"scenario {c.scenario}, faults {c.faults}, seed {c.seed} ({mode})\n"
            f"Scenario: {self.plan.summary}"
        )

    def render(self) -> str:
        text = render_text(self.report, title=self.title(), outcome=self.summary_line())
        extra = []
        if self.events:
            extra.append("Scenario actions")
            extra += [f"  {e}" for e in self.events]
        if self.checks:
            extra.append("Scenario expectations")
            extra += [f"  {'PASS' if ok else 'FAIL'}  {text}" for ok, text in self.checks]
        if extra:
            head, _, tail = text.rpartition("\n\n")
            text = "\n".join([head, "", *extra, "", tail])
        return text

    def to_json(self) -> dict[str, Any]:
        data = to_json(
            self.report,
            extra={"scenario": self.config.scenario, "seed": self.config.seed, "status": self.status},
        )
        data["scenario_expectations"] = [{"ok": ok, "detail": text} for ok, text in self.checks]
        data["scenario_actions"] = list(self.events)
        data["halt_justified"] = self.halt_justified
        data["faults_injected"] = dict(self.faults_injected)
        data["exit_code"] = self.exit_code
        data["wall_seconds"] = round(self.wall_seconds, 3)
        data["command"] = self.config.command()
        return data


class LeaseTracker(LockFollower):
    """Follows the lock Lease through the store's change listener (every write), for triggers
    and the live view; `changed` is set on every store change."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self.emulator = emulator
        self.changed = asyncio.Event()

    def __call__(self, event: StoreEvent) -> None:
        self.changed.set()
        if event.storage != "leases.coordination.k8s.io":
            return
        meta = event.obj["metadata"]
        if meta.get("namespace") != LOCK_NAMESPACE or meta.get("name") != LOCK_NAME:
            return
        if event.type == "DELETED":
            return
        self.observe(event.obj, now=self.emulator.clock.monotonic())


class Simulation:
    """One run: set up, start, supervise, stop, report."""

    def __init__(
        self,
        config: SimulationConfig,
        *,
        workdir: Path,
        progress: Progress | None = None,
        log_file: Path | None = None,
        log_level: str = "error",
        seams: DaemonSeams | None = None,
        setup: ClusterSetup | None = None,
    ) -> None:
        self.setup = setup
        if seams is not None and (config.processes or config.worker_count):
            raise ValueError("daemon seams need in-process daemons (no --processes, --workers 0)")
        self.seams = seams if seams is not None else DaemonSeams()
        self.config = config
        self.workdir = workdir
        self.log_file = log_file
        self.log_level = log_level
        self.progress: Progress = progress if progress is not None else NoProgress()
        self.zones = setup.zones() if setup is not None else layout(config)
        self.plan = self._plan(config)
        wanted = self.plan.concurrency
        if wanted is not None and wanted != config.concurrency:
            if config.concurrency != SimulationConfig().concurrency:
                raise ScenarioError(
                    f"{config.scenario} runs at concurrency {wanted} (got {config.concurrency})"
                )
            config = replace(config, concurrency=wanted)
            self.config = config
            self.plan = self._plan(config)
        self.clock: Clock = (
            setup.clock()
            if setup is not None
            else OffsetClock(start_at=self.plan.clock_start, speed=self.plan.clock_speed)
            if self.plan.clock_start is not None
            else SystemClock()
        )
        faults = self.plan.faults if self.plan.faults is not None else FaultConfig.preset(config.faults)
        self.faults = FaultInjector(seed=config.seed, config=faults)
        self.faults.exempt(client=ADMIN)
        self.faults.exempt(client=OPERATOR)
        tokens = {
            **tokens_for(self.zones),
            "token-admin": (ADMIN, ("system:masters",)),
            OPERATOR_TOKEN: (OPERATOR, ("system:masters",)),
        }
        timing = replace(
            config.timing(),
            kubelet_post_delay=self.plan.kubelet_post_delay,
            node_monitor_grace=self.plan.node_monitor_grace,
        )
        self.emulator = Emulator(
            seed=config.seed, timing=timing, faults=self.faults, tokens=tokens, clock=self.clock
        )
        self.scripted: ScriptedWrites | None = None
        if self.plan.scripts:
            self.scripted = ScriptedWrites(
                is_daemon=is_rebootd,
                rules=[
                    NodeWriteRule(
                        what=script.what,
                        nth=script.nth,
                        lose=script.lose,
                        hold=self._hold_for(script.hold_for) if script.hold_for is not None else None,
                        then=self._then(script.then) if script.then is not None else None,
                    )
                    for script in self.plan.scripts
                ],
                note=lambda text: self.events.append(f"[{self.elapsed():7.2f}s] {text}"),
            )
            self.emulator.api.write_hook = self.scripted
        self._operator: Kube | None = None
        self._operator_lock: LeaseStore | None = None
        # One operator at a terminal: their commands run one after another, in the plan's order
        # (a pause and a resume drawn for the same instant must not race each other).
        self._operator_turn = asyncio.Lock()
        self.env = {**config.daemon_env(), **self.plan.env}
        self.nodes: dict[str, NodeRunner] = {}
        self.agent: HostAgent | None = None
        self.pool: WorkerPool | None = None
        self._history_read = 0
        self._reboots_seen: Counter[str] = Counter()
        self._agent_reboots: Counter[str] = Counter()
        self.tracker = LeaseTracker(self.emulator)
        self.events: list[str] = []
        self.targets: dict[int, str] = {}  # action index -> node it hit
        self.broken_pods: dict[str, str] = {}  # node -> pod made to crash-loop
        self._done_actions: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failing_reboots: set[str] = set()
        self._pending_freeze: Action | None = None  # a targetless freeze waiting for a draining node
        self._trigger_seen: dict[int, float] = {}  # delayed triggers: when their condition first held
        self._reboot_requests: Counter[str] = Counter()  # reboot commands run (worker/process modes)
        self._origin = 0.0
        self._log = get_logger(component="simulate")

    def _plan(self, config: SimulationConfig) -> ScenarioPlan:
        if self.setup is not None:
            return self.setup.plan(config)
        return plan_scenario(
            config.scenario,
            zones=self.zones,
            concurrency=config.concurrency,
            seed=config.seed,
            lock_ttl=config.lock_ttl,
            per_node=config.minimum.total,
            boot_seconds=config.boot_seconds,
        )

    # -- set-up ----------------------------------------------------------------------------------
    def _populate(self) -> None:
        emu, n = self.emulator, self.config.nodes
        if self.setup is not None:
            self.setup.populate(emu)
            return
        for name, zone in self.zones.items():
            emu.add_node(name=name, zone=zone, unschedulable=name in self.plan.admin_cordoned)
        # PDBs that allow the configured concurrency (a node may host two replicas of `web`):
        # the default rollout is paced by rebootd, not by budgets (see the pdb-blocked scenario).
        emu.add_workload(
            kind="Deployment",
            name="web",
            replicas=n,
            pdb_max_unavailable=2 * self.config.concurrency,
            termination_grace_seconds=GRACE_SECONDS,
        )
        emu.add_workload(
            kind="StatefulSet",
            name="db",
            replicas=min(3, n),
            pdb_max_unavailable=self.config.concurrency,
            termination_grace_seconds=GRACE_SECONDS,
        )
        emu.add_workload(kind="DaemonSet", name="agent", namespace="kube-system")
        for w in self.plan.workloads:
            emu.add_workload(
                kind=w.kind,
                name=w.name,
                replicas=w.replicas,
                nodes=list(w.nodes) or None,
                pdb_min_available=w.pdb_min_available,
                pdb_max_unavailable=w.pdb_max_unavailable,
                termination_grace_seconds=w.grace_seconds if w.grace_seconds is not None else GRACE_SECONDS,
            )

    def _node_clock(self, name: str) -> Clock:
        offset = self.plan.clock_offsets.get(name)
        if offset is None:
            return self.clock
        return OffsetClock(offset=timedelta(seconds=offset))

    async def _make_nodes(self) -> None:
        workers = self.config.worker_count
        if workers:
            self.agent = HostAgent(on_reboot=self._worker_reboot)
            await self.agent.start()
            self.pool = WorkerPool(count=workers, workdir=self.workdir)
            specs = []
            for name in self.zones:
                directory = self.workdir / name
                kubeconfig = self.emulator.write_kubeconfig(directory / "kubeconfig", token=node_token(name))
                specs.append(
                    {
                        "name": name,
                        "workdir": str(directory),
                        "kubeconfig": str(kubeconfig),
                        "env": self.env,
                        "clock": clock_spec(self._node_clock(name)),
                        "boot_id": self.emulator.machine_boot_id(name=name),
                    }
                )
            nodes = await self.pool.start(
                agent_url=self.agent.url,
                time_scale=self.config.time_scale,
                nodes=specs,
                log_file=self.log_file,
                log_level=self.log_level,
            )
            self.nodes.update(nodes)
            self.emulator.add_machine_listener(self._on_machine)
            return
        if self.config.processes:
            self.agent = HostAgent(on_reboot=self._process_reboot)
            await self.agent.start()
            for name in self.zones:
                self.nodes[name] = ProcessNode(
                    emulator=self.emulator,
                    name=name,
                    workdir=self.workdir / name,
                    env=self.env,
                    agent_url=self.agent.url,
                )
            return
        for name in self.zones:
            self.nodes[name] = SimNode(
                emulator=self.emulator,
                name=name,
                workdir=self.workdir / name,
                env=self.env,
                clock=self._node_clock(name),
                time_scale=self.config.time_scale,
                seams=self.seams,
            )

    def _worker_reboot(self, name: str) -> bool:
        if name not in self.zones:
            return False
        self._reboot_requests[name] += 1
        if name in self._failing_reboots:
            return False
        self._agent_reboots[name] += 1
        self.emulator.request_reboot(name=name, client=node_identity(name)[0])
        return True

    def _on_machine(self, name: str, up: bool) -> None:
        """Tell a worker when its node's machine goes down or is up again (with its new boot id)."""
        node = self.nodes.get(name)
        if isinstance(node, WorkerNode):
            node.node_changed(
                ready=up, boots=self._agent_reboots[name], boot_id=self.emulator.machine_boot_id(name=name)
            )

    def _process_reboot(self, name: str) -> bool:
        node = self.nodes.get(name)
        if not isinstance(node, ProcessNode):
            return False
        self._reboot_requests[name] += 1
        if name in self._failing_reboots:
            return False  # the reboot command fails (the host agent answers an error)
        node.reboot_requested()
        return True

    # -- the run ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock.monotonic() - self._origin

    def default_timeout(self) -> float:
        rounds = -(-len(self.plan.needed) // self.config.concurrency)
        base = 30.0 + 4.0 * rounds * self.config.minimum.total
        if self.config.processes:
            base += 5.0 * len(self.plan.needed)
        if self.plan.name in ("pdb-blocked", "chaos"):
            base += 30.0
        return base

    async def run(self) -> Outcome:
        started = self.clock.monotonic()
        await self.emulator.start()
        self.emulator.store.add_listener(self.tracker)
        status: Status = "timed_out"
        try:
            self._populate()
            await self._make_nodes()
            spread = self.config.spread_seconds
            if spread <= 0:
                for name in self.plan.needed:
                    if name not in self.plan.deferred:
                        self._require_reboot(name)
            self._origin = self.clock.monotonic()
            await asyncio.gather(*(node.start() for node in self.nodes.values()))
            if spread > 0:
                task = asyncio.create_task(self._spread_sentinels(spread), name="sim-sentinels")
                self._tasks.add(task)
            timeout = self.config.timeout if self.config.timeout is not None else self.default_timeout()
            ends = self.setup.deadline() if self.setup is not None else None
            status = await self._supervise(deadline=ends if ends is not None else self._origin + timeout)
        finally:
            ended = self.clock.monotonic()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*(node.stop() for node in self.nodes.values()), return_exceptions=True)
            self.progress.finish()
            if self.pool is not None:
                await self.pool.close()
            if self._operator is not None:
                await self._operator.close()
            if self.agent is not None:
                await self.agent.close()
            self.emulator.store.remove_listener(self.tracker)
            facts = self._facts(ended=ended, timed_out=status == "timed_out", stuck=status == "stuck")
            await self.emulator.close()
        report = build_report(facts)
        outcome = Outcome(
            config=self.config,
            plan=self.plan,
            report=report,
            status=status,
            events=self.events,
            wall_seconds=self.clock.monotonic() - started,
            faults_injected={kind: n for kind, n in self.faults.counts.items() if n},
            origin=self._origin,
        )
        outcome.halt_justified = self.justified_halt()
        outcome.checks = self._expectations(outcome)
        return outcome

    async def _spread_sentinels(self, spread: float) -> None:
        """The nodes' reboot-required files appear one after another over `spread` seconds."""
        needed = [n for n in self.plan.needed if n not in self.plan.deferred]
        for index, name in enumerate(needed):
            await asyncio.sleep(
                max(0.0, self._origin + index * spread / len(needed) - self.clock.monotonic())
            )
            self._require_reboot(name)

    def _require_reboot(self, name: str) -> None:
        """The node's reboot-required file appears: its need begins (recorded for the invariants)."""
        self.emulator.note(event="reboot_needed", client=SIMULATOR, name=name)
        self.nodes[name].require_reboot()

    def _facts(self, *, ended: float, timed_out: bool, stuck: bool = False) -> RunFacts:
        window: Window | None = None
        if self.plan.env.get("REBOOTD_START_TIME"):
            window = load_settings(environ=self.env).window
        return RunFacts(
            history=list(self.emulator.history),
            final_nodes=self.emulator.list_objects(kind="Node"),
            zones=self.zones,
            needed=self.plan.needed,
            admin_cordoned=self.plan.admin_cordoned,
            concurrency=self.config.concurrency,
            zone_concurrency=self.config.zone_concurrency,
            window=window,
            minimum=self.config.minimum,
            request_counts=dict(self.emulator.request_counts),
            origin=self._origin,
            ended=ended,
            lock_namespace=LOCK_NAMESPACE,
            lock_name=LOCK_NAME,
            timed_out=timed_out,
            stuck_holders=tuple(sorted(self.tracker.state.holders)) if stuck else (),
        )

    def _reboot_counts(self) -> Counter[str]:
        """Reboots started so far, read incrementally (the history only grows; it is read on
        every Lease change, and a scan of all of it each time costs the emulator's process more
        than the emulator itself at 50 nodes)."""
        history = self.emulator.history
        for record in history[self._history_read :]:
            if record.event == "reboot_started":
                self._reboots_seen[record.name] += 1
        self._history_read = len(history)
        return Counter(self._reboots_seen)

    def _down(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.emulator.store.iter_objects("nodes") if not is_ready(n)}

    def _complete(self, counts: Counter[str]) -> bool:
        if any(counts.get(n, 0) == 0 for n in self.plan.needed):
            return False
        lease = self.emulator.store.get("leases.coordination.k8s.io", LOCK_NAMESPACE, LOCK_NAME)
        if lease is None or state_of(lease).holders:
            return False
        return not self._down()

    def failed_boots(self) -> set[str]:
        return {
            self.targets[i]
            for i, a in enumerate(self.plan.actions)
            if a.kind == "fail_boot" and i in self.targets
        }

    def _stuck(self, counts: Counter[str]) -> bool:
        """Only nodes that never came back still hold slots, and nobody else needs a reboot."""
        failed = self.failed_boots()
        state = self.tracker.state
        if not failed or not state.holders or set(state.holders) - failed or state.waiters:
            return False
        return all(counts.get(n, 0) > 0 for n in self.plan.needed if n not in failed)

    async def _supervise(self, *, deadline: float) -> Status:
        halt_seen: float | None = None
        stuck_seen: float | None = None
        settle = self.config.lock_ttl + 1.0
        while True:
            counts = self._reboot_counts()
            self._fire_actions(counts)
            halted = self.tracker.halted
            self.progress.update(
                snapshot_of(
                    elapsed=self.elapsed(),
                    nodes=list(self.zones),
                    needed=self.plan.needed,
                    holder_phases={n: h.phase for n, h in self.tracker.state.holders.items()},
                    rebooted=counts,
                    down=self._down(),
                    halted=None if halted is None else f"{halted.get('node')}: {halted.get('reason')}",
                )
            )
            now = self.clock.monotonic()
            if halted is not None:
                # Keep watching a while: anything disrupted after the halt would show up.
                halt_seen = halt_seen if halt_seen is not None else now
                if now - halt_seen >= settle:
                    return "halted"
            elif self._complete(counts):
                return "completed"
            elif self._stuck(counts):
                stuck_seen = stuck_seen if stuck_seen is not None else now
                if now - stuck_seen >= settle:
                    return "stuck"
            else:
                stuck_seen = None
            if now >= deadline:
                return "timed_out"
            self.tracker.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tracker.changed.wait(), timeout=min(TICK, deadline - now))

    # -- scenario actions ------------------------------------------------------------------------
    def _fire_actions(self, counts: Counter[str]) -> None:
        self._fire_pending_freeze()
        for index, action in enumerate(self.plan.actions):
            if index in self._done_actions:
                continue
            node = self._due(action, counts)
            if node is None:
                continue
            self._done_actions.add(index)
            self.targets[index] = node
            self.events.append(f"[{self.elapsed():7.2f}s] {action.describe(node or None)}")
            self._log.info("rebootd.sim.action", action=action.kind, node=node)
            self._apply(action, node)

    def _due(self, action: Action, counts: Counter[str]) -> str | None:
        """The node the action hits ("" for none) when its trigger fired, else None."""
        return due(
            action,
            follower=self.tracker,
            rebooted=counts,
            needed=self.plan.needed,
            elapsed=self.elapsed(),
            first_seen=self._trigger_seen,
        )

    def _apply(self, action: Action, node: str) -> None:
        emu = self.emulator
        if action.kind == "break_pod":
            pods = [
                p["metadata"]["name"]
                for p in emu.store.pods_on_node(node)
                if p["metadata"]["namespace"] == "kube-system" and p["metadata"]["name"].startswith("agent-")
            ]
            for pod in pods:
                emu.break_after_reboot(namespace="kube-system", pod_prefix=pod)
                self.broken_pods[node] = pod
        elif action.kind == "fail_boot":
            emu.set_boot_failure(name=node)
        elif action.kind == "power_loss":
            self._power_loss(node, seconds=action.seconds)
        elif action.kind == "kill_daemon":
            runner = self.nodes.get(node)
            if runner is not None and not runner.crash(restart_after=action.seconds):
                self.events.append(f"[{self.elapsed():7.2f}s]   ({node}'s daemon was not running)")
        elif action.kind == "partition":
            self.faults.partition(client=f"rebootd@{node}", seconds=action.seconds)
        elif action.kind == "delete_lease":
            self.events.append(f"[{self.elapsed():7.2f}s]   ({self._delete_lease()})")
        elif action.kind == "fail_reboot":
            self._fail_reboots(node)
        elif action.kind == "require_reboot":
            for name in action.nodes or (node,):
                if name in self.nodes:
                    self._require_reboot(name)
        elif action.kind == "freeze":
            self._freeze(action, node)
        elif action.kind in ("duplicate_daemon", "delete_lease_twice", *OPERATOR_ACTIONS):
            self._spawn(self._act(action.kind, node), name=f"sim-{action.kind}")
        elif action.kind == "scale":
            info = BY_GROUP_RESOURCE[("apps", "statefulsets")]
            emu.registry.patch(
                info,
                "default",
                action.workload,
                content_type="application/merge-patch+json",
                raw=json.dumps({"spec": {"replicas": action.replicas}}).encode(),
                client=ADMIN,
            )

    def _spawn(self, coro: Any, *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note(self, text: str) -> None:
        self.events.append(f"[{self.elapsed():7.2f}s]   {text}")

    def _power_loss(self, node: str, *, seconds: float) -> None:
        """The machine dies unasked, its daemons with it (no graceful stop), and boots `seconds`
        later; its reboot-required file survives (the need is not met by a crash)."""
        self.emulator.power_loss(name=node, seconds=seconds)
        runner = self.nodes.get(node)
        if isinstance(runner, SimNode):
            runner.crash_soon()  # a new daemon once the machine is up again
        elif runner is not None and not runner.crash(restart_after=seconds):
            self._note(f"({node}'s daemon was not running)")

    def _fail_reboots(self, node: str) -> None:
        """From now on every reboot command of `node` fails (the host refuses to reboot)."""
        self._failing_reboots.add(node)
        runner = self.nodes.get(node)
        if isinstance(runner, SimNode):
            runner.reboot_fails = True
        # worker and process nodes: the host agent refuses their reboots (_worker_reboot, _process_reboot)

    def reboot_requests(self, node: str) -> int:
        """Reboot commands `node`'s daemons ran (in-process: counted by its SimNode; else by the
        host agent)."""
        runner = self.nodes.get(node)
        if isinstance(runner, SimNode):
            return runner.reboot_requests
        return self._reboot_requests[node]

    def _freeze(self, action: Action, node: str) -> None:
        if node:
            runner = self.nodes.get(node)
            if isinstance(runner, SimNode | WorkerNode):
                runner.freeze(seconds=action.seconds, verb=action.verb, nth=action.nth)
            elif isinstance(runner, ProcessNode) and not runner.freeze(seconds=action.seconds):
                self._note(f"({node}'s daemon was not running)")
            return
        # No node named: the first daemon to get there. Daemons in other processes cannot share
        # an arm: the first node seen draining is frozen then instead (SIGSTOP for a process).
        arm = FreezeArm(seconds=action.seconds, verb=action.verb, nth=action.nth)
        armed = [r for r in self.nodes.values() if isinstance(r, SimNode)]
        for runner in armed:
            runner.freeze(seconds=action.seconds, verb=action.verb, nth=action.nth, arm=arm)
        if not armed:
            self._pending_freeze = action
            self._note("(daemons in other processes: the first node seen draining is frozen at once)")

    def _fire_pending_freeze(self) -> None:
        action = self._pending_freeze
        if action is None:
            return
        for node, holder in self.tracker.state.holders.items():
            if holder.phase == "draining":
                self._pending_freeze = None
                self.events.append(f"[{self.elapsed():7.2f}s] freeze the daemon of {node} (draining) now")
                self._freeze(replace(action, verb="", nth=1), node)
                return

    async def operator_lock(self) -> LeaseStore:
        """The operator's own client (its token, not a daemon's) and lock, as `rebootd status`
        builds them."""
        if self._operator_lock is None:
            path = self.emulator.write_kubeconfig(
                self.workdir / "operator" / "kubeconfig", token=OPERATOR_TOKEN
            )
            self._operator = await Kube.connect(
                kubeconfig=path,
                user_agent="rebootd-operator",
                retry=RetryPolicy(attempts=4, base=0.05, cap=0.5),
            )
            self._operator_lock = admin.operator_lock(
                kube=self._operator, namespace=LOCK_NAMESPACE, name=LOCK_NAME, clock=self.clock
            )
        return self._operator_lock

    async def _act(self, kind: ActionKind, node: str) -> None:
        """An action that talks to the API or starts a daemon, bounded by ACTION_WITHIN; what
        happened goes into the report's scenario actions."""
        try:
            async with asyncio.timeout(ACTION_WITHIN), self._operator_turn:  # bounded wait for a turn
                self._note(await self._act_once(kind, node))
        except TimeoutError:
            self._note(f"({kind} {node} did not finish within {ACTION_WITHIN:g}s)")
        except admin.Refused as exc:
            self._note(f"(refused: {exc})")
        except KubeError as exc:
            self._note(f"({kind} {node} failed: {exc})")

    async def _act_once(self, kind: ActionKind, node: str) -> str:
        if kind == "duplicate_daemon":
            runner = self.nodes.get(node)
            if runner is None:
                return f"(no node {node})"
            return f"second daemon for {node} started (pod uid {await runner.start_duplicate()})"
        if kind == "delete_lease_twice":
            first = self._delete_lease(force=True)
            with contextlib.suppress(TimeoutError):
                await self.emulator.wait_until(self._lease_exists, within=ACTION_WITHIN / 2)
            return f"{first}; back, then {self._delete_lease(force=True)}"
        lock = await self.operator_lock()
        if kind in ("unlock", "unlock_force"):
            freed = await admin.unlock(lock=lock, node=node, force=kind == "unlock_force")
            return f"unlock {node}: {'freed its slot' if freed else 'it held no slot'}"
        if kind == "pause":
            await admin.pause(lock=lock, reason="simulated operator", clock=self.clock)
            return "paused"
        if kind == "resume":  # what `rebootd resume` does: the halt shown, else the pause shown
            shown = await lock.refresh()
            if shown.halted:
                await admin.resume(lock=lock, halt=shown.halted, pause=None)
                return "cleared the halt"
            if shown.paused:
                await admin.resume(lock=lock, halt=None, pause=shown.paused)
                return "lifted the pause"
            return "nothing to resume"
        raise ValueError(f"not an API action: {kind}")

    def _lease_exists(self) -> bool:
        return self.emulator.store.get("leases.coordination.k8s.io", LOCK_NAMESPACE, LOCK_NAME) is not None

    def _delete_lease(self, *, force: bool = False) -> str:
        """`kubectl delete lease` (the finalizer keeps a Lease in use until rebootd lets it go);
        `force` also strips the finalizers, as an operator or a GitOps prune that insists does."""
        info = BY_GROUP_RESOURCE[("coordination.k8s.io", "leases")]
        try:
            self.emulator.registry.delete(info, LOCK_NAMESPACE, LOCK_NAME, DeleteOptions(), client=ADMIN)
            if not force or not self._lease_exists():
                return (
                    "Lease deleted" if not self._lease_exists() else "Lease deleting (kept by its finalizer)"
                )
            self.emulator.registry.patch(
                info,
                LOCK_NAMESPACE,
                LOCK_NAME,
                content_type="application/merge-patch+json",
                raw=json.dumps({"metadata": {"finalizers": None}}).encode(),
                client=ADMIN,
            )
        except ApiError as exc:
            return f"delete failed: {exc}"
        return "Lease deleted (finalizer removed by force)"

    def _hold_for(self, kind: ActionKind) -> Callable[[str], Awaitable[None]]:
        """A held node write waits, bounded, while the action `kind` runs on its node. For
        `delete_lease`: the Lease is deleted and the write waits until it is back with another
        node holding a slot whose Node carries its mark."""

        async def hold(node: str) -> None:
            if kind != "delete_lease":
                await self._act(kind, node)
                return
            self._note(self._delete_lease(force=True))
            try:
                await self.emulator.wait_until(lambda: self._other_marked_holder(node), within=ACTION_WITHIN)
                self._note(f"the Lease is back; another node holds a marked slot; {node}'s write goes on")
            except TimeoutError:
                self._note(f"(no other marked holder within {ACTION_WITHIN:g}s; {node}'s write goes on)")

        return hold

    def _other_marked_holder(self, node: str) -> bool:
        lease = self.emulator.store.get("leases.coordination.k8s.io", LOCK_NAMESPACE, LOCK_NAME)
        if lease is None:
            return False
        try:
            holders = state_of(lease).holders
        except StateFormatError:
            return False
        for other in holders:
            obj = self.emulator.store.get("nodes", "", other)
            if other != node and obj is not None and mark_of(obj) is not None:
                return True
        return False

    def _then(self, kind: ActionKind) -> Callable[[str], None]:
        """An action run right after a scripted write is applied, before its answer leaves."""
        if kind != "delete_lease":
            raise ScenarioError(f"only delete_lease can run right after a write, not {kind}")

        def then(_node: str) -> None:
            self._note(self._delete_lease(force=True))  # the hazard: a deletion that goes through

        return then

    # -- expectations ----------------------------------------------------------------------------
    def justified_halt(self) -> str | None:
        """What the scenario did that justifies a halt, as carried out in this run (or None)."""
        return justified_halt(self.plan, self.targets)

    def _expectations(self, outcome: Outcome) -> list[tuple[bool, str]]:
        window = None
        if self.plan.clock_start is not None:
            window = (self.plan.clock_start, load_settings(environ=self.env).window)
        requests = {node: self.reboot_requests(node) for node in self.zones}
        return scenario_checks(
            plan=self.plan,
            targets=self.targets,
            report=outcome.report,
            status=outcome.status,
            history=self.emulator.history,
            broken_pods=self.broken_pods,
            halted_at=self.tracker.halted_at,
            reboot_requests=requests,
            window=window,
        )


def run_simulation(
    config: SimulationConfig,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
    log_file: Path | None = None,
    log_level: str = "error",
    setup: ClusterSetup | None = None,
) -> Outcome:
    """Run one simulation on a new event loop (the command's entry)."""
    return asyncio.run(
        simulate(
            config, progress=progress, workdir=workdir, log_file=log_file, log_level=log_level, setup=setup
        )
    )


async def simulate(
    config: SimulationConfig,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
    log_file: Path | None = None,
    log_level: str = "error",
    seams: DaemonSeams | None = None,
    setup: ClusterSetup | None = None,
) -> Outcome:
    """Run one simulation on the running loop; temporary files live under `workdir` (or a new
    temporary directory, removed afterwards). Worker processes log to `log_file` at `log_level`.
    `seams`: how the in-process daemons are built (tests' broken doubles; see `DaemonSeams`).
    `setup`: another cluster than the generated layout (see `ClusterSetup`)."""
    with _workdir(workdir) as path:
        sim = Simulation(
            config,
            workdir=path,
            progress=progress,
            log_file=log_file,
            log_level=log_level,
            seams=seams,
            setup=setup,
        )
        return await sim.run()


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="rebootd-simulate-") as tmp:
        yield Path(tmp)


def reproduce_hint(config: SimulationConfig) -> str:
    return f"reproduce with: {config.command()}"


__all__ = [
    "EXIT_FAILED",
    "EXIT_HALTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HALT_CAUSES",
    "ClusterSetup",
    "Outcome",
    "SimulationConfig",
    "layout",
    "reproduce_hint",
    "run_simulation",
    "simulate",
]
