"""What-if on your own cluster: replay a cluster snapshot's rollout night by night under its
maintenance window, and answer the operator's questions.

Rule: the replay is the simulator's own (`rebootd.sim.simulate`, real daemons, the emulator judged
by the invariants), run once per night of the window on a simulated clock `clock_speed` times as
fast as real time: each night starts from the snapshot again, minus the nodes rebooted on earlier
nights. Durations are simulated seconds (a pod takes its terminationGracePeriodSeconds to go, a
node `boot_seconds` to boot, a restarted pod `recovery_seconds` to be Ready) and are divided by
the speed for the daemons and the emulator. Which nodes can never be rebooted, and why, is a pure
reading of the snapshot (`never_rebooted`), confirmed by the replay; which concurrency would fit
is a pure estimate (`estimate_fit`) from the per-node cycle the replay measured.

The user's settings: the installed rebootd's literal `REBOOTD_*` values (from the snapshot),
overridden by `REBOOTD_*` in the environment, overridden by flags. Only the settings that shape a
rollout apply (`APPLIED`, durations among them scaled to the simulated clock); the rest (metrics,
notifications, Prometheus, reboot method) are listed as ignored.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rebootd.clock import Clock, OffsetClock
from rebootd.emulator.emulator import SETUP, Emulator
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.emulator.store import StoreEvent
from rebootd.kube import format_microtime
from rebootd.lock import LOCK_FINALIZER
from rebootd.lockstate import STATE_ANNOTATION, LockState, resolve_share
from rebootd.schedule import Window
from rebootd.selectors import SelectorError, label_selector_from_object, parse_label_selector
from rebootd.settings import Settings, load_settings
from rebootd.sim import snapshot as snap
from rebootd.sim.scenarios import ScenarioPlan
from rebootd.sim.simulate import (
    EXIT_FAILED,
    EXIT_HALTED,
    EXIT_OK,
    GRACE_SECONDS,
    LOCK_NAME,
    LOCK_NAMESPACE,
    Outcome,
    SimulationConfig,
    simulate,
)
from rebootd.sim.timeline_html import Bar, Chart, Row

ZONE_LABEL = "topology.kubernetes.io/zone"
LEAD = timedelta(minutes=2)  # each night's clock starts this long (simulated) before the window opens
SETTLE_REAL = 2.0
REPLAY_LOCK_TTL = 20.0  # real seconds
RESULT_WORDS = {EXIT_OK: "every node rebooted within the nights", EXIT_HALTED: "nodes left unrebooted"}
# Invariants about progress, not safety: a night ends with nodes still waiting by design.
PROGRESS_INVARIANTS = frozenset({"reboots"})  # real seconds after a window closes for holders to finish
CANDIDATES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
# Settings that shape a rollout, passed to the daemons as given.
APPLIED = (
    "start_time",
    "end_time",
    "reboot_days",
    "time_zone",
    "concurrency",
    "zone_concurrency",
    "zone_label",
    "max_unavailable_nodes",
    "max_unavailable_nodes_per_zone",
    "drain_grace_period",
    "drain_pod_selector",
    "pdb_preflight",
    "force_reboot",
    "blocking_pod_scope",
    "blocking_pod_selector",
)
# Durations (seconds on the user's clock) divided by the clock speed, given or not: the
# simulator's own timeouts (a few real seconds) would time a loaded replay's drains out.
SCALED = (
    "drain_timeout",
    "drain_delay",
    "reboot_delay",
    "lock_release_delay",
    "boot_timeout",
    "recovery_timeout",
)


@dataclass(frozen=True)
class WhatIfOptions:
    """What to replay and how (the command's flags)."""

    snapshot: snap.Snapshot
    name: str  # the snapshot's file name, for the report
    env: Mapping[str, str] = field(default_factory=dict)  # REBOOTD_* from the environment and --set
    concurrency: int | None = None  # --concurrency, when given
    zone_concurrency: int | None = None
    nights: int = 2
    start: datetime | None = None  # look for the first window from here (default: now)
    clock_speed: float = 60.0
    boot_seconds: float = 180.0  # simulated seconds
    recovery_seconds: float = 30.0
    seed: int = 0
    workers: int | None = None
    verify: bool = False  # replay again at the suggested concurrency

    def __post_init__(self) -> None:
        if self.nights < 1 or self.clock_speed <= 0 or self.boot_seconds <= 0 or self.recovery_seconds < 0:
            raise ValueError("nights >= 1, clock speed > 0, boot seconds > 0, recovery seconds >= 0")


# --- the settings -----------------------------------------------------------------------------------


def effective_env(options: WhatIfOptions) -> dict[str, str]:
    """The installed rebootd's REBOOTD_* values, overridden by the user's."""
    return {**options.snapshot.rebootd_env(), **dict(options.env)}


def user_settings(options: WhatIfOptions) -> Settings:
    flags: dict[str, Any] = {}
    if options.concurrency is not None:
        flags["concurrency"] = options.concurrency
    if options.zone_concurrency is not None:
        flags["zone_concurrency"] = options.zone_concurrency
    return load_settings(environ=effective_env(options), flags=flags)


def daemon_env(
    settings: Settings, *, given: Mapping[str, str], speed: float
) -> tuple[dict[str, str], list[str]]:
    """The daemons' REBOOTD_* for the replay (applied settings as dumped by the model, durations
    scaled) and the names of the given settings that do not apply."""
    dumped = settings.model_dump(mode="json")
    env: dict[str, str] = {}
    for name in APPLIED:
        value = dumped[name]
        if isinstance(value, list):
            value = (
                ";".join(str(v) for v in value) if name.endswith("selector") else ",".join(map(str, value))
            )
        if value is None:
            continue
        env[f"REBOOTD_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    for name in SCALED:
        env[f"REBOOTD_{name.upper()}"] = f"{float(getattr(settings, name)) / speed:g}s"
    # The replay's own lock timing (real seconds): hundreds of daemons on a loaded machine queue
    # their Lease writes; a TTL of the simulator's 3.5 s would make holders back out.
    env["REBOOTD_LOCK_TTL"] = f"{REPLAY_LOCK_TTL:g}s"
    env["REBOOTD_LOCK_RENEW_INTERVAL"] = f"{REPLAY_LOCK_TTL / 8:g}s"
    env.pop("REBOOTD_CONCURRENCY", None)  # the simulation's config carries them
    env.pop("REBOOTD_ZONE_CONCURRENCY", None)
    known = {f"REBOOTD_{n.upper()}" for n in (*APPLIED, *SCALED)}
    ignored = sorted(k for k in given if k.startswith("REBOOTD_") and k not in known)
    return env, ignored


# --- nights -----------------------------------------------------------------------------------------


def window_close(window: Window, opens: datetime) -> datetime:
    """The first instant after `opens` outside the window (at most a week on)."""
    step, t = timedelta(minutes=1), opens
    limit = opens + timedelta(days=7)
    while t < limit and window.contains(t):
        t += step
    if t >= limit:
        return limit
    t -= step
    while window.contains(t):
        t += timedelta(seconds=1)
    return t


def nights_of(window: Window, *, start: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The next `count` openings of the window from `start`: (opens, closes)."""
    out: list[tuple[datetime, datetime]] = []
    t = start
    for _ in range(count):
        opens = window.next_open(t)
        closes = window_close(window, opens)
        out.append((opens, closes))
        t = closes + timedelta(seconds=1)
    return out


def night_queue(
    *,
    waiting: Sequence[str],
    zones: Mapping[str, str],
    pinned: Mapping[str, str],
    concurrency: int,
    night_seconds: float,
    boot_seconds: float,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The nodes one night's replay gives a reboot-required sentinel, and those it holds back.

    No node can go round faster than it boots, so a night of `night_seconds` holds at most
    ceil(night / boot) rounds of `concurrency` nodes: a node past that many in line cannot be
    reached however the night goes. It is held back (it needs its reboot on a later night), so
    the replay runs only the waiters that can matter instead of hundreds whose every periodic
    check, at the replay's clock speed, would load the machine, not the rollout. The pinned
    nodes always need theirs (the replay confirms that they wait). The line takes the zones in
    turn, each in name order, so a zone limit meets the zones as mixed as a real queue."""
    rounds = max(1, math.ceil(night_seconds / boot_seconds))
    cap = concurrency * (rounds + 1)
    by_zone: dict[str, list[str]] = {}
    for node in sorted(n for n in waiting if n not in pinned):
        by_zone.setdefault(zones.get(node, "-"), []).append(node)
    line: list[str] = []
    columns = [by_zone[z] for z in sorted(by_zone)]
    for i in range(max((len(c) for c in columns), default=0)):
        line += [c[i] for c in columns if i < len(c)]
    queued = {n for n in waiting if n in pinned} | set(line[:cap])
    return tuple(n for n in waiting if n in queued), tuple(n for n in waiting if n not in queued)


# --- what can never be rebooted (pure) --------------------------------------------------------------


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def pdb_floor(pdb: Mapping[str, Any], expected: int) -> int:
    """desiredHealthy of a PDB over `expected` pods (percentages rounded up, as the disruption
    controller does)."""
    if pdb.get("minAvailable") is not None:
        return _scaled(pdb["minAvailable"], expected)
    if pdb.get("maxUnavailable") is not None:
        return max(0, expected - _scaled(pdb["maxUnavailable"], expected))
    return 0


def _selected(pdb: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    try:
        selector = label_selector_from_object(pdb.get("selector") or {})
    except SelectorError:
        return []
    ns = pdb.get("namespace", "default")
    return [
        p for p in pods if p.get("namespace", "default") == ns and selector.matches(p.get("labels") or {})
    ]


def never_rebooted(snapshot: snap.Snapshot, settings: Settings) -> dict[str, str]:
    """node -> why rebootd can never reboot it: no daemon there (a taint or nodeSelector), a PDB
    that allows no disruption with every pod it selects already healthy (nothing can raise it),
    or a blocking pod no controller moves (a bare pod)."""
    reasons: dict[str, str] = {}
    for node in snapshot.nodes:
        why = snap.untolerated_taint(snapshot, node)
        if why is not None:
            reasons[str(node["name"])] = why
    running = [p for p in snapshot.pods if p.get("phase") == "Running" and p.get("node")]
    for pdb in snapshot.pdbs:
        pods = _selected(pdb, running)
        if not pods:
            continue
        healthy = sum(1 for p in pods if p.get("ready"))
        floor = pdb_floor(pdb, len(pods))
        if healthy - floor > 0 or healthy < len(pods):
            continue  # allows a disruption, or may once its unready pods are Ready
        rule = (
            f"minAvailable {pdb['minAvailable']}"
            if pdb.get("minAvailable") is not None
            else f"maxUnavailable {pdb.get('maxUnavailable')}"
        )
        for p in pods:
            reasons.setdefault(
                str(p["node"]),
                f"PodDisruptionBudget {pdb.get('namespace', 'default')}/{pdb['name']} allows no disruption "
                f"({rule}, {healthy} of {len(pods)} pods healthy; every pod it selects is already healthy, "
                f"so nothing can raise it) and pod {p['name']} runs here",
            )
    for text in settings.blocking_pod_selector:
        selector = parse_label_selector(text)
        for p in running:
            if not selector.matches(p.get("labels") or {}):
                continue
            owner = p.get("owner")
            moved = owner is not None and owner.get("kind") != "DaemonSet"
            if settings.blocking_pod_scope == "cluster":
                for node in snapshot.nodes:
                    reasons.setdefault(
                        str(node["name"]),
                        f"blocking pod {p.get('namespace')}/{p['name']} ({text}, scope cluster) "
                        f"runs on {p['node']}",
                    )
            elif not moved:
                reasons.setdefault(
                    str(p["node"]),
                    f"blocking pod {p.get('namespace')}/{p['name']} matches {text} and runs here "
                    "(a bare pod: nothing moves it)",
                )
    return reasons


# --- concurrency that fits (pure estimate) ----------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    concurrency: int
    zone_concurrency: int
    rounds: int
    nights: int | None  # nights needed (None: a node cycle is longer than a night)
    fits: bool


def estimate_fit(
    *,
    per_zone: Mapping[str, int],
    cycle: float,
    night_seconds: Sequence[float],
    rounds_per_night: int | None = None,
    candidates: Sequence[int] = CANDIDATES,
) -> list[Fit]:
    """For each concurrency c (alone, and with a zone concurrency spreading c over the zones),
    the rounds of `cycle` seconds the rebootable nodes need and the nights they take; it fits
    when they fit in the nights given. `rounds_per_night`, when a replayed night was busy to
    its end, is what it achieved (the start of a night, hand-offs and backed-out drains
    included) and caps the rounds a night holds. An estimate: PDB budgets shared by parallel
    drains are only as visible as they were in the measured cycle."""
    zones = max(1, len(per_zone))
    total = sum(per_zone.values())
    out: list[Fit] = []
    length = min(night_seconds) if night_seconds else 0.0
    per_night = int(length // cycle) if cycle > 0 else 0
    if rounds_per_night is not None:
        per_night = min(per_night, rounds_per_night)
    for c in candidates:
        variants = sorted({0, math.ceil(c / zones)} if zones > 1 else {0})
        for z in variants:
            rounds = math.ceil(total / c)
            if z:
                rounds = max(rounds, *(math.ceil(n / min(z, c)) for n in per_zone.values()))
            needed = None if per_night == 0 else max(1, math.ceil(rounds / per_night)) if rounds else 0
            out.append(Fit(c, z, rounds, needed, needed is not None and needed <= len(night_seconds)))
    return out


def suggestion(fits: Sequence[Fit]) -> Fit | None:
    """The smallest concurrency that fits, with a zone limit when one fits at that concurrency."""
    fitting = [f for f in fits if f.fits]
    if not fitting:
        return None
    best = min(f.concurrency for f in fitting)
    at = [f for f in fitting if f.concurrency == best]
    return max(at, key=lambda f: f.zone_concurrency)


# --- the replay -------------------------------------------------------------------------------------


class PdbLog:
    """Store listener: when each PDB has fewer healthy pods than its floor (on the emulator's clock)."""

    def __init__(self) -> None:
        self.emulator: Emulator | None = None
        self.below_since: dict[str, datetime] = {}
        self.intervals: list[tuple[str, datetime, datetime]] = []
        self.lowest: dict[str, tuple[int, int]] = {}  # pdb -> (fewest healthy, floor)

    def __call__(self, event: StoreEvent) -> None:
        if not event.storage.startswith("poddisruptionbudgets") or self.emulator is None:
            return
        meta, status = event.obj.get("metadata") or {}, event.obj.get("status") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        now = self.emulator.clock.now()
        current, desired = status.get("currentHealthy"), status.get("desiredHealthy")
        if event.type != "DELETED" and current is not None and desired is not None and current < desired:
            self.below_since.setdefault(key, now)
            low = self.lowest.get(key)
            if low is None or int(current) < low[0]:
                self.lowest[key] = (int(current), int(desired))
        elif key in self.below_since:
            self.intervals.append((key, self.below_since.pop(key), now))

    def close(self, at: datetime) -> None:
        for key, since in sorted(self.below_since.items()):
            self.intervals.append((key, since, at))
        self.below_since.clear()


@dataclass
class NightSetup:
    """One night's cluster for the simulator (`ClusterSetup`)."""

    snapshot: snap.Snapshot
    daemon_nodes: dict[str, str]
    needed: tuple[str, ...]
    env: dict[str, str]
    the_clock: OffsetClock
    ends: datetime  # the window closes (plus the time holders need to finish)
    pdbs: PdbLog = field(default_factory=PdbLog)

    def zones(self) -> dict[str, str]:
        return dict(self.daemon_nodes)

    def plan(self, config: SimulationConfig) -> ScenarioPlan:
        del config
        return ScenarioPlan(
            name="whatif",
            summary="a cluster snapshot's rollout under its maintenance window",
            expect="any",
            needed=self.needed,
            env=self.env,
        )

    def clock(self) -> Clock:
        return self.the_clock

    def deadline(self) -> float:
        """Real monotonic time the simulated clock reaches `ends`."""
        c = self.the_clock
        assert c.start_at is not None
        return c._origin_mono + (self.ends - c.start_at).total_seconds() / c.speed

    def populate(self, emulator: Emulator) -> None:
        snap.populate(emulator, self.snapshot)
        installed_lock(emulator, at=self.the_clock.now(), ttl=REPLAY_LOCK_TTL)
        self.pdbs.emulator = emulator
        emulator.store.add_listener(self.pdbs)


def installed_lock(emulator: Emulator, *, at: datetime, ttl: float) -> None:
    """The lock Lease as an installed rebootd keeps it between rollouts: nobody holding a slot,
    nobody waiting. Without it every daemon of the replay would find no Lease at its start and
    list every Node to rebuild one (hundreds of daemons: hundreds of lists of hundreds of
    Nodes), which a cluster that runs rebootd never does."""
    now = format_microtime(at)
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": LOCK_NAME,
            "namespace": LOCK_NAMESPACE,
            "finalizers": [LOCK_FINALIZER],
            "annotations": {STATE_ANNOTATION: LockState().to_annotation()},
        },
        "spec": {
            "holderIdentity": "",
            "leaseDurationSeconds": max(1, round(ttl)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        },
    }
    emulator.add_namespace(name=LOCK_NAMESPACE)
    leases = BY_GROUP_RESOURCE[("coordination.k8s.io", "leases")]
    emulator.registry.create(leases, LOCK_NAMESPACE, body, client=SETUP)


@dataclass
class NodeRun:
    """One node's reboot in simulated time."""

    node: str
    zone: str
    night: int
    queued: datetime
    acquired: datetime | None
    drained: datetime | None
    reboot: datetime | None
    ready: datetime | None
    released: datetime | None


@dataclass
class Night:
    index: int
    opens: datetime
    closes: datetime
    outcome: Outcome
    started_at: datetime  # simulated time the daemons started (LEAD before `opens`, unless set-up ran late)
    runs: list[NodeRun]
    pdb_intervals: list[tuple[str, datetime, datetime]]
    pdb_lowest: dict[str, tuple[int, int]]
    held_back: tuple[str, ...] = ()  # waiting, but beyond what the night could reach (`night_queue`)

    @property
    def rebooted(self) -> list[NodeRun]:
        return [r for r in self.runs if r.reboot is not None]


@dataclass
class WhatIf:
    options: WhatIfOptions
    settings: Settings
    env: dict[str, str]
    ignored: list[str]
    zones: dict[str, str]  # every node -> zone
    daemon_nodes: dict[str, str]
    pinned: dict[str, str]  # node -> why never rebooted (the analysis)
    nights: list[Night]
    windows: list[tuple[datetime, datetime]]
    fits: list[Fit]
    cycle_seconds: float
    rounds_per_night: int | None  # measured on a night busy to its end
    verified: WhatIf | None  # the replay at the suggested concurrency (--verify)
    wall_seconds: float

    @property
    def rebooted(self) -> dict[str, NodeRun]:
        return {r.node: r for n in self.nights for r in n.rebooted}

    @property
    def rebootable(self) -> list[str]:
        return [n for n in self.daemon_nodes if n not in self.pinned]

    @property
    def not_rebooted(self) -> dict[str, str]:
        done = self.rebooted
        out: dict[str, str] = {}
        for node in self.zones:
            if node in done:
                continue
            out[node] = self.pinned.get(node, "not reached before the last night ended")
        return out

    @property
    def stalled_nights(self) -> list[int]:
        """Nights that rebooted nothing while rebootable nodes waited: the replay did not keep up
        (too many daemons for this machine at this clock speed), so it measured nothing."""
        return [
            n.index
            for n in self.nights
            if not n.rebooted and any(x not in self.pinned for x in n.outcome.plan.needed)
        ]

    @property
    def finished(self) -> datetime | None:
        """When the last rebootable node was done, if every one of them was."""
        done = self.rebooted
        if any(n not in done for n in self.rebootable):
            return None
        ends = [r.released or r.ready or r.reboot for r in done.values()]
        return max((e for e in ends if e is not None), default=None)

    def failed_invariants(self) -> list[str]:
        """Safety invariants that failed on any night (a night that ends with nodes waiting is no
        failure: the `reboots` progress check is the report's `never rebooted`)."""
        return [
            f"night {n.index}: {name}: {c.detail}"
            for n in self.nights
            for name, c in n.outcome.report.invariants.items()
            if not c.ok and name not in PROGRESS_INVARIANTS
        ]

    @property
    def invariants_ok(self) -> bool:
        return not self.failed_invariants()

    @property
    def exit_code(self) -> int:
        """0 every node rebooted within the nights; 3 some never or not in time; 1 an invariant failed."""
        if not self.invariants_ok:
            return EXIT_FAILED
        return EXIT_OK if not self.not_rebooted else EXIT_HALTED


def _night_runs(outcome: Outcome, *, night: int, started: datetime, speed: float) -> list[NodeRun]:
    def at(rel: float | None) -> datetime | None:
        return None if rel is None else started + timedelta(seconds=rel * speed)

    runs = []
    for t in outcome.report.timelines:
        runs.append(
            NodeRun(
                node=t.node,
                zone=t.zone,
                night=night,
                queued=started,
                acquired=at(t.acquired),
                drained=at(t.drained),
                reboot=at(t.reboot),
                ready=at(t.ready),
                released=at(t.released),
            )
        )
    return runs


def _setup_estimate(snapshot: snap.Snapshot) -> float:
    """Real seconds to load the snapshot and start the daemons, generous on 2 loaded cores: 300
    nodes took 38 s to their first slot under a load average of 14, most of it starting the
    daemons. Waiting for a window costs a daemon no request, so an early start costs only
    idle time; a late one would cost the night its first rounds."""
    return 3.0 + 0.12 * len(snapshot.nodes) + 0.004 * len(snapshot.pods)


async def run_night(
    *,
    options: WhatIfOptions,
    index: int,
    opens: datetime,
    closes: datetime,
    daemon_nodes: dict[str, str],
    needed: tuple[str, ...],
    env: dict[str, str],
    settings: Settings,
    workdir: Path | None = None,
) -> Night:
    speed = options.clock_speed
    setup_real = _setup_estimate(options.snapshot)
    clock = OffsetClock(start_at=opens - LEAD, speed=speed, _origin_mono=time.monotonic() + setup_real)
    setup = NightSetup(
        snapshot=options.snapshot,
        daemon_nodes=daemon_nodes,
        needed=needed,
        env=env,
        the_clock=clock,
        ends=closes + timedelta(seconds=SETTLE_REAL * speed),
    )
    night_real = (closes - opens + LEAD).total_seconds() / speed
    zones = len(set(daemon_nodes.values())) or 1
    config = SimulationConfig(
        nodes=len(daemon_nodes),
        zones=zones,
        concurrency=resolve_share(settings.concurrency, nodes=len(daemon_nodes), floor=1),
        # a share of a zone: resolved against the zones' mean size (the simulation spreads evenly)
        zone_concurrency=resolve_share(
            settings.zone_concurrency, nodes=max(1, len(daemon_nodes) // zones), floor=1
        ),
        drain_seconds=GRACE_SECONDS / speed,  # grace scale 1/speed: a pod takes its own grace period
        boot_seconds=options.boot_seconds / speed,
        recovery_seconds=options.recovery_seconds / speed,
        release_delay=settings.lock_release_delay / speed,
        seed=options.seed,
        timeout=setup_real + night_real + SETTLE_REAL,
        workers=options.workers,
    )
    outcome = await simulate(config, setup=setup, workdir=workdir)
    setup.pdbs.close(clock.now())
    started = opens - LEAD + timedelta(seconds=(outcome.origin - clock._origin_mono) * speed)
    runs = _night_runs(outcome, night=index, started=started, speed=speed)
    return Night(
        index=index,
        opens=opens,
        closes=closes,
        outcome=outcome,
        started_at=started,
        runs=runs,
        pdb_intervals=list(setup.pdbs.intervals),
        pdb_lowest=dict(setup.pdbs.lowest),
    )


def _zone_of(node: Mapping[str, Any], label: str) -> str:
    labels = node.get("labels") or {}
    return str(labels.get(label) or labels.get(ZONE_LABEL) or "-")


async def run_whatif(options: WhatIfOptions, *, workdir: Path | None = None) -> WhatIf:
    """Replay the snapshot night by night until every rebootable node rebooted or the nights end."""
    began = time.monotonic()
    settings = user_settings(options)
    given = effective_env(options)
    env, ignored = daemon_env(settings, given=given, speed=options.clock_speed)
    zones = {str(n["name"]): _zone_of(n, settings.zone_label) for n in options.snapshot.nodes}
    pinned = never_rebooted(options.snapshot, settings)
    daemon_nodes = {
        n: z
        for n, z in zones.items()
        if snap.untolerated_taint(options.snapshot, next(x for x in options.snapshot.nodes if x["name"] == n))
        is None
    }
    start = options.start or datetime.now(UTC)
    windows = nights_of(settings.window, start=start, count=options.nights)
    nights: list[Night] = []
    done: set[str] = set()
    concurrency = resolve_share(settings.concurrency, nodes=len(daemon_nodes), floor=1)
    for index, (opens, closes) in enumerate(windows, start=1):
        needed, held_back = night_queue(
            waiting=[n for n in daemon_nodes if n not in done],
            zones=daemon_nodes,
            pinned=pinned,
            concurrency=concurrency,
            night_seconds=(closes - opens).total_seconds(),
            boot_seconds=options.boot_seconds,
        )
        if not [n for n in needed if n not in pinned]:
            break
        night = await run_night(
            options=options,
            index=index,
            opens=opens,
            closes=closes,
            daemon_nodes=daemon_nodes,
            needed=needed,
            env=env,
            settings=settings,
            workdir=None if workdir is None else workdir / f"night-{index}",
        )
        night.held_back = held_back
        nights.append(night)
        done |= {r.node for r in night.rebooted}
        if night.outcome.status == "halted":
            break
    cycles = [
        (r.released - r.acquired).total_seconds()
        for n in nights
        for r in n.rebooted
        if r.released is not None and r.acquired is not None
    ]
    gaps = [g * options.clock_speed for n in nights for g in n.outcome.report.handoff_gaps]
    cycle = (
        statistics.median(cycles)
        if cycles
        else options.boot_seconds + options.recovery_seconds + GRACE_SECONDS
    ) + (statistics.median(gaps) if gaps else 0.0)
    per_zone: dict[str, int] = {}
    for node in daemon_nodes:
        if node not in pinned:
            per_zone[zones[node]] = per_zone.get(zones[node], 0) + 1
    busy = [len(n.rebooted) for n in nights if n.outcome.status != "completed" and n.rebooted]
    measured = max(busy) // max(1, concurrency) if busy else None
    fits = estimate_fit(
        per_zone=per_zone,
        cycle=cycle,
        night_seconds=[(c - o).total_seconds() for o, c in windows],
        rounds_per_night=measured or None,
    )
    verified: WhatIf | None = None
    best = suggestion(fits)
    if options.verify and best is not None and best.concurrency != settings.concurrency:
        verified = await run_whatif(
            replace(
                options,
                concurrency=best.concurrency,
                zone_concurrency=best.zone_concurrency,
                verify=False,
            )
        )
    return WhatIf(
        options=options,
        settings=settings,
        env=env,
        ignored=ignored,
        zones=zones,
        daemon_nodes=daemon_nodes,
        pinned=pinned,
        nights=nights,
        windows=windows,
        fits=fits,
        cycle_seconds=cycle,
        rounds_per_night=measured or None,
        verified=verified,
        wall_seconds=time.monotonic() - began,
    )


# --- the report -------------------------------------------------------------------------------------


def _hm(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%a %Y-%m-%d %H:%M")


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def kept_up(*, base: int, verified: int) -> bool:
    """Did a replay at a higher concurrency keep up? Its first night starts from the same cluster
    as the replay at the user's concurrency, and more slots never reboot fewer nodes in a night
    (a PDB or zone limit at worst serializes them again): fewer is the machine falling behind
    (hundreds of waiting daemons at the replay's clock speed), not the rollout."""
    return verified >= base


def _first_night(result: WhatIf) -> int:
    return len(result.nights[0].rebooted) if result.nights else 0


def render_text(result: WhatIf) -> str:
    o, s = result.options, result.settings
    zones = sorted(set(result.zones.values()))
    lines = [
        f"rebootd what-if: {o.name}: {len(result.zones)} nodes in {len(zones)} zones "
        f"({len(result.daemon_nodes)} run rebootd), {len(o.snapshot.pods)} pods, {len(o.snapshot.pdbs)} PDBs",
        f"Settings: window {s.window.describe()}, concurrency {s.concurrency}"
        + (f", zone concurrency {s.zone_concurrency}" if s.zone_concurrency else "")
        + (f"; ignored (no effect on a rollout): {', '.join(result.ignored)}" if result.ignored else ""),
        *(
            [
                "Not read (the installed rebootd's other settings): "
                + ", ".join(str(u) for u in o.snapshot.rebootd["unread"])
                + "; give the ones that matter with --set NAME=VALUE or REBOOTD_*"
            ]
            if o.snapshot.rebootd.get("unread")
            else []
        ),
        "Simulated durations: a pod takes its terminationGracePeriodSeconds to go, "
        f"a node {_dur(o.boot_seconds)} "
        f"to boot, restarted pods {_dur(o.recovery_seconds)} to be Ready; clock {o.clock_speed:g}x "
        f"(run took {result.wall_seconds:.0f} s)",
        "",
        "Night by night",
    ]
    total = len(result.rebootable)
    done = 0
    for night in result.nights:
        rebooted = night.rebooted
        done += len(rebooted)
        last = max((r.released or r.ready or r.reboot for r in rebooted if r.reboot), default=None)
        late = (night.started_at - (night.opens - LEAD)).total_seconds()
        lines.append(
            f"  night {night.index} ({_hm(night.opens)} to {night.closes.strftime('%H:%M')}): "
            f"{len(rebooted)} rebooted, {done} of {total} rebootable so far; last done {_hm(last)}"
            + (f" (the replay started {_dur(late)} late: set-up on a loaded machine)" if late > 60 else "")
        )
    for opens, _closes in result.windows[len(result.nights) :]:
        lines.append(f"  night ({_hm(opens)}): nothing left to reboot")
    stalled = result.stalled_nights
    if stalled:
        lines.append(
            f"  INCONCLUSIVE: night(s) {', '.join(map(str, stalled))} rebooted nothing while nodes waited: "
            f"the replay did not keep up ({len(result.daemon_nodes)} daemons at {o.clock_speed:g}x on this "
            "machine); lower --clock-speed or use a less loaded machine. The estimate below then rests "
            "on the durations alone."
        )
    finished = result.finished
    lines.append("")
    if finished is not None:
        lines.append(f"Finish: every rebootable node rebooted by {_hm(finished)}")
    else:
        left = total - done
        lines.append(
            f"Finish: NOT within {len(result.windows)} night(s): "
            f"{done} of {total} rebootable nodes rebooted, "
            f"{left} left"
        )
    never = result.not_rebooted
    lines.append("")
    lines.append(f"Never rebooted ({len(never)})" if never else "Never rebooted: none")
    by_reason: dict[str, list[str]] = {}
    for node, why in never.items():
        by_reason.setdefault(why, []).append(node)
    for why, nodes in sorted(
        by_reason.items(), key=lambda kv: (-len(kv[1]) if "reached" in kv[0] else 0, kv[0])
    ):
        shown = ", ".join(nodes[:6]) + (f" and {len(nodes) - 6} more" if len(nodes) > 6 else "")
        lines.append(f"  {shown}: {why}")
    lines.append("")
    breaches: dict[str, float] = {}
    for night in result.nights:
        for pdb, since, until in night.pdb_intervals:
            breaches[pdb] = breaches.get(pdb, 0.0) + (until - since).total_seconds()
    if breaches:
        lines.append("Workloads below their PDB floor")
        for pdb, seconds in sorted(breaches.items()):
            low = next((n.pdb_lowest[pdb] for n in result.nights if pdb in n.pdb_lowest), None)
            extra = f", lowest {low[0]} healthy for a floor of {low[1]}" if low else ""
            lines.append(f"  {pdb}: {_dur(seconds)} in all{extra}")
    else:
        lines.append("Workloads below their PDB floor: none (the drains waited for the budgets)")
    lines.append("")
    measured = (
        f", at most {result.rounds_per_night} round(s) a night as measured"
        if result.rounds_per_night is not None
        else ""
    )
    lines.append(
        f"What would fit ({len(result.windows)} night(s); estimate from the measured cycle of "
        f"{_dur(result.cycle_seconds)} per node incl. hand-off{measured}, "
        f"{len(result.rebootable)} rebootable nodes)"
    )
    best = suggestion(result.fits)
    for fit in result.fits:
        zone = f", zone concurrency {fit.zone_concurrency}" if fit.zone_concurrency else ""
        nights = "never (a cycle is longer than a night)" if fit.nights is None else f"{fit.nights} night(s)"
        mark = "  <- suggested" if fit is best else ""
        lines.append(
            f"  concurrency {fit.concurrency}{zone}: {fit.rounds} rounds, {nights}"
            f"{' fits' if fit.fits else ''}{mark}"
        )
        if fit.fits and fit.concurrency > (best.concurrency if best else 0) + 2:
            break
    if best is not None:
        zone = f" --zone-concurrency {best.zone_concurrency}" if best.zone_concurrency else ""
        lines.append(
            f"Suggestion: --concurrency {best.concurrency}{zone} (REBOOTD_CONCURRENCY={best.concurrency}"
            + (f", REBOOTD_ZONE_CONCURRENCY={best.zone_concurrency}" if best.zone_concurrency else "")
            + ")"
        )
    else:
        lines.append("Suggestion: no concurrency tried fits; widen the window or add nights")
    check = result.verified
    if check is not None:
        zone = (
            f", zone concurrency {check.settings.zone_concurrency}" if check.settings.zone_concurrency else ""
        )
        done = sum(len(n.rebooted) for n in check.nights)
        first, base = _first_night(check), _first_night(result)
        verdict = (
            f"every rebootable node rebooted by {_hm(check.finished)}"
            if check.finished is not None
            else f"{done} of {len(check.rebootable)} rebootable nodes rebooted, so it does NOT fit"
            if kept_up(base=base, verified=first)
            else f"INCONCLUSIVE: {first} node(s) rebooted on its first night, fewer than the {base} at "
            f"concurrency {s.concurrency}: the replay did not keep up ({len(check.daemon_nodes)} daemons "
            f"at {o.clock_speed:g}x on this machine); lower --clock-speed"
        )
        safe = "every invariant held" if check.invariants_ok else "INVARIANTS FAILED"
        lines.append(
            f"Verified by a replay at concurrency {check.settings.concurrency}{zone}: {verdict}; {safe}"
        )
    lines.append("")
    failed = result.failed_invariants()
    if failed:
        lines.append("Invariants: FAILED")
        lines += [f"  {f}" for f in failed]
    else:
        lines.append(f"Invariants: every invariant held on every night ({len(result.nights)} replayed)")
    code = result.exit_code
    lines.append(f"Result: {RESULT_WORDS.get(code, 'FAILED')}; exit {code}")
    return "\n".join(lines)


def to_json(result: WhatIf) -> dict[str, Any]:
    best = suggestion(result.fits)
    return {
        "snapshot": result.options.name,
        "nodes": len(result.zones),
        "rebootable": len(result.rebootable),
        "nights": [
            {
                "night": n.index,
                "opens": n.opens.isoformat(),
                "closes": n.closes.isoformat(),
                "rebooted": [r.node for r in n.rebooted],
                "status": n.outcome.status,
                "invariants_failed": {
                    name: c.detail
                    for name, c in n.outcome.report.invariants.items()
                    if not c.ok and name not in PROGRESS_INVARIANTS
                },
            }
            for n in result.nights
        ],
        "finished": None if result.finished is None else result.finished.isoformat(),
        "never_rebooted": result.not_rebooted,
        "pdb_below_floor": [
            {"pdb": pdb, "from": a.isoformat(), "until": b.isoformat()}
            for n in result.nights
            for pdb, a, b in n.pdb_intervals
        ],
        "cycle_seconds": round(result.cycle_seconds, 1),
        "fits": [
            {
                "concurrency": f.concurrency,
                "zone_concurrency": f.zone_concurrency,
                "rounds": f.rounds,
                "nights": f.nights,
                "fits": f.fits,
            }
            for f in result.fits
        ],
        "verified": None
        if result.verified is None
        else {
            "concurrency": result.verified.settings.concurrency,
            "zone_concurrency": result.verified.settings.zone_concurrency,
            "finished": None if result.verified.finished is None else result.verified.finished.isoformat(),
            "rebooted": sum(len(n.rebooted) for n in result.verified.nights),
            "invariants_ok": result.verified.invariants_ok,
            "kept_up": kept_up(base=_first_night(result), verified=_first_night(result.verified)),
        },
        "rounds_per_night_measured": result.rounds_per_night,
        "inconclusive_nights": result.stalled_nights,
        "suggestion": None
        if best is None
        else {"concurrency": best.concurrency, "zone_concurrency": best.zone_concurrency},
        "ignored_settings": result.ignored,
        "exit_code": result.exit_code,
        "wall_seconds": round(result.wall_seconds, 1),
    }


def run(options: WhatIfOptions, *, workdir: Path | None = None) -> WhatIf:
    return asyncio.run(run_whatif(options, workdir=workdir))


# --- the timeline page ------------------------------------------------------------------------------


def chart(result: WhatIf) -> Chart:
    """The nights side by side (the days between them left out), times in simulated seconds."""
    segments: list[tuple[datetime, datetime, float]] = []  # (from, to, offset on the axis)
    offset = 0.0
    for night in result.nights:
        seg_from, seg_to = night.opens - LEAD, night.closes + LEAD
        segments.append((seg_from, seg_to, offset))
        offset += (seg_to - seg_from).total_seconds()

    def x(night: int, t: datetime) -> float:
        seg_from, seg_to, off = segments[night - 1]
        t = min(max(t, seg_from), seg_to)
        return off + (t - seg_from).total_seconds()

    bars: dict[str, list[Bar]] = {n: [] for n in result.zones}
    for night in result.nights:
        seg_to = segments[night.index - 1][1]
        for node in night.held_back:  # waiting all night, beyond what the night could reach
            bars[node].append(Bar("queued", x(night.index, night.opens), x(night.index, night.closes)))
        for run in night.runs:
            if run.node not in night.outcome.plan.needed:
                continue
            start = max(night.started_at, night.opens)
            if run.reboot is None or run.acquired is None:
                bars[run.node].append(Bar("queued", x(night.index, start), x(night.index, night.closes)))
                continue
            down = run.drained or run.reboot
            ready = run.ready or seg_to
            bars[run.node].append(Bar("queued", x(night.index, start), x(night.index, run.acquired)))
            bars[run.node].append(Bar("draining", x(night.index, run.acquired), x(night.index, down)))
            bars[run.node].append(Bar("rebooting", x(night.index, down), x(night.index, ready)))
            if run.released is not None:
                bars[run.node].append(Bar("recovering", x(night.index, ready), x(night.index, run.released)))
    never = result.not_rebooted
    rows = [
        Row(node=n, zone=z, bars=tuple(bars[n]), note=never.get(n, ""))
        for n, z in sorted(result.zones.items(), key=lambda kv: (kv[1], kv[0]))
    ]
    ticks: list[tuple[float, str]] = []
    for seg_from, seg_to, off in segments:
        hour = seg_from.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        every = max(1, int((seg_to - seg_from).total_seconds() // 3600 // 6))
        while hour < seg_to:
            ticks.append((off + (hour - seg_from).total_seconds(), hour.strftime("%H:%M")))
            hour += timedelta(hours=every)
    windows = [(x(n.index, n.opens), x(n.index, n.closes)) for n in result.nights]
    breaks = [
        (off, f"night {i} ({seg_from + LEAD:%a %d %b})") for i, (seg_from, _t, off) in enumerate(segments, 1)
    ]
    invariants = [
        (f"night {n.index}: {name}", c.ok, c.detail)
        for n in result.nights
        for name, c in n.outcome.report.invariants.items()
        if name not in PROGRESS_INVARIANTS
    ]
    text = render_text(result).splitlines()
    summary = [line.strip() for line in text if line.startswith(("Finish:", "Suggestion:", "Result:"))]
    summary += [f"never rebooted: {node}: {why}" for node, why in never.items() if "reached" not in why]
    return Chart(
        title=f"rebootd what-if: {result.options.name}",
        subtitle=text[1] if len(text) > 1 else "",
        rows=rows,
        start=0.0,
        end=max(offset, 1.0),
        ticks=ticks,
        unit="simulated s",
        windows=windows,
        breaks=breaks,
        gaps=[g * result.options.clock_speed for n in result.nights for g in n.outcome.report.handoff_gaps],
        invariants=invariants,
        summary=summary,
    )
