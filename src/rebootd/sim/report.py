"""The report of a simulated rollout: what happened, how long it took, and whether it was safe.

Rule: pure functions of the emulator's history (what the API server saw), the final objects and
the request counts; never of what the daemons believe. Times are seconds since the simulation
started (`origin`, on the emulator clock's monotonic scale). The lock's phases come from the
Lease writes recorded in the history (each carries the `rebootd.io/state` annotation).

Figures:
- rollout: the first slot taken to the last slot given back (or to the halt);
- lower bound: rounds x the per-node minimum (drain + boot + recovery + release delay), where the
  rounds are ceil(nodes / concurrency), or more when the zone limit allows fewer nodes at once
  (the largest zone's ceil(nodes in zone / zone concurrency));
- hand-off gap: a slot given back until the next node is disrupted (cordoned by rebootd, or its
  slot taken when it was already cordoned by an admin), matched in time order.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rebootd.emulator.history import HistoryRecord
from rebootd.schedule import Window
from rebootd.sim.invariants import (
    Check,
    check_after_halt,
    check_concurrency,
    check_cordons,
    check_evictions_hold_slot,
    check_no_request_after_halt,
    check_one_reboot_per_need,
    check_pdb_disruptions,
    check_reboots,
    check_reboots_granted,
    check_requests_in_window,
    check_window,
    disruption_intervals,
    is_rebootd,
    peak_disruption,
)

INVARIANTS = (
    ("concurrency", "(1) disrupted nodes within concurrency and zone concurrency"),
    ("reboots", "(2) every node that needed a reboot rebooted exactly once, no other"),
    ("cordons", "(3) no node left cordoned by rebootd; admin cordons kept"),
    ("evictions", "(4) no pod covered by a PDB taken down by rebootd while its PDB allowed no disruption"),
    ("window", "(5) no reboot outside the maintenance window"),
    ("after_halt", "(6) no node disrupted after a halt"),
    ("evictions_need_slot", "(7) no eviction or pod delete by a daemon whose node held no slot"),
    ("requests_after_halt", "(8) no reboot request after a halt"),
    ("requests_in_window", "(9) no reboot request outside the maintenance window"),
    ("reboots_granted", "(10) no node rebooted without a grant"),
    ("one_reboot_per_need", "(11) no second reboot for one need"),
)


@dataclass(frozen=True)
class LeaseStep:
    """One recorded write of the lock Lease: when, the holders' phases, and the halt if any."""

    at: float
    holders: Mapping[str, str]
    halted: Mapping[str, Any] | None


def lease_steps(history: Iterable[HistoryRecord], *, namespace: str, name: str) -> list[LeaseStep]:
    steps = []
    for rec in history:
        if rec.kind != "Lease" or rec.event != "write" or rec.namespace != namespace or rec.name != name:
            continue
        if not rec.detail:  # a delete: the recreated Lease will say who holds what
            continue
        try:
            state = json.loads(rec.detail)
        except ValueError:
            continue
        holders = {n: str((h or {}).get("phase", "")) for n, h in (state.get("holders") or {}).items()}
        halted = state.get("halted") or None
        steps.append(LeaseStep(at=rec.monotonic, holders=holders, halted=halted))
    return steps


@dataclass(frozen=True)
class NodeTimeline:
    """One node's last attempt, in seconds since the start (None: did not happen)."""

    node: str
    zone: str
    attempts: int = 0
    acquired: float | None = None
    cordoned: float | None = None
    drained: float | None = None  # the Lease records phase "rebooting"
    reboot: float | None = None  # the node went down
    ready: float | None = None  # Ready again with a new bootID
    uncordoned: float | None = None
    released: float | None = None

    @property
    def total(self) -> float | None:
        if self.acquired is None or self.released is None:
            return None
        return self.released - self.acquired

    def to_json(self) -> dict[str, Any]:
        keys = ("acquired", "cordoned", "drained", "reboot", "ready", "uncordoned", "released")
        out: dict[str, Any] = {"node": self.node, "zone": self.zone, "attempts": self.attempts}
        out.update({k: _round(getattr(self, k)) for k in keys})
        out["total"] = _round(self.total)
        return out


@dataclass(frozen=True)
class PerNodeMinimum:
    """The shortest possible time one node can hold a slot, from the configured durations."""

    drain: float
    boot: float
    recovery: float
    release_delay: float

    @property
    def total(self) -> float:
        return self.drain + self.boot + self.recovery + self.release_delay


@dataclass(frozen=True)
class RunFacts:
    """Everything the report needs, gathered when the simulation ends."""

    history: Sequence[HistoryRecord]
    final_nodes: Sequence[Mapping[str, Any]]
    zones: Mapping[str, str]
    needed: Sequence[str]
    admin_cordoned: Sequence[str]
    concurrency: int
    zone_concurrency: int
    window: Window | None
    minimum: PerNodeMinimum
    request_counts: Mapping[tuple[str, str], int]
    origin: float
    ended: float
    lock_namespace: str = "kube-system"
    lock_name: str = "rebootd"
    timed_out: bool = False
    stuck_holders: tuple[str, ...] = ()  # nodes that never came back, holding with nobody to notice


@dataclass(frozen=True)
class Report:
    nodes: int
    needed: int
    rebooted: int
    timelines: list[NodeTimeline]
    rollout_seconds: float | None
    first_slot_seconds: float | None
    lower_bound_seconds: float
    rounds: int
    minimum: PerNodeMinimum
    overhead_ratio: float | None
    handoff_gaps: list[float]
    api_requests: dict[str, int]
    max_disrupted: int
    max_disrupted_per_zone: dict[str, int]
    halted: Mapping[str, Any] | None
    invariants: dict[str, Check]
    timed_out: bool
    phase_means: dict[str, float] = field(default_factory=dict)
    lease_updates: int = 0  # PUTs of the lock Lease by the daemons (their only `update` request)
    lease_written: int = 0  # of those, the ones that changed it (the rest: 409s and injected faults)
    stuck_holders: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.invariants.values())

    @property
    def halted_reason(self) -> str | None:
        if self.halted is None:
            return None
        return f"{self.halted.get('node', '?')}: {self.halted.get('reason', '')}"

    def gap_stats(self) -> dict[str, float | None]:
        return {
            "p50": _round(percentile(self.handoff_gaps, 50)),
            "p99": _round(percentile(self.handoff_gaps, 99)),
            "max": _round(max(self.handoff_gaps)) if self.handoff_gaps else None,
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def rounds_needed(
    *, zones: Mapping[str, str], needed: Iterable[str], concurrency: int, zone_concurrency: int
) -> int:
    nodes = list(needed)
    if not nodes:
        return 0
    rounds = math.ceil(len(nodes) / concurrency)
    if zone_concurrency > 0:
        per_zone = Counter(zones.get(n, "") for n in nodes)
        rounds = max(rounds, max(math.ceil(c / zone_concurrency) for c in per_zone.values()))
    return rounds


def node_timelines(facts: RunFacts, steps: Sequence[LeaseStep]) -> list[NodeTimeline]:
    """Per node, the attempt that rebooted it (or the last attempt), from the history."""
    acquisitions: dict[str, list[float]] = {}
    releases: dict[str, list[float]] = {}
    drained: dict[str, list[float]] = {}
    previous: Mapping[str, str] = {}
    for step in steps:
        for node, phase in step.holders.items():
            if node not in previous:
                acquisitions.setdefault(node, []).append(step.at)
            if phase == "rebooting" and previous.get(node) != "rebooting":
                drained.setdefault(node, []).append(step.at)
        for node in previous:
            if node not in step.holders:
                releases.setdefault(node, []).append(step.at)
        previous = step.holders
    cordons: dict[str, list[float]] = {}
    uncordons: dict[str, list[float]] = {}
    reboots: dict[str, list[float]] = {}
    readies: dict[str, list[float]] = {}
    for rec in facts.history:
        if rec.kind != "Node":
            continue
        if rec.event == "write" and rec.unschedulable_after is not None and is_rebootd(rec.client):
            if rec.unschedulable_after and not rec.unschedulable_before:
                cordons.setdefault(rec.name, []).append(rec.monotonic)
            elif rec.unschedulable_before and not rec.unschedulable_after:
                uncordons.setdefault(rec.name, []).append(rec.monotonic)
        elif rec.event == "reboot_started":
            reboots.setdefault(rec.name, []).append(rec.monotonic)
        elif rec.event == "node_ready":
            readies.setdefault(rec.name, []).append(rec.monotonic)

    def first_after(times: Sequence[float] | None, start: float | None) -> float | None:
        if start is None or not times:
            return None
        return next((t for t in times if t >= start), None)

    out = []
    origin = facts.origin
    for node in sorted(facts.zones):
        acquired_all = acquisitions.get(node, [])
        node_reboots = reboots.get(node) or []
        reboot_at = node_reboots[0] if node_reboots else None
        if reboot_at is not None:
            before = [t for t in acquired_all if t <= reboot_at]
            acquired = before[-1] if before else None
        else:
            acquired = acquired_all[-1] if acquired_all else None
        ready = first_after(readies.get(node), reboot_at)
        values = {
            "acquired": acquired,
            "cordoned": first_after(cordons.get(node), acquired),
            "drained": first_after(drained.get(node), acquired),
            "reboot": reboot_at,
            "ready": ready,
            "uncordoned": first_after(uncordons.get(node), ready if ready is not None else acquired),
            "released": first_after(releases.get(node), acquired),
        }
        relative = {k: (None if v is None else v - origin) for k, v in values.items()}
        out.append(NodeTimeline(node=node, zone=facts.zones[node], attempts=len(acquired_all), **relative))
    return out


def handoff_gaps(steps: Sequence[LeaseStep], history: Sequence[HistoryRecord]) -> list[float]:
    """Each slot given back, matched in time order with the next node disrupted after it."""
    events: list[tuple[float, int, str]] = []  # (time, 0 = release / 1 = start, node)
    previous: Mapping[str, str] = {}
    for step in steps:
        for node in previous:
            if node not in step.holders:
                events.append((step.at, 0, node))
        for node in step.holders:
            if node not in previous:
                events.append((step.at, 2, node))  # acquisition: a start only without a cordon
        previous = step.holders
    for rec in history:
        if (
            rec.kind == "Node"
            and rec.event == "write"
            and is_rebootd(rec.client)
            and rec.unschedulable_after
            and not rec.unschedulable_before
        ):
            events.append((rec.monotonic, 1, rec.name))
    events.sort()
    # An acquisition counts as the start only when no cordon by rebootd follows it for that node
    # before its next release (an admin had cordoned the node already).
    starts: list[tuple[float, str]] = []
    pending_acquire: dict[str, float] = {}
    for at, kind, node in events:
        if kind == 2:
            pending_acquire[node] = at
        elif kind == 1:
            pending_acquire.pop(node, None)
            starts.append((at, node))
        elif node in pending_acquire:
            starts.append((pending_acquire.pop(node), node))
    starts.extend((at, node) for node, at in pending_acquire.items())
    releases = sorted(at for at, kind, _ in events if kind == 0)
    timeline = sorted([(at, 0) for at in releases] + [(at, 1) for at, _ in starts])
    gaps: list[float] = []
    unmatched: list[float] = []
    for at, kind in timeline:
        if kind == 0:
            unmatched.append(at)
        elif unmatched:
            gaps.append(at - unmatched.pop(0))
    return gaps


def api_requests(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    by_verb: Counter[str] = Counter()
    for (client, verb), count in counts.items():
        if is_rebootd(client):
            by_verb[verb] += count
    return dict(sorted(by_verb.items()))


def _phase_means(timelines: Sequence[NodeTimeline]) -> dict[str, float]:
    spans = (
        ("slot to cordon", "acquired", "cordoned"),
        ("drain", "cordoned", "drained"),
        ("drained to down", "drained", "reboot"),
        ("boot", "reboot", "ready"),
        ("ready to uncordon", "ready", "uncordoned"),
        ("uncordon to release", "uncordoned", "released"),
    )
    out = {}
    for label, start, end in spans:
        values = [
            getattr(t, end) - getattr(t, start)
            for t in timelines
            if getattr(t, start) is not None and getattr(t, end) is not None
        ]
        if values:
            out[label] = sum(values) / len(values)
    return out


def build_report(facts: RunFacts) -> Report:
    history = facts.history
    steps = lease_steps(history, namespace=facts.lock_namespace, name=facts.lock_name)
    halted = next((s.halted for s in steps if s.halted), None)
    final_holders = set(steps[-1].holders) if steps else set()
    timelines = node_timelines(facts, steps)
    counts = Counter(r.name for r in history if r.event == "reboot_started")
    needed = list(facts.needed)
    rebooted = sum(1 for n in needed if counts.get(n, 0) >= 1)
    acquired = [s.at for s in steps if s.holders]
    first_slot = min(acquired) if acquired else None
    last_release: float | None = None
    previous: Mapping[str, str] = {}
    for step in steps:
        if set(previous) - set(step.holders):
            last_release = step.at
        previous = step.holders
    halt_at = next((s.at for s in steps if s.halted), None)
    end = halt_at if halt_at is not None else last_release
    rollout = end - first_slot if first_slot is not None and end is not None else None
    rounds = rounds_needed(
        zones=facts.zones,
        needed=needed,
        concurrency=facts.concurrency,
        zone_concurrency=facts.zone_concurrency,
    )
    lower = rounds * facts.minimum.total
    complete = halted is None and rebooted == len(needed) and not facts.timed_out
    ratio = rollout / lower if complete and rollout is not None and lower > 0 else None
    intervals = disruption_intervals(history)
    peak, zone_peak, _ = peak_disruption(intervals, zones=facts.zones)
    lock_ns, lock_name = facts.lock_namespace, facts.lock_name
    invariants = {
        "concurrency": check_concurrency(
            history, zones=facts.zones, concurrency=facts.concurrency, zone_concurrency=facts.zone_concurrency
        ),
        "reboots": check_reboots(
            history, needed=needed, halted=halted is not None or bool(facts.stuck_holders)
        ),
        "cordons": check_cordons(
            history,
            nodes=facts.final_nodes,
            admin_cordoned=facts.admin_cordoned,
            holding=final_holders if halted is not None else facts.stuck_holders,
        ),
        "evictions": check_pdb_disruptions(history),
        "window": check_window(history, window=facts.window),
        "after_halt": check_after_halt(history),
        "evictions_need_slot": check_evictions_hold_slot(history, namespace=lock_ns, name=lock_name),
        "requests_after_halt": check_no_request_after_halt(history, namespace=lock_ns, name=lock_name),
        "requests_in_window": check_requests_in_window(history, window=facts.window),
        "reboots_granted": check_reboots_granted(history, namespace=lock_ns, name=lock_name),
        "one_reboot_per_need": check_one_reboot_per_need(history),
    }
    return Report(
        nodes=len(facts.zones),
        needed=len(needed),
        rebooted=rebooted,
        timelines=timelines,
        rollout_seconds=rollout,
        first_slot_seconds=None if first_slot is None else first_slot - facts.origin,
        lower_bound_seconds=lower,
        rounds=rounds,
        minimum=facts.minimum,
        overhead_ratio=ratio,
        handoff_gaps=handoff_gaps(steps, history),
        api_requests=api_requests(facts.request_counts),
        max_disrupted=peak,
        max_disrupted_per_zone={z: c for z, c in sorted(zone_peak.items()) if z},
        halted=halted,
        invariants=invariants,
        timed_out=facts.timed_out,
        stuck_holders=facts.stuck_holders,
        phase_means=_phase_means(timelines),
        lease_updates=sum(
            c for (client, verb), c in facts.request_counts.items() if verb == "update" and is_rebootd(client)
        ),
        lease_written=sum(
            1
            for r in history
            if r.kind == "Lease"
            and r.event == "write"
            and r.verb == "update"
            and r.namespace == facts.lock_namespace
            and r.name == facts.lock_name
            and is_rebootd(r.client)
        ),
    )


# --- output -------------------------------------------------------------------------------------


def to_json(report: Report, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    total = sum(report.api_requests.values())
    return {
        **(dict(extra) if extra else {}),
        "nodes": report.nodes,
        "needed": report.needed,
        "rebooted": report.rebooted,
        "rollout_seconds": _round(report.rollout_seconds),
        "first_slot_seconds": _round(report.first_slot_seconds),
        "lower_bound_seconds": _round(report.lower_bound_seconds),
        "lower_bound": {
            "rounds": report.rounds,
            "per_node_seconds": _round(report.minimum.total),
            "drain": report.minimum.drain,
            "boot": report.minimum.boot,
            "recovery": report.minimum.recovery,
            "release_delay": report.minimum.release_delay,
        },
        "overhead_ratio": _round(report.overhead_ratio),
        "handoff_gap_seconds": report.gap_stats(),
        "api_requests": {"total": total, "by_verb": report.api_requests},
        "lease_updates": {"attempts": report.lease_updates, "written": report.lease_written},
        "max_disrupted": report.max_disrupted,
        "max_disrupted_per_zone": report.max_disrupted_per_zone,
        "halted": report.halted_reason,
        "timed_out": report.timed_out,
        "stuck": list(report.stuck_holders),
        "invariants": {name: report.invariants[name].to_json() for name, _ in INVARIANTS},
        "mean_phase_seconds": {k: round(v, 3) for k, v in report.phase_means.items()},
        "timeline": [t.to_json() for t in report.timelines],
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_text(
    report: Report, *, title: str, outcome: str, history_source: str = "the emulator's history"
) -> str:
    lines = [title, ""]
    lines.append("Per-node timeline (seconds since start; the attempt that rebooted the node)")
    header = ("node", "zone", "slot", "cordon", "drained", "down", "ready", "uncordon", "released", "held")
    width = max([len(header[0])] + [len(t.node) for t in report.timelines])
    zwidth = max([len(header[1])] + [len(t.zone) for t in report.timelines])
    lines.append(f"  {header[0]:<{width}}  {header[1]:<{zwidth}}" + "".join(f"{h:>9}" for h in header[2:]))
    for t in report.timelines:
        cells = (t.acquired, t.cordoned, t.drained, t.reboot, t.ready, t.uncordoned, t.released, t.total)
        note = f"  ({t.attempts} attempts)" if t.attempts > 1 else ""
        lines.append(
            f"  {t.node:<{width}}  {t.zone:<{zwidth}}" + "".join(f"{_cell(c):>9}" for c in cells) + note
        )
    lines.append("")
    gaps = report.gap_stats()
    if report.handoff_gaps:
        lines.append(
            f"Hand-off gaps (slot given back -> next node cordoned), {len(report.handoff_gaps)} hand-offs: "
            f"p50 {gaps['p50']:.3f} s, p99 {gaps['p99']:.3f} s, max {gaps['max']:.3f} s"
        )
    else:
        lines.append("Hand-off gaps: none (no slot was handed over)")
    m = report.minimum
    bound = (
        f"lower bound {report.lower_bound_seconds:.2f} s = {report.rounds} rounds x {m.total:.2f} s per node "
        f"(drain {m.drain:g} + boot {m.boot:g} + recovery {m.recovery:g} + release delay {m.release_delay:g})"
    )
    if report.rollout_seconds is None:
        lines.append(f"Rollout: no slot was taken; {bound}")
    else:
        ratio = "n/a (not completed)" if report.overhead_ratio is None else f"{report.overhead_ratio:.3f}"
        lines.append(f"Rollout: {report.rollout_seconds:.2f} s; {bound}; overhead_ratio {ratio}")
    if report.first_slot_seconds is not None:
        lines.append(f"First slot taken {report.first_slot_seconds:.2f} s after the daemons started")
    if report.phase_means:
        means = ", ".join(f"{k} {v:.3f}" for k, v in report.phase_means.items())
        lines.append(f"Mean seconds per step: {means}")
    zones = ", ".join(f"{z} {c}" for z, c in report.max_disrupted_per_zone.items())
    lines.append(
        f"Most nodes disrupted at once: {report.max_disrupted}" + (f" (per zone: {zones})" if zones else "")
    )
    total = sum(report.api_requests.values())
    verbs = ", ".join(f"{v} {c}" for v, c in sorted(report.api_requests.items(), key=lambda kv: -kv[1]))
    lines.append(f"API requests by the daemons: {total} ({verbs})")
    if report.lease_updates:
        failed = report.lease_updates - report.lease_written
        lines.append(
            f"Lock Lease updates: {report.lease_updates} attempted, {report.lease_written} written, "
            f"{failed} refused (409 conflicts and injected faults)"
        )
    lines.append(
        f"Rebooted: {report.rebooted} of {report.needed} nodes that needed it ({report.nodes} nodes)"
    )
    if report.halted is not None:
        lines.append(f"HALTED at {report.halted.get('node', '?')}: {report.halted.get('reason', '')}")
    if report.stuck_holders:
        lines.append(
            f"STUCK: {', '.join(report.stuck_holders)} never came back and still holds its slot; no node "
            "was left waiting to notice, so no halt was recorded"
        )
    if report.timed_out:
        lines.append("TIMED OUT: the rollout neither finished nor halted in time")
    lines.append("")
    lines.append(f"Safety invariants (from {history_source})")
    for name, label in INVARIANTS:
        check = report.invariants[name]
        lines.append(f"  {'PASS' if check.ok else 'FAIL'}  {label}: {check.detail}")
    lines.append("")
    lines.append(outcome)
    return "\n".join(lines)
