"""`rebootd simulate --html FILE`: one self-contained HTML page showing a rollout's timeline.

Rule: `render` is pure (a `Chart` in, a string out) and the page loads nothing: inline CSS, inline
SVG drawn here, and a few lines of inline script that only count what was drawn (the rows, into
`body[data-rows]` and the status line) so a headless browser can prove the chart rendered. The
page shows a Gantt chart of each node's phases (queued, draining, rebooting, recovering) with the
maintenance window shaded, the number of disrupted nodes over time, the hand-off gaps and the
invariants. `chart_of_outcome` builds the chart of any `rebootd simulate` run; the what-if builds
its own (`rebootd.sim.whatif.chart`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rebootd.settings import load_settings

if TYPE_CHECKING:
    from rebootd.sim.simulate import Outcome

PHASE_COLOURS = {
    "queued": "#cbd5e1",
    "draining": "#f59e0b",
    "rebooting": "#dc2626",
    "recovering": "#2563eb",
}
DISRUPTING = ("draining", "rebooting", "recovering")
WIDTH = 1200
LABEL = 150
RIGHT = 20


@dataclass(frozen=True)
class Bar:
    phase: str
    start: float
    end: float


@dataclass(frozen=True)
class Row:
    node: str
    zone: str
    bars: tuple[Bar, ...]
    note: str = ""  # why the node was never rebooted, if it was not


@dataclass(frozen=True)
class Chart:
    """What the page shows; times are seconds on one axis (`unit` says whose)."""

    title: str
    rows: list[Row]
    start: float
    end: float
    ticks: list[tuple[float, str]]
    unit: str = "s"
    subtitle: str = ""
    windows: list[tuple[float, float]] = field(default_factory=list)  # shaded spans
    breaks: list[tuple[float, str]] = field(default_factory=list)  # labelled separators
    gaps: list[float] = field(default_factory=list)  # hand-off gaps, seconds
    invariants: list[tuple[str, bool, str]] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def disrupted_steps(rows: Sequence[Row]) -> list[tuple[float, int]]:
    """(time, nodes disrupted from then on): draining, rebooting or recovering."""
    events: list[tuple[float, int]] = []
    for row in rows:
        spans = sorted((b.start, b.end) for b in row.bars if b.phase in DISRUPTING)
        if spans:
            events.append((spans[0][0], 1))
            events.append((max(e for _, e in spans), -1))
    events.sort(key=lambda e: (e[0], e[1]))
    out: list[tuple[float, int]] = []
    count = 0
    for t, delta in events:
        count += delta
        if out and out[-1][0] == t:
            out[-1] = (t, count)
        else:
            out.append((t, count))
    return out


def _x(t: float, chart: Chart) -> float:
    span = max(chart.end - chart.start, 1e-9)
    return LABEL + (WIDTH - LABEL - RIGHT) * (t - chart.start) / span


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _gantt(chart: Chart) -> str:
    row_h = max(3, min(16, 1400 // max(1, len(chart.rows))))
    top = 24
    height = top + row_h * len(chart.rows) + 8
    parts = [f'<svg id="gantt" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">']
    for a, b in chart.windows:
        x1, x2 = _x(a, chart), _x(b, chart)
        parts.append(
            f'<rect class="window" x="{x1:.1f}" y="{top}" width="{max(0.5, x2 - x1):.1f}" '
            f'height="{height - top}" fill="#dcfce7"><title>maintenance window</title></rect>'
        )
    for t, label in chart.ticks:
        x = _x(t, chart)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{top - 8}" font-size="10" text-anchor="middle">{_esc(label)}</text>'
        )
    for t, label in chart.breaks:
        x = _x(t, chart)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#111827" stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{x + 3:.1f}" y="10" font-size="10" font-weight="bold">{_esc(label)}</text>')
    font = max(6, min(11, row_h - 1))
    for i, row in enumerate(chart.rows):
        y = top + i * row_h
        colour = "#b91c1c" if row.note else "#111827"
        title = f"{row.node} ({row.zone})" + (f": {row.note}" if row.note else "")
        parts.append(f'<g class="row" data-node="{_esc(row.node)}"><title>{_esc(title)}</title>')
        if row_h >= 6:
            parts.append(
                f'<text x="{LABEL - 4}" y="{y + row_h - 1.5:.1f}" font-size="{font}" text-anchor="end" '
                f'fill="{colour}">{_esc(row.node)}</text>'
            )
        if row.note:
            parts.append(
                f'<rect x="{LABEL}" y="{y + 1}" width="{WIDTH - LABEL - RIGHT}" height="{max(1, row_h - 2)}" '
                f'fill="none" stroke="#b91c1c" stroke-width="0.5" stroke-dasharray="2 2"/>'
            )
        for bar in row.bars:
            x1, x2 = _x(bar.start, chart), _x(bar.end, chart)
            parts.append(
                f'<rect class="bar {bar.phase}" x="{x1:.2f}" y="{y + 0.5:.1f}" '
                f'width="{max(0.8, x2 - x1):.2f}" '
                f'height="{max(1, row_h - 1)}" fill="{PHASE_COLOURS.get(bar.phase, "#6b7280")}"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _disrupted(chart: Chart) -> str:
    steps = disrupted_steps(chart.rows)
    height, top = 120, 10
    peak = max((c for _, c in steps), default=0) or 1
    points = [f"{_x(chart.start, chart):.1f},{top + height}"]
    level = 0
    for t, count in steps:
        x = _x(t, chart)
        y_prev = top + height - height * level / peak
        y_new = top + height - height * count / peak
        points.append(f"{x:.1f},{y_prev:.1f}")
        points.append(f"{x:.1f},{y_new:.1f}")
        level = count
    points.append(f"{_x(chart.end, chart):.1f},{top + height - height * level / peak:.1f}")
    parts = [f'<svg id="disrupted" width="{WIDTH}" height="{height + top + 20}">']
    for a, b in chart.windows:
        x1, x2 = _x(a, chart), _x(b, chart)
        parts.append(
            f'<rect x="{x1:.1f}" y="{top}" width="{max(0.5, x2 - x1):.1f}" height="{height}" fill="#dcfce7"/>'
        )
    parts.append(f'<polyline fill="none" stroke="#dc2626" stroke-width="1.5" points="{" ".join(points)}"/>')
    parts.append(f'<text x="{LABEL - 6}" y="{top + 10}" font-size="11" text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{LABEL - 6}" y="{top + height}" font-size="11" text-anchor="end">0</text>')
    for t, label in chart.ticks:
        parts.append(
            f'<text x="{_x(t, chart):.1f}" y="{top + height + 14}" font-size="10" '
            f'text-anchor="middle">{_esc(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _gaps(chart: Chart) -> str:
    if not chart.gaps:
        return "<p>No hand-offs (one node at a time never waited for another).</p>"
    gaps = sorted(chart.gaps)
    p50 = gaps[len(gaps) // 2]
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    peak = max(gaps) or 1.0
    w = max(1.0, min(8.0, (WIDTH - LABEL) / len(chart.gaps)))
    bars = "".join(
        f'<rect x="{LABEL + i * w:.1f}" y="{60 - 50 * g / peak:.1f}" width="{max(0.5, w - 0.5):.1f}" '
        f'height="{max(0.5, 50 * g / peak):.1f}" fill="#6b7280"/>'
        for i, g in enumerate(chart.gaps)
    )
    return (
        f"<p>{len(gaps)} hand-offs: p50 {p50:.2f} {chart.unit}, p99 {p99:.2f} {chart.unit}, "
        f"max {peak:.2f} {chart.unit} (in order below)</p>"
        f'<svg id="gaps" width="{WIDTH}" height="64">{bars}</svg>'
    )


def render(chart: Chart) -> str:
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{p}</span>' for p, c in PHASE_COLOURS.items()
    )
    legend += '<span class="key"><i style="background:#dcfce7"></i>maintenance window</span>'
    invariants = "".join(
        f'<tr class="{"ok" if ok else "fail"}"><td>{"PASS" if ok else "FAIL"}</td><td>{_esc(name)}</td>'
        f"<td>{_esc(detail)}</td></tr>"
        for name, ok, detail in chart.invariants
    )
    summary = "".join(f"<li>{_esc(line)}</li>" for line in chart.summary)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(chart.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #111827; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }} h2 {{ font-size: 15px; margin: 18px 0 4px; }}
.sub {{ color: #4b5563; font-size: 13px; }}
.key {{ margin-right: 14px; font-size: 12px; }}
.key i {{ display: inline-block; width: 12px; height: 10px; margin-right: 4px; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td {{ padding: 2px 8px; border-bottom: 1px solid #e5e7eb; }}
tr.fail td {{ color: #b91c1c; font-weight: bold; }} tr.ok td:first-child {{ color: #15803d; }}
ul {{ font-size: 13px; }}
</style></head>
<body data-rows="">
<h1>{_esc(chart.title)}</h1><div class="sub">{_esc(chart.subtitle)}</div>
<p id="status" class="sub">rendering</p>
<ul>{summary}</ul>
<div>{legend}</div>
<h2>Nodes ({len(chart.rows)}), time in {_esc(chart.unit)}</h2>
{_gantt(chart)}
<h2>Disrupted nodes over time</h2>
{_disrupted(chart)}
<h2>Hand-off gaps</h2>
{_gaps(chart)}
<h2>Invariants</h2>
<table>{invariants}</table>
<script>
(function () {{
  var rows = document.querySelectorAll("#gantt g.row").length;
  var bars = document.querySelectorAll("#gantt rect.bar").length;
  document.body.setAttribute("data-rows", String(rows));
  document.getElementById("status").textContent = rows + " node rows, " + bars + " phase bars";
}})();
</script>
</body></html>
"""


# --- any `rebootd simulate` run ----------------------------------------------------------------------


def _ticks(start: float, end: float, *, count: int = 10) -> list[tuple[float, str]]:
    span = max(end - start, 1e-9)
    raw = span / count
    step = next(
        (s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if s >= raw), 3600.0
    )
    out: list[tuple[float, str]] = []
    t = 0.0
    while t <= end + 1e-9 and len(out) < 100:
        if t >= start:
            out.append((t, f"{t:g}"))
        t += step
    return out


def rows_of_outcome(outcome: Outcome) -> list[Row]:
    rows = []
    needed = set(outcome.plan.needed)
    for t in outcome.report.timelines:
        bars: list[Bar] = []
        end = outcome.report.rollout_seconds or 0.0
        if t.acquired is not None:
            bars.append(Bar("queued", 0.0, t.acquired))
            down = t.drained if t.drained is not None else t.reboot
            if down is not None:
                bars.append(Bar("draining", t.acquired, down))
                if t.ready is not None:
                    bars.append(Bar("rebooting", down, t.ready))
                    if t.released is not None:
                        bars.append(Bar("recovering", t.ready, t.released))
            elif t.released is not None:
                bars.append(Bar("draining", t.acquired, t.released))
        elif t.node in needed:
            bars.append(Bar("queued", 0.0, end))
        note = "" if t.reboot is not None or t.node not in needed else "never rebooted in this run"
        rows.append(Row(node=t.node, zone=t.zone, bars=tuple(bars), note=note))
    return rows


def _window_spans(outcome: Outcome, end: float) -> list[tuple[float, float]]:
    """The window as seconds of the run, for a run on a simulated calendar (scenario `window`):
    the clock started at the plan's start just before the daemons (set-up time not counted)."""
    plan = outcome.plan
    if plan.clock_start is None or not plan.env.get("REBOOTD_START_TIME"):
        return []
    window = load_settings(environ=dict(plan.env)).window
    spans: list[tuple[float, float]] = []
    t = 0.0
    step = max(end / 400, 0.01)
    inside_from: float | None = None
    while t <= end:
        now: datetime = plan.clock_start + timedelta(seconds=t * plan.clock_speed)
        inside = window.contains(now)
        if inside and inside_from is None:
            inside_from = t
        elif not inside and inside_from is not None:
            spans.append((inside_from, t))
            inside_from = None
        t += step
    if inside_from is not None:
        spans.append((inside_from, end))
    return spans


def chart_of_outcome(outcome: Outcome) -> Chart:
    report = outcome.report
    rows = rows_of_outcome(outcome)
    ends = [b.end for r in rows for b in r.bars]
    end = max([report.rollout_seconds or 0.0, *ends, 1.0])
    invariants = [(name, c.ok, c.detail) for name, c in report.invariants.items()]
    return Chart(
        title=f"rebootd simulate: {outcome.config.scenario}",
        subtitle=outcome.title().replace("\n", " | "),
        rows=rows,
        start=0.0,
        end=end,
        ticks=_ticks(0.0, end),
        unit="s",
        windows=_window_spans(outcome, end),
        gaps=list(report.handoff_gaps),
        invariants=invariants,
        summary=[outcome.summary_line(), f"{report.rebooted} of {report.needed} nodes rebooted"],
    )
