"""Scenarios of `rebootd simulate`: what the cluster looks like and what goes wrong, as data.

Rule: a scenario is a pure plan (`ScenarioPlan`) computed from the cluster layout and the seed:
extra workloads, admin cordons, daemon settings, a simulated clock, fault rates, and timed or
triggered actions (break a pod, fail a boot, kill a daemon, partition it, delete the Lease, scale
a workload). The simulator carries the actions out; nothing here touches the emulator. The chaos
scenario draws every choice from `random.Random` seeded with the run's seed, so
`rebootd simulate --scenario chaos --seed N` (with the same sizes) replays the same plan.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from rebootd.sim.faults import FaultConfig

ActionKind = Literal["break_pod", "fail_boot", "kill_daemon", "partition", "delete_lease", "scale"]
Expect = Literal["complete", "halted", "any"]
# The order in which a holder goes through the phases recorded in the Lease.
PHASES = ("acquiring", "draining", "rebooting", "uncordoning", "recovering", "releasing")

SCENARIOS: dict[str, str] = {
    "default": "every node needs a reboot; workloads with PodDisruptionBudgets; nothing goes wrong",
    "pdb-blocked": (
        "a workload whose PDB allows no disruption pins one node: it cannot drain, the others go on; "
        "once they are done an operator scales that workload up and the node reboots"
    ),
    "crashloop-after-reboot": (
        "a pod on the second node to reboot crash-loops after the reboot: the rollout must halt "
        "and nothing reboots after that node"
    ),
    "node-fails-to-boot": "the second node to reboot never comes back: the rollout must halt",
    "admin-cordoned": "some nodes were cordoned by an admin: they reboot and stay cordoned",
    "window": (
        "a simulated clock starts before the maintenance window opens: no reboot before it opens, "
        "every reboot inside it"
    ),
    "chaos": (
        "seeded chaos: API 5xx/429/409 at high rates, dropped watches, daemons killed at random "
        "phases, partitions longer than the lock TTL, the Lease deleted, clock skew of up to "
        "+-10 minutes between daemons, sometimes a node that fails to boot"
    ),
}


@dataclass(frozen=True)
class Trigger:
    """When an action happens: `at` seconds after the daemons started, or when the `holder`-th
    distinct node to take a slot is seen in `phase` or a later one (or has given the slot back),
    or (`others_done`) once every node that needs a reboot except the target has rebooted."""

    at: float | None = None
    holder: int | None = None
    phase: str = "acquiring"
    others_done: bool = False

    def describe(self) -> str:
        if self.at is not None:
            return f"at {self.at:.2f}s"
        if self.holder is not None:
            return f"when slot holder #{self.holder} is {self.phase}"
        if self.others_done:
            return "when every other node has rebooted"
        return "at once"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    trigger: Trigger
    node: str | None = None  # None: the node the trigger names (the n-th holder)
    seconds: float = 0.0  # partition length; a killed daemon's restart delay
    workload: str = ""  # scale: StatefulSet name (namespace default)
    replicas: int = 0

    def describe(self, node: str | None = None) -> str:
        target = node or self.node or "?"
        what = {
            "break_pod": f"break the node-local pod of {target} after its reboot",
            "fail_boot": f"make {target} fail to boot",
            "kill_daemon": f"kill the daemon of {target} (restart after {self.seconds:.2f}s)",
            "partition": f"partition the daemon of {target} for {self.seconds:.2f}s",
            "delete_lease": "delete the lock Lease",
            "scale": f"scale statefulset {self.workload} to {self.replicas}",
        }[self.kind]
        return f"{what} ({self.trigger.describe()})"


@dataclass(frozen=True)
class Workload:
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    name: str
    replicas: int = 1
    nodes: tuple[str, ...] = ()
    pdb_min_available: int | None = None
    pdb_max_unavailable: int | None = None


@dataclass(frozen=True)
class ScenarioPlan:
    name: str
    summary: str
    expect: Expect
    needed: tuple[str, ...]
    admin_cordoned: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workloads: tuple[Workload, ...] = ()
    actions: tuple[Action, ...] = ()
    clock_start: datetime | None = None  # a simulated calendar for every daemon and the emulator
    clock_speed: float = 1.0
    clock_offsets: Mapping[str, float] = field(default_factory=dict)  # per-node skew, seconds
    faults: FaultConfig | None = None  # overrides --faults


class ScenarioError(ValueError):
    """The scenario cannot run with these sizes (a usage error)."""


def plan_scenario(
    name: str,
    *,
    zones: Mapping[str, str],
    concurrency: int,
    seed: int,
    lock_ttl: float,
    per_node: float,
) -> ScenarioPlan:
    """The plan of scenario `name` for nodes `zones` (node -> zone, in rollout-name order)."""
    nodes = tuple(zones)
    summary = SCENARIOS.get(name)
    if summary is None:
        raise ScenarioError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
    if name == "default":
        return ScenarioPlan(name=name, summary=summary, expect="complete", needed=nodes)
    if name == "pdb-blocked":
        pinned = nodes[1] if len(nodes) > 1 else nodes[0]
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            workloads=(Workload(kind="StatefulSet", name="ledger", nodes=(pinned,), pdb_min_available=1),),
            actions=(
                Action(
                    kind="scale",
                    trigger=Trigger(others_done=True),
                    node=pinned,
                    workload="ledger",
                    replicas=2,
                ),
            ),
        )
    if name in ("crashloop-after-reboot", "node-fails-to-boot"):
        if len(nodes) < concurrency + 2:
            raise ScenarioError(
                f"{name} needs at least concurrency + 2 = {concurrency + 2} nodes "
                "(nodes still waiting must notice the failure)"
            )
        kind: ActionKind = "break_pod" if name == "crashloop-after-reboot" else "fail_boot"
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="halted",
            needed=nodes,
            actions=(Action(kind=kind, trigger=Trigger(holder=2, phase="acquiring")),),
        )
    if name == "admin-cordoned":
        cordoned = nodes[1::3] or nodes[:1]
        return ScenarioPlan(
            name=name, summary=summary, expect="complete", needed=nodes, admin_cordoned=cordoned
        )
    if name == "window":
        return window_plan(nodes=nodes, concurrency=concurrency, per_node=per_node, summary=summary)
    return chaos_plan(zones=zones, concurrency=concurrency, seed=seed, lock_ttl=lock_ttl, summary=summary)


WINDOW_START = datetime(2025, 1, 6, 2, 0, tzinfo=UTC)  # a Monday, 02:00 UTC
WINDOW_SPEED = 60.0  # one real second is one simulated minute
WINDOW_LEAD = timedelta(minutes=4)  # the clock starts this long (simulated) before the window opens


def window_plan(*, nodes: tuple[str, ...], concurrency: int, per_node: float, summary: str) -> ScenarioPlan:
    """Every day 02:00 until long enough for the whole rollout (three times the lower bound)."""
    rounds = -(-len(nodes) // concurrency)
    simulated_minutes = max(10, int(3 * rounds * per_node * WINDOW_SPEED / 60) + 5)
    end = WINDOW_START + timedelta(minutes=simulated_minutes)
    if end.date() != WINDOW_START.date():
        end = WINDOW_START.replace(hour=23, minute=59, second=59)
    env = {
        "REBOOTD_START_TIME": WINDOW_START.strftime("%H:%M"),
        "REBOOTD_END_TIME": end.strftime("%H:%M:%S"),
        "REBOOTD_TIME_ZONE": "UTC",
        "REBOOTD_REBOOT_DAYS": "mon,tue,wed,thu,fri,sat,sun",
    }
    return ScenarioPlan(
        name="window",
        summary=summary,
        expect="complete",
        needed=nodes,
        env=env,
        clock_start=WINDOW_START - WINDOW_LEAD,
        clock_speed=WINDOW_SPEED,
    )


def chaos_plan(
    *, zones: Mapping[str, str], concurrency: int, seed: int, lock_ttl: float, summary: str
) -> ScenarioPlan:
    rng = random.Random(f"rebootd-chaos\x00{seed}")  # noqa: S311 - a seeded simulation
    nodes = tuple(zones)
    n = len(nodes)
    faults = FaultConfig(
        error500=rng.uniform(0.02, 0.06),
        error503=rng.uniform(0.02, 0.06),
        throttle429=rng.uniform(0.005, 0.02),  # each costs a Retry-After of at least 1 s
        conflict409=rng.uniform(0.05, 0.15),
        latency=rng.uniform(0.0, 0.1),
        latency_seconds=0.05,
        watch_drop=rng.uniform(0.3, 0.9),
        watch_drop_after_seconds=(0.2, 3.0),
        watch_expire_on_resume=rng.uniform(0.0, 0.5),
    )
    actions: list[Action] = []
    for _ in range(rng.randint(1, 3)):
        actions.append(
            Action(
                kind="kill_daemon",
                trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES)),
                seconds=rng.uniform(0.0, 0.5),
            )
        )
    for _ in range(rng.randint(0, 2)):
        actions.append(
            Action(
                kind="partition",
                trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES)),
                seconds=lock_ttl * rng.uniform(1.2, 2.5),
            )
        )
    for _ in range(rng.randint(0, 2)):
        actions.append(
            Action(kind="delete_lease", trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES)))
        )
    if n >= concurrency + 2 and rng.random() < 0.2:
        actions.append(Action(kind="fail_boot", trigger=Trigger(holder=rng.randint(1, n - concurrency - 1))))
    offsets = {node: rng.uniform(-600.0, 600.0) for node in nodes}
    # Timeouts well past the longest partition: a halt must come from a holder that stopped
    # renewing or a node that did not boot, not from a gate that could not reach the API in time.
    patience = f"{lock_ttl * 4:g}s"
    return ScenarioPlan(
        name="chaos",
        summary=summary,
        expect="any",
        needed=nodes,
        env={"REBOOTD_RECOVERY_TIMEOUT": patience, "REBOOTD_BOOT_TIMEOUT": patience},
        actions=tuple(actions),
        clock_offsets=offsets,
        faults=faults,
    )
