"""Scenarios of `rebootd simulate`: what the cluster looks like and what goes wrong, as data.

Rule: a scenario is a pure plan (`ScenarioPlan`) computed from the cluster layout and the seed:
extra workloads, admin cordons, daemon settings, a simulated clock, fault rates, a late kubelet,
scripted node-write faults, and timed or triggered actions (break a pod, fail a boot or a reboot
command, kill, freeze or duplicate a daemon, partition it, delete the Lease once or twice, an
operator's unlock / pause / resume, scale a workload). The simulator carries the actions out;
nothing here touches the emulator. The chaos scenario draws every choice from `random.Random`
seeded with the run's seed, so `rebootd simulate --scenario chaos --seed N` (with the same sizes)
replays the same plan; the kinds added after the first ones are drawn after them, so an older
seed's earlier choices stay what they were.

The named scenarios (`NAMED`) each reproduce one failure the lock's safety rules guard against
(docs/design.md), deterministically: who is hit is chosen by what happens (the first holder, the
n-th cordon, the first mark), never by timing or by the seed, and nodes that must not go first get
their reboot-required file only later (`deferred`, released by a `require_reboot` action).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from rebootd.emulator.faults import FaultConfig, FaultKind

ActionKind = Literal[
    "break_pod",
    "fail_boot",
    "fail_reboot",
    "kill_daemon",
    "partition",
    "delete_lease",
    "delete_lease_twice",
    "scale",
    "freeze",
    "duplicate_daemon",
    "unlock",
    "unlock_force",
    "pause",
    "resume",
    "require_reboot",
    "power_loss",
]
# Actions an operator carries out with the admin commands (rebootd.admin), as its own client.
OPERATOR_ACTIONS: frozenset[str] = frozenset({"unlock", "unlock_force", "pause", "resume"})
NodeWrite = Literal["cordon", "mark"]
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
        "seeded chaos: API 5xx/429/409 at high rates, dropped watches, writes applied but their "
        "response lost, daemons killed, frozen past the lock TTL or duplicated at random phases, "
        "partitions longer than the lock TTL, the Lease deleted once or twice, operator unlock / "
        "pause / resume, a late kubelet, clock skew of up to +-10 minutes between daemons, "
        "sometimes a node that fails to boot or a machine that loses power mid-drain while its "
        "Node still shows Ready"
    ),
    "lost-response": (
        "the first holder's cordon is applied but its response lost (connection reset): the daemon "
        "retries and finds its own cordon; the rollout completes and no node is left cordoned"
    ),
    "frozen-holder": (
        "the first holder's daemon freezes right before its second eviction for twice the lock TTL "
        "while the other nodes wait, then thaws: it must not evict or reboot without its slot"
    ),
    "late-kubelet": (
        "a rebooted node's kubelet posts Ready and the new bootID 1.5 s after the machine is back "
        "(its daemon restarted); a node that goes down stays Ready for a node-monitor grace period "
        "longer than the boot: every node reboots exactly once"
    ),
    "duplicate-daemon": (
        "a second daemon with its own pod uid starts on the first holder mid-drain and on the "
        "second holder as it takes its slot (a DaemonSet surge): still one reboot per node, within limits"
    ),
    "unlock-race": (
        "an operator unlocks (without --force) the first holder mid-drain and the second mid-reboot, "
        "both nodes an admin had cordoned first; an unlock lands between the third holder's decision "
        "to cordon and its cordon: never two nodes disrupted at once, no node left cordoned"
    ),
    "lease-deleted-twice": (
        "concurrency 1; the Lease is deleted twice in a row while the first holder is between "
        "taking its slot and marking its node: never more holders than the limit"
    ),
    "stale-ready": (
        "concurrency 1; the first holder's machine loses power mid-drain and stays down while its "
        "Node still shows Ready (a node-monitor grace longer than the outage): nobody may take its "
        "slot on the strength of that Ready; the rollout halts naming it"
    ),
    "halt-in-flight": (
        "concurrency 2; the first holder's reboot command always fails while the second holder is "
        "mid-drain: the rollout halts naming the first, nothing reboots after the halt and the "
        "failed reboot is not retried in a loop"
    ),
}
# The named scenarios (each one failure, deterministically).
NAMED: tuple[str, ...] = (
    "lost-response",
    "frozen-holder",
    "late-kubelet",
    "duplicate-daemon",
    "unlock-race",
    "lease-deleted-twice",
    "halt-in-flight",
    "stale-ready",
)
LATE_KUBELET_POST_DELAY = 1.5  # seconds after the machine is back (scenario late-kubelet)
MAX_FAILED_REBOOT_REQUESTS = 3  # halt-in-flight: a failed reboot command is not repeated more


@dataclass(frozen=True)
class Trigger:
    """When an action happens: `at` seconds after the daemons started, or when the `holder`-th
    distinct node to take a slot is seen in `phase` or a later one (or has given the slot back),
    or (`others_done`) once every node that needs a reboot except the target has rebooted. With
    `holder`, `delay` seconds after that holder was first seen in `phase`; with `current`, only
    while it holds a slot now in `phase` or a later one (not once it gave a slot back)."""

    at: float | None = None
    holder: int | None = None
    phase: str = "acquiring"
    others_done: bool = False
    delay: float = 0.0
    current: bool = False

    def describe(self) -> str:
        if self.at is not None:
            return f"at {self.at:.2f}s"
        if self.holder is not None:
            later = f" (+{self.delay:g}s)" if self.delay else ""
            now = " (holding now)" if self.current else ""
            return f"when slot holder #{self.holder} is {self.phase}{later}{now}"
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
    verb: str = ""  # freeze: before the daemon's `nth` next request with this verb ("" any)
    nth: int = 1
    nodes: tuple[str, ...] = ()  # require_reboot: whose reboot-required files appear

    def describe(self, node: str | None = None) -> str:
        target = node or self.node or "?"
        if self.kind == "freeze":
            before = (
                f"its {_ordinal(self.nth)} {self.verb or 'request'}"
                if self.verb or self.nth > 1
                else "its next request"
            )
            who = f"the daemon of {target}" if target != "?" else "the first daemon to reach it"
            return f"freeze {who} right before {before} for {self.seconds:.2f}s ({self.trigger.describe()})"
        what = {
            "break_pod": f"break the node-local pod of {target} after its reboot",
            "fail_boot": f"make {target} fail to boot",
            "power_loss": f"cut the power of {target} (it boots {self.seconds:.2f}s later)",
            "fail_reboot": f"make every reboot command of {target} fail",
            "kill_daemon": f"kill the daemon of {target} (restart after {self.seconds:.2f}s)",
            "partition": f"partition the daemon of {target} for {self.seconds:.2f}s",
            "delete_lease": "delete the lock Lease",
            "delete_lease_twice": "delete the lock Lease, and again once it is back",
            "scale": f"scale statefulset {self.workload} to {self.replicas}",
            "duplicate_daemon": f"start a second daemon for {target} (its own pod uid)",
            "unlock": f"operator: rebootd unlock {target}",
            "unlock_force": f"operator: rebootd unlock --force {target}",
            "pause": "operator: rebootd pause",
            "resume": "operator: rebootd resume",
            "require_reboot": f"{', '.join(self.nodes) or target} now need"
            + ("s" if len(self.nodes) <= 1 else "")
            + " a reboot",
        }[self.kind]
        return f"{what} ({self.trigger.describe()})"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class NodeWriteScript:
    """A scripted fault on the `nth` daemon write of kind `what` to a Node (a cordon: spec.
    unschedulable false -> true; a mark: the holder annotation appears): `lose` its response once
    applied, and/or hold it, before it is applied, while the operator action `hold_for` runs on
    that node (then let it through); `then` runs an action right after it is applied, before the
    daemon can see the answer. Held for `delete_lease`: the Lease is deleted and the hold lasts
    until it is back with another node holding a marked slot (bounded)."""

    what: NodeWrite = "cordon"
    nth: int = 1
    lose: FaultKind | None = None
    hold_for: ActionKind | None = None
    # run right after the write is applied, before its answer leaves (only delete_lease)
    then: ActionKind | None = None


@dataclass(frozen=True)
class Workload:
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    name: str
    replicas: int = 1
    nodes: tuple[str, ...] = ()
    pdb_min_available: int | None = None
    pdb_max_unavailable: int | None = None
    grace_seconds: int | None = None  # terminationGracePeriodSeconds (None: the simulation's default)


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
    deferred: tuple[str, ...] = ()  # needed nodes whose reboot-required file a require_reboot action creates
    scripts: tuple[NodeWriteScript, ...] = ()
    kubelet_post_delay: float = 0.0  # EmulatorTiming overrides: a late kubelet
    node_monitor_grace: float = 0.0
    concurrency: int | None = None  # the scenario needs this concurrency (a usage error otherwise)


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
    boot_seconds: float = 1.0,
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
    if name in NAMED:
        return named_plan(name, nodes=nodes, lock_ttl=lock_ttl, boot_seconds=boot_seconds, summary=summary)
    return chaos_plan(zones=zones, concurrency=concurrency, seed=seed, lock_ttl=lock_ttl, summary=summary)


def named_plan(
    name: str, *, nodes: tuple[str, ...], lock_ttl: float, boot_seconds: float, summary: str
) -> ScenarioPlan:
    """The plans of the named scenarios (see SCENARIOS for what each one shows)."""
    if len(nodes) < 3:
        raise ScenarioError(f"{name} needs at least 3 nodes (holders, and nodes waiting behind them)")
    first, rest = nodes[0], nodes[1:]
    # The first node alone needs a reboot at the start, so it is the first holder; the others'
    # files appear once it is draining (they queue behind it).
    release_rest = Action(kind="require_reboot", trigger=Trigger(holder=1, phase="draining"), nodes=rest)
    if name == "lost-response":
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            scripts=(NodeWriteScript(what="cordon", nth=1, lose="lost_reset"),),
        )
    if name == "frozen-holder":
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            concurrency=1,
            # the production ratio (drain timeout 3 x TTL): the drain outlives the freeze, as a
            # SIGSTOP stops the drain's own timers too
            env={"REBOOTD_DRAIN_TIMEOUT": f"{3 * lock_ttl:g}s"},
            # at least two evictable pods on every node: a second eviction to freeze before
            workloads=(Workload(kind="Deployment", name="batch", replicas=2 * len(nodes)),),
            actions=(
                Action(kind="freeze", trigger=Trigger(at=0.0), verb="evict", nth=2, seconds=2 * lock_ttl),
            ),
        )
    if name == "late-kubelet":
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            kubelet_post_delay=LATE_KUBELET_POST_DELAY,
            # longer than the boot and the late post together: a rebooted node never shows NotReady
            node_monitor_grace=boot_seconds + LATE_KUBELET_POST_DELAY + 1.0,
        )
    if name == "duplicate-daemon":
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            deferred=rest,
            actions=(
                release_rest,
                Action(kind="duplicate_daemon", trigger=Trigger(holder=1, phase="draining")),
                Action(kind="duplicate_daemon", trigger=Trigger(holder=2, phase="acquiring")),
            ),
        )
    if name == "unlock-race":
        if len(nodes) < 4:
            raise ScenarioError(f"{name} needs at least 4 nodes (two admin-cordoned holders, then others)")
        second, others = nodes[1], nodes[2:]
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            concurrency=1,
            # two nodes an admin had cordoned go first, one after the other (each alone in the
            # queue: holders #1 and #2); slow drains, so the others queue while they still drain
            admin_cordoned=(first, second),
            deferred=rest,
            workloads=(
                Workload(
                    kind="Deployment", name="slow", replicas=2, nodes=(first, second), grace_seconds=120
                ),
            ),
            actions=(
                Action(kind="require_reboot", trigger=Trigger(holder=1, phase="draining"), nodes=(second,)),
                Action(kind="unlock", trigger=Trigger(holder=1, phase="draining", delay=1.0)),  # mid-drain
                Action(kind="require_reboot", trigger=Trigger(holder=2, phase="draining"), nodes=others),
                Action(
                    kind="unlock", trigger=Trigger(holder=2, phase="rebooting", current=True)
                ),  # mid-reboot
            ),
            # the first two holders' nodes were cordoned by the admin: the first daemon cordon is
            # the third holder's, and an unlock of that node lands between its decision and its write
            scripts=(NodeWriteScript(what="cordon", nth=1, hold_for="unlock"),),
        )
    if name == "lease-deleted-twice":
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="complete",
            needed=nodes,
            concurrency=1,
            # the first mark waits while the Lease is deleted and rebuilt (another node takes the
            # slot and marks its node); once it lands, before its daemon sees the answer, the
            # Lease is deleted a second time: the rebuild finds two marks
            scripts=(NodeWriteScript(what="mark", nth=1, hold_for="delete_lease", then="delete_lease"),),
        )
    if name == "stale-ready":
        return ScenarioPlan(
            name=name,
            summary=summary,
            expect="halted",
            needed=nodes,
            concurrency=1,
            deferred=rest,
            # a slow drain: the first holder is still draining (cordoned) when the power goes
            workloads=(
                Workload(kind="Deployment", name="slow", replicas=1, nodes=(first,), grace_seconds=120),
            ),
            actions=(
                release_rest,
                Action(
                    kind="power_loss",
                    trigger=Trigger(holder=1, phase="draining", delay=0.5),
                    seconds=STALE_READY_OUTAGE * lock_ttl,
                ),
            ),
            node_monitor_grace=2 * STALE_READY_OUTAGE * lock_ttl,  # Ready=True all through the outage
        )
    # halt-in-flight: the first holder's reboot command always fails; every other node has a pod
    # with a long grace period, so the second holder is still draining when the first one fails.
    return ScenarioPlan(
        name=name,
        summary=summary,
        expect="halted",
        needed=nodes,
        concurrency=2,
        deferred=rest,
        # slow drains everywhere: the second holder is still draining when the first one's
        # reboot command fails
        workloads=(
            Workload(kind="Deployment", name="slow", replicas=len(nodes), nodes=nodes, grace_seconds=120),
        ),
        actions=(
            Action(kind="fail_reboot", trigger=Trigger(at=0.0), node=first),
            Action(kind="require_reboot", trigger=Trigger(holder=1, phase="acquiring"), nodes=rest),
        ),
    )


STALE_READY_OUTAGE = 6.0  # lock TTLs a machine stays down in `stale-ready`


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
    # The kinds added with the named scenarios, drawn after everything above so older seeds keep their
    # earlier choices.
    lost = rng.uniform(0.0, 0.03)  # of writes: applied, response lost
    faults = replace(faults, lost_reset=lost / 2, lost_504=lost / 2)
    for _ in range(rng.choice((0, 0, 1))):
        actions.append(
            Action(
                kind="freeze",
                trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES[:2])),
                seconds=lock_ttl * rng.uniform(1.2, 2.5),
            )
        )
    if rng.random() < 0.25:
        actions.append(
            Action(
                kind="duplicate_daemon",
                trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES[:2])),
            )
        )
    if rng.random() < 0.15:
        actions.append(
            Action(
                kind="delete_lease_twice", trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES))
            )
        )
    for _ in range(rng.choice((0, 0, 1, 2))):
        kind: ActionKind = rng.choice(("unlock", "unlock_force", "pause"))
        # --force takes a node over from rebootd; forced while its node is down, the operator
        # (not rebootd) would let a second node go: only before the reboot, here
        phases = PHASES[:2] if kind == "unlock_force" else PHASES
        trigger = Trigger(holder=rng.randint(1, n), phase=rng.choice(phases))
        actions.append(Action(kind=kind, trigger=trigger))
        if kind == "pause":  # a paused rollout must be resumed to finish
            actions.append(Action(kind="resume", trigger=Trigger(holder=trigger.holder, phase="releasing")))
    late = rng.random() < 0.3
    post_delay = rng.uniform(0.2, 1.5) if late else 0.0
    grace = rng.uniform(0.0, 2.5) if late else 0.0
    # Timeouts well past the longest partition: a halt must come from a holder that stopped
    # renewing or a node that did not boot, not from a gate that could not reach the API in time.
    patience = f"{lock_ttl * 4:g}s"
    # A machine that dies mid-drain while its Node still shows Ready (the grace outlasts the TTL):
    # drawn last, so older seeds keep every earlier choice.
    if rng.random() < 0.15:
        outage = lock_ttl * rng.uniform(1.5, 4.0)
        actions.append(
            Action(
                kind="power_loss",
                trigger=Trigger(holder=rng.randint(1, n), phase=rng.choice(PHASES[:2]), delay=0.3),
                seconds=outage,
            )
        )
        grace = max(grace, outage * rng.uniform(0.5, 1.5))
    return ScenarioPlan(
        name="chaos",
        summary=summary,
        expect="any",
        needed=nodes,
        env={"REBOOTD_RECOVERY_TIMEOUT": patience, "REBOOTD_BOOT_TIMEOUT": patience},
        actions=tuple(actions),
        clock_offsets=offsets,
        faults=faults,
        kubelet_post_delay=post_delay,
        node_monitor_grace=grace,
    )
