"""Pure arithmetic of the benchmark: medians, percentiles, hand-off pairing, write counting,
per-hour extrapolation, judging a figure against its target, and the printed table.

Rule: no I/O, no clocks, no event loop: every function takes plain values and returns plain
values, so the judging is unit-tested (tests/unit/test_bench_harness.py). Percentiles are the
simulator's own nearest-rank `rebootd.sim.report.percentile`, so the bench and `rebootd simulate`
report the same figure for the same gaps.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rebootd.sim.report import percentile

__all__ = [
    "WRITE_VERBS",
    "Figure",
    "HandoffCost",
    "Request",
    "handoff_costs",
    "median",
    "pair_handoffs",
    "per_hour",
    "percentile",
    "render_table",
    "slope",
    "spread",
]

# What counts as a write: every mutating verb of kube-apiserver; an eviction is a `create` of the
# pods/eviction subresource and so is included.
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

Op = Literal["<=", "<", "info"]


@dataclass(frozen=True)
class Request:
    """One API request as the emulator received it (arrival time on its monotonic clock)."""

    at: float
    client: str
    verb: str
    resource: str
    subresource: str = ""
    name: str = ""

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def is_lease_write(self) -> bool:
        return self.is_write and self.resource == "leases"


def median(values: Iterable[float]) -> float | None:
    """The median, None for no values."""
    data = list(values)
    return statistics.median(data) if data else None


def spread(values: Iterable[float]) -> tuple[float, float] | None:
    """(min, max), None for no values: shown next to medians so the noise is visible."""
    data = list(values)
    return (min(data), max(data)) if data else None


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = zip(*points, strict=True)
    return statistics.linear_regression(xs, ys).slope


def per_hour(count: float, *, seconds: float, scale: float = 1.0) -> float:
    """A count seen over `seconds` of real time that stood for `seconds * scale` of daemon time,
    extrapolated to one hour of daemon time."""
    if seconds <= 0 or scale <= 0:
        raise ValueError("seconds and scale must be > 0")
    return count * 3600.0 / (seconds * scale)


def pair_handoffs(*, releases: Iterable[float], starts: Iterable[float]) -> list[tuple[float, float]]:
    """Match each slot given back with the next disruption after it, in time order (the oldest
    unmatched release first), as `rebootd.sim.report.handoff_gaps` does; (release, start) pairs."""
    timeline = sorted([(at, 0) for at in releases] + [(at, 1) for at in starts])
    pending: list[float] = []
    pairs: list[tuple[float, float]] = []
    for at, kind in timeline:
        if kind == 0:
            pending.append(at)
        elif pending:
            pairs.append((pending.pop(0), at))
    return pairs


@dataclass(frozen=True)
class HandoffCost:
    """The writes of one hand-off: the release, everything after it, and the next cordon."""

    release: float
    start: float
    writes: int
    lease_writes: int
    by_client: Mapping[str, int]
    waiters: int = 0
    lease_committed: int = 0  # lease writes that changed the Lease (the rest were refused: 409)

    @property
    def other_writes(self) -> int:
        return self.writes - self.lease_writes

    @property
    def gap(self) -> float:
        return self.start - self.release


def handoff_costs(
    *,
    requests: Sequence[Request],
    pairs: Sequence[tuple[float, float]],
    waiters: Sequence[int] | None = None,
    lease_commits: Sequence[float] = (),
    include_release: bool = True,
) -> list[HandoffCost]:
    """Count the writes of every client that ARRIVED in (release, start] of each pair: `release`
    is when the release was committed, so its own request arrived just before and is added as one
    lease write (`include_release`); `start` is the commit of the next cordon, whose request arrived
    inside the window and is counted. `lease_commits` are the times Lease writes were committed,
    counted the same way."""
    out = []
    for index, (release, start) in enumerate(pairs):
        inside = [r for r in requests if r.is_write and release < r.at <= start]
        by_client: dict[str, int] = {}
        for r in inside:
            by_client[r.client] = by_client.get(r.client, 0) + 1
        extra = 1 if include_release else 0
        out.append(
            HandoffCost(
                release=release,
                start=start,
                writes=len(inside) + extra,
                lease_writes=sum(1 for r in inside if r.is_lease_write) + extra,
                by_client=by_client,
                waiters=waiters[index] if waiters is not None and index < len(waiters) else 0,
                lease_committed=sum(1 for at in lease_commits if release < at <= start) + extra,
            )
        )
    return out


@dataclass(frozen=True)
class Figure:
    """One measured figure against its target. `op` "info" means a figure only (no target)."""

    key: str
    label: str
    value: float | None
    unit: str
    op: Op = "info"
    limit: float | None = None
    stretch: float | None = None
    note: str = ""
    detail: Mapping[str, Any] | None = None

    @property
    def passed(self) -> bool | None:
        """True/False against the target; None for a figure only, or when nothing was measured
        (a missing measurement is reported as a failure by `verdict`)."""
        if self.op == "info" or self.limit is None:
            return None
        if self.value is None:
            return False
        return self.value <= self.limit if self.op == "<=" else self.value < self.limit

    @property
    def stretch_met(self) -> bool | None:
        if self.stretch is None or self.value is None:
            return None
        return self.value <= self.stretch

    @property
    def target(self) -> str:
        if self.op == "info" or self.limit is None:
            return "figure only"
        text = f"{self.op} {self.limit:g}"
        if self.stretch is not None:
            text += f" (stretch {self.stretch:g})"
        return text

    @property
    def verdict(self) -> str:
        passed = self.passed
        if passed is None:
            return "-"
        if not passed:
            return "FAIL" if self.value is not None else "FAIL (not measured)"
        return "pass (stretch)" if self.stretch_met else "pass"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": None if self.value is None else round(self.value, 4),
            "unit": self.unit,
            "target": self.target,
            "passed": self.passed,
            "stretch_met": self.stretch_met,
            "note": self.note,
            **({"detail": dict(self.detail)} if self.detail else {}),
        }


def _value(value: float | None) -> str:
    """Whole numbers without decimals, large ones rounded, small ones to three decimals."""
    if value is None:
        return "-"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def render_table(figures: Sequence[Figure]) -> str:
    """The table printed at the end: figure, target, measured, verdict, note."""
    rows = [("figure", "target", "measured", "result", "note")]
    for f in figures:
        rows.append((f.label, f.target, f"{_value(f.value)} {f.unit}".strip(), f.verdict, f.note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + ("  " + row[4] if row[4] else ""))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
