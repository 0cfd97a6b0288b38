"""Safety invariants of a rollout, judged from the emulator's own history, never from what the
daemons believe.

Rule: pure functions over `HistoryRecord`s and the final objects. A node is *disrupted* while it
is cordoned by rebootd (an unschedulable false->true write by a rebootd client, until the write
that clears it) or rebooting (reboot started until it is Ready again).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rebootd.schedule import Window
from rebootd.sim.history import HistoryRecord

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
        elif rec.event == "reboot_started":
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


def check_evictions(history: Sequence[HistoryRecord]) -> Check:
    bad = [
        f"{r.namespace}/{r.name} (PDB {r.pdb} allowed {r.disruptions_allowed})"
        for r in history
        if r.event == "eviction" and r.pdb and r.disruptions_allowed is not None and r.disruptions_allowed < 1
    ]
    total = sum(1 for r in history if r.event == "eviction")
    return Check(ok=not bad, detail="; ".join(bad[:5]) or f"{total} evictions, none beyond a PDB")


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
