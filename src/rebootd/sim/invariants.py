"""Safety invariants of a rollout, judged from the emulator's own history, never from what the
daemons believe.

Rule: pure functions over `HistoryRecord`s and the final objects. A node is *disrupted* while it
is cordoned by rebootd (an unschedulable false->true write by a rebootd client, until the write
that clears it) or rebooting (reboot started until it is Ready again), or down after its machine
died while cordoned by rebootd (until it is Ready again).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rebootd.emulator.history import BudgetFacts, HistoryRecord, PodFacts
from rebootd.lockstate import LockState, StateFormatError
from rebootd.schedule import Window
from rebootd.selectors import LabelSelector, SelectorError, label_selector_from_object

REBOOTD_CLIENT_PREFIX = "rebootd"


@dataclass(frozen=True)
class Interval:
    node: str
    start: float
    end: float | None  # None = still disrupted at the end of the history
    start_time: datetime


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


def is_rebootd(client: str) -> bool:
    return client.startswith(REBOOTD_CLIENT_PREFIX)


def disruption_intervals(history: Sequence[HistoryRecord]) -> list[Interval]:
    """Per node, the spans during which it was cordoned by rebootd or rebooting."""
    cordoned: dict[str, tuple[float, datetime]] = {}
    rebooting: dict[str, tuple[float, datetime]] = {}
    open_since: dict[str, tuple[float, datetime]] = {}
    out: list[Interval] = []

    def update(node: str, rec: HistoryRecord) -> None:
        active = node in cordoned or node in rebooting
        if active and node not in open_since:
            open_since[node] = (rec.monotonic, rec.time)
        elif not active and node in open_since:
            start, start_time = open_since.pop(node)
            out.append(Interval(node=node, start=start, end=rec.monotonic, start_time=start_time))

    for rec in history:
        if rec.kind != "Node":
            continue
        if rec.event == "write" and rec.unschedulable_after is not None:
            if rec.unschedulable_after and not rec.unschedulable_before and is_rebootd(rec.client):
                cordoned[rec.name] = (rec.monotonic, rec.time)
            elif not rec.unschedulable_after:
                cordoned.pop(rec.name, None)
        elif rec.event == "reboot_started" or (rec.event == "power_lost" and rec.name in cordoned):
            # A machine that dies while rebootd has it cordoned stays disrupted until it is back
            # (its slot must stay taken); one that dies elsewhere is not rebootd's disruption.
            rebooting[rec.name] = (rec.monotonic, rec.time)
        elif rec.event == "node_ready":
            rebooting.pop(rec.name, None)
        update(rec.name, rec)
    out.extend(Interval(node=n, start=s, end=None, start_time=t) for n, (s, t) in open_since.items())
    return sorted(out, key=lambda i: (i.start, i.node))


def peak_disruption(
    intervals: Iterable[Interval], *, zones: Mapping[str, str]
) -> tuple[int, dict[str, int], float | None]:
    """The most nodes disrupted at once, the most per zone, and when the overall peak began."""
    points: list[tuple[float, int, str]] = []
    for interval in intervals:
        points.append((interval.start, 1, interval.node))
        points.append((interval.end if interval.end is not None else float("inf"), -1, interval.node))
    points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant
    active: Counter[str] = Counter()
    peak, peak_at = 0, None
    zone_peak: dict[str, int] = {}
    for at, delta, node in points:
        zone = zones.get(node, "")
        active[zone] += delta
        total = sum(active.values())
        if total > peak:
            peak, peak_at = total, at
        zone_peak[zone] = max(zone_peak.get(zone, 0), active[zone])
    return peak, zone_peak, peak_at


def reboot_counts(history: Sequence[HistoryRecord]) -> Counter[str]:
    return Counter(rec.name for rec in history if rec.event == "reboot_started")


def check_concurrency(
    history: Sequence[HistoryRecord], *, zones: Mapping[str, str], concurrency: int, zone_concurrency: int
) -> Check:
    peak, zone_peak, _ = peak_disruption(disruption_intervals(history), zones=zones)
    worst_zone = max(zone_peak.items(), key=lambda kv: kv[1], default=("", 0))
    ok = peak <= concurrency and (zone_concurrency <= 0 or worst_zone[1] <= zone_concurrency)
    limit = f" (zone limit {zone_concurrency})" if zone_concurrency > 0 else ""
    detail = (
        f"at most {peak} disrupted at once (limit {concurrency}); "
        f"at most {worst_zone[1]} in zone {worst_zone[0] or '-'}{limit}"
    )
    return Check(ok=ok, detail=detail)


def check_reboots(history: Sequence[HistoryRecord], *, needed: Iterable[str], halted: bool = False) -> Check:
    counts = reboot_counts(history)
    needed_set = set(needed)
    twice = sorted(n for n, c in counts.items() if c > 1)
    extra = sorted(n for n in counts if n not in needed_set)
    missing = sorted(n for n in needed_set if counts.get(n, 0) == 0)
    problems = []
    if twice:
        problems.append(f"rebooted more than once: {', '.join(twice)}")
    if extra:
        problems.append(f"rebooted without needing it: {', '.join(extra)}")
    if missing and not halted:
        problems.append(f"never rebooted: {', '.join(missing)}")
    ok = not problems
    done = sum(1 for n in needed_set if counts.get(n, 0) == 1)
    return Check(ok=ok, detail="; ".join(problems) or f"{done} of {len(needed_set)} rebooted exactly once")


def check_cordons(
    history: Sequence[HistoryRecord],
    *,
    nodes: Sequence[Mapping[str, Any]],
    admin_cordoned: Iterable[str],
    holding: Iterable[str] = (),
) -> Check:
    """No node left cordoned by rebootd, admin cordons kept. `holding`: nodes that still hold a
    slot of a halted rollout; they stay cordoned on purpose (the operator looks at them)."""
    admin = set(admin_cordoned)
    held = set(holding)
    left = []
    kept = []
    for node in nodes:
        name = node["metadata"]["name"]
        unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
        if name in admin and not unschedulable:
            left.append(f"{name} was cordoned by an admin but is now schedulable")
        if name not in admin and unschedulable:
            last = [r for r in history if r.kind == "Node" and r.name == name and r.unschedulable_after]
            if last and is_rebootd(last[-1].client):
                if name in held:
                    kept.append(name)
                else:
                    left.append(f"{name} left cordoned by rebootd")
    detail = "; ".join(left) or "no node left cordoned by rebootd; admin cordons kept"
    if kept and not left:
        detail += f" (still cordoned while holding the halted rollout's slot: {', '.join(sorted(kept))})"
    return Check(ok=not left, detail=detail)


def check_window(history: Sequence[HistoryRecord], *, window: Window | None) -> Check:
    if window is None:
        return Check(ok=True, detail="no window configured")
    outside = [
        f"{r.name} at {r.time.isoformat()}"
        for r in history
        if r.event == "reboot_started" and not window.contains(r.time)
    ]
    return Check(ok=not outside, detail="; ".join(outside[:5]) or "every reboot started inside the window")


def halt_time(history: Sequence[HistoryRecord]) -> float | None:
    """When the Lease first recorded a halt (from the Lease writes' recorded state)."""
    for rec in history:
        if rec.kind == "Lease" and rec.event == "write" and rec.detail:
            try:
                state = json.loads(rec.detail)
            except ValueError:
                continue
            if isinstance(state, dict) and state.get("halted"):
                return rec.monotonic
    return None


def check_after_halt(history: Sequence[HistoryRecord]) -> Check:
    at = halt_time(history)
    if at is None:
        return Check(ok=True, detail="the rollout never halted")
    later = [i.node for i in disruption_intervals(history) if i.start > at]
    return Check(
        ok=not later,
        detail=f"disrupted after the halt: {', '.join(later)}"
        if later
        else "no node disrupted after the halt",
    )


# --- judged from every request rebootd made ------------------------------------------------------
#
# Each check below reads only the records (who asked for what, the Lease's recorded state, the
# pods' readiness and the PDBs' specs as written), never what the emulator decided on its own
# (a PDB status it computed, a refusal it answered): a daemon that misbehaves fails them even
# where the emulator would have let it.

DISRUPTING_REQUESTS = frozenset({"eviction", "eviction_refused", "pod_delete"})
MAX_LISTED = 5


def daemon_node(client: str) -> str | None:
    """The node a daemon's identity names (`rebootd@NODE`, a suffix after `#` ignored), else None."""
    if not is_rebootd(client) or "@" not in client:
        return None
    return client.split("@", 1)[1].split("#", 1)[0] or None


@dataclass(frozen=True)
class LockView:
    """The lock Lease as the server held it at one point of the history."""

    exists: bool = False
    holders: frozenset[str] = frozenset()
    halted: Mapping[str, Any] | None = None
    paused: Mapping[str, Any] | None = None
    unreadable: str = ""  # the parse error of a state this version cannot read

    def holds(self, node: str) -> bool:
        return not self.unreadable and node in self.holders


def lock_views(
    history: Sequence[HistoryRecord], *, namespace: str = "kube-system", name: str = "rebootd"
) -> list[LockView]:
    """For each record, the lock as it was when that record happened (a Lease write: after it).
    A deleted Lease has no holders until it is written again."""
    current = LockView()
    views: list[LockView] = []
    for rec in history:
        if rec.kind == "Lease" and rec.event == "write" and rec.namespace == namespace and rec.name == name:
            current = LockView() if rec.removed else _view_of(rec.detail)
        views.append(current)
    return views


def _view_of(annotation: str) -> LockView:
    try:
        state = LockState.from_annotation(annotation)
    except StateFormatError as exc:
        return LockView(exists=True, unreadable=str(exc))
    return LockView(exists=True, holders=frozenset(state.holders), halted=state.halted, paused=state.paused)


def _listed(problems: Sequence[str]) -> str:
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return "; ".join(problems[:MAX_LISTED]) + more


def _slot_problem(view: LockView) -> str:
    if view.unreadable:
        return f"the lock state was unreadable ({view.unreadable[:80]})"
    if not view.exists:
        return "the lock Lease did not exist"
    holders = ", ".join(sorted(view.holders)) or "nobody"
    return f"slot holders were {holders}"


def check_evictions_hold_slot(
    history: Sequence[HistoryRecord], *, namespace: str = "kube-system", name: str = "rebootd"
) -> Check:
    """(7) No eviction request (granted or refused) and no pod delete by a daemon whose node held
    no slot at that instant."""
    views = lock_views(history, namespace=namespace, name=name)
    bad: list[str] = []
    total = 0
    for rec, view in zip(history, views, strict=True):
        node = daemon_node(rec.client) if rec.event in DISRUPTING_REQUESTS else None
        if node is None:
            continue
        total += 1
        if not view.holds(node):
            what = "deleted" if rec.event == "pod_delete" else "evicted"
            bad.append(
                f"{rec.client} {what} {rec.namespace}/{rec.name} at {rec.monotonic:.2f} while "
                f"{node} held no slot ({_slot_problem(view)})"
            )
    return Check(
        ok=not bad,
        detail=_listed(bad) or f"{total} evictions and deletes by daemons, each while its node held a slot",
    )


def check_reboots_granted(
    history: Sequence[HistoryRecord], *, namespace: str = "kube-system", name: str = "rebootd"
) -> Check:
    """(10) No node rebooted without a grant: every reboot request by a daemon came while the
    node it reboots held a slot."""
    views = lock_views(history, namespace=namespace, name=name)
    bad: list[str] = []
    total = 0
    for rec, view in zip(history, views, strict=True):
        if rec.event != "reboot_requested" or not is_rebootd(rec.client):
            continue
        total += 1
        if not view.holds(rec.name):
            bad.append(
                f"{rec.client} asked to reboot {rec.name} at {rec.monotonic:.2f}: {_slot_problem(view)}"
            )
    return Check(
        ok=not bad, detail=_listed(bad) or f"{total} reboot requests, each while the node held a slot"
    )


def check_no_request_after_halt(
    history: Sequence[HistoryRecord], *, namespace: str = "kube-system", name: str = "rebootd"
) -> Check:
    """(8) No reboot request while the rollout is halted: from the first Lease write that records
    a halt until an operator (a client that is not a daemon) writes the Lease without it. A halt
    that vanished through the daemons' own writes (a Lease deleted and rebuilt) still stands."""
    halt: tuple[float, str] | None = None
    halts = 0
    bad: list[str] = []
    for rec in history:
        if rec.kind == "Lease" and rec.event == "write" and rec.namespace == namespace and rec.name == name:
            view = LockView() if rec.removed else _view_of(rec.detail)
            if view.halted and halt is None:
                halt = (rec.monotonic, str(view.halted.get("node", "?")))
                halts += 1
            elif halt is not None and view.exists and not view.unreadable and not view.halted:
                halt = halt if is_rebootd(rec.client) else None  # None: an operator's resume
        elif rec.event == "reboot_requested" and halt is not None:
            bad.append(
                f"{rec.client} asked to reboot {rec.name} at {rec.monotonic:.2f}, after the halt "
                f"at {halt[0]:.2f} ({halt[1]})"
            )
    if bad:
        return Check(ok=False, detail=_listed(bad))
    if not halts:
        return Check(ok=True, detail="the rollout never halted")
    return Check(ok=True, detail="no reboot requested while halted")


def check_requests_in_window(history: Sequence[HistoryRecord], *, window: Window | None) -> Check:
    """(9) No reboot request outside the maintenance window (the emulator's clock)."""
    if window is None:
        return Check(ok=True, detail="no window configured")
    requests = [r for r in history if r.event == "reboot_requested"]
    outside = [
        f"{r.client} asked to reboot {r.name} at {r.time.isoformat()}"
        for r in requests
        if not window.contains(r.time)
    ]
    return Check(
        ok=not outside, detail=_listed(outside) or f"{len(requests)} reboot requests, all inside the window"
    )


def check_one_reboot_per_need(history: Sequence[HistoryRecord]) -> Check:
    """(11) Between a node's reboot need beginning (its sentinel appearing) and the next, the
    machine rebooted at most once; a machine reboot with no need open is a reboot for nothing.
    Requests that did not reboot the machine are not reboots."""
    open_needs: dict[str, int] = {}  # node -> machine reboots since its need began
    bad: list[str] = []
    needs = 0
    for rec in history:
        if rec.kind != "Node":
            continue
        if rec.event == "reboot_needed":
            open_needs[rec.name] = 0
            needs += 1
        elif rec.event == "reboot_started":
            if rec.name not in open_needs:
                bad.append(f"{rec.name} rebooted at {rec.monotonic:.2f} without a need")
                continue
            open_needs[rec.name] += 1
            if open_needs[rec.name] == 2:
                bad.append(f"{rec.name} rebooted a second time at {rec.monotonic:.2f} for one need")
    return Check(ok=not bad, detail=_listed(bad) or f"{needs} needs, none with more than one machine reboot")


@dataclass
class _Budget:
    facts: BudgetFacts
    selector: LabelSelector | None  # None: unparsable (covers nothing we can judge)


def _desired(facts: BudgetFacts, expected: int) -> int:
    """desiredHealthy as the disruption controller computes it (percentages rounded up)."""
    if facts.max_unavailable is not None:
        return max(0, expected - _scaled(facts.max_unavailable, expected))
    if facts.min_available is not None:
        return _scaled(facts.min_available, expected)
    return 0


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _expected(namespace: str, matched: Sequence[PodFacts], scales: Mapping[tuple[str, str], int]) -> int:
    """expectedPods as the disruption controller counts it: the scale of each controller of the
    matched pods (a pod being replaced does not lower it), plus one per pod without a known scale
    that is not being deleted."""
    owners = {p.owner for p in matched if (namespace, p.owner) in scales}
    loose = sum(1 for p in matched if (namespace, p.owner) not in scales and not p.terminating)
    return sum(scales[(namespace, o)] for o in owners) + loose


def check_pdb_disruptions(history: Sequence[HistoryRecord]) -> Check:
    """(4) No pod covered by a PDB lost its place through rebootd's requests while its PDB allowed
    no disruption. Replayed from the records alone: each pod's readiness and existence after every
    write, each PDB's spec; at every eviction the server granted to a daemon, every pod a daemon
    deleted, and every pod still healthy on a node a daemon asked to reboot (DaemonSet pods
    aside, as a drain leaves them), a healthy pod whose PDB had healthy - 1 < desiredHealthy is
    a violation. Never from the PDB status the emulator computed or the refusals it answered."""
    pods: dict[tuple[str, str], PodFacts] = {}
    budgets: dict[tuple[str, str], _Budget] = {}
    scales: dict[tuple[str, str], int] = {}  # (namespace, "Kind/name") -> spec.replicas
    bad: list[str] = []
    disrupted = 0

    def covering(namespace: str, facts: PodFacts) -> list[_Budget]:
        return [
            b
            for (ns, _), b in budgets.items()
            if ns == namespace and b.selector is not None and b.selector.matches(facts.labels)
        ]

    def judge(namespace: str, pod_name: str, facts: PodFacts, rec: HistoryRecord, how: str) -> None:
        nonlocal disrupted
        if not facts.healthy:
            return
        disrupted += 1
        for budget in covering(namespace, facts):
            assert budget.selector is not None
            matched = [
                p for (ns, _), p in pods.items() if ns == namespace and budget.selector.matches(p.labels)
            ]
            healthy = sum(1 for p in matched if p.healthy)
            expected = _expected(namespace, matched, scales)
            desired = _desired(budget.facts, expected)
            if healthy - 1 < desired:
                bad.append(
                    f"{namespace}/{pod_name} {how} by {rec.client} at {rec.monotonic:.2f} while PDB "
                    f"{budget.facts.name} allowed no disruption ({healthy} healthy, {desired} desired)"
                )
        pods[(namespace, pod_name)] = replace(facts, terminating=True)  # it no longer counts

    for rec in history:
        key = (rec.namespace, rec.name)
        if rec.event == "write" and rec.kind == "Pod":
            if rec.removed:
                pods.pop(key, None)
            elif rec.pod is not None:
                pods[key] = rec.pod
        elif rec.event == "write" and rec.replicas is not None:
            scales[(rec.namespace, f"{rec.kind}/{rec.name}")] = rec.replicas
        elif rec.event == "write" and rec.kind == "PodDisruptionBudget":
            if rec.removed:
                budgets.pop(key, None)
            elif rec.budgets:
                facts = rec.budgets[0]
                try:
                    selector: LabelSelector | None = label_selector_from_object(facts.selector)
                except SelectorError:
                    selector = None
                budgets[key] = _Budget(facts=facts, selector=selector)
        elif not is_rebootd(rec.client):
            continue
        elif rec.event in ("eviction", "pod_delete") and rec.pod is not None:
            how = "evicted" if rec.event == "eviction" else "deleted"
            judge(rec.namespace, rec.name, pods.get(key, rec.pod), rec, how)
        elif rec.event == "reboot_requested":
            for (ns, pod_name), on_node in sorted(pods.items()):
                if on_node.node == rec.name and on_node.owner_kind != "DaemonSet":
                    judge(ns, pod_name, on_node, rec, f"taken down by the reboot of {rec.name}")
    return Check(
        ok=not bad,
        detail=_listed(bad)
        or f"{disrupted} healthy pods taken down by rebootd, none while its PDB allowed no disruption",
    )
