"""The simulation report and progress views: pure functions over a hand-written emulator history."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rebootd.emulator.history import HistoryRecord
from rebootd.lockstate import Holder, LockState
from rebootd.sim.live import LineProgress, LiveView, snapshot_of
from rebootd.sim.report import (
    PerNodeMinimum,
    RunFacts,
    build_report,
    handoff_gaps,
    lease_steps,
    percentile,
    render_text,
    rounds_needed,
    to_json,
)
from rebootd.sim.scenarios import ScenarioPlan
from rebootd.sim.simulate import EXIT_FAILED, EXIT_HALTED, Outcome, SimulationConfig

T0 = datetime(2025, 1, 6, 2, 0, tzinfo=UTC)
ZONES = {"n1": "a", "n2": "b"}
MINIMUM = PerNodeMinimum(drain=0.5, boot=1.0, recovery=0.25, release_delay=0.25)


def rec(at: float, event: str, kind: str, name: str, client: str = "kubelet", **extra: Any) -> HistoryRecord:
    return HistoryRecord(
        monotonic=at,
        time=T0 + timedelta(seconds=at),
        event=event,
        client=client,
        verb=extra.pop("verb", ""),
        kind=kind,
        namespace=extra.pop("namespace", ""),
        name=name,
        **extra,
    )


def lease(at: float, holders: dict[str, str], *, halted: dict[str, str] | None = None) -> HistoryRecord:
    state = LockState(
        holders={n: Holder(node=n, zone=ZONES[n], phase=p) for n, p in holders.items()}, halted=halted
    )
    return rec(
        at, "write", "Lease", "rebootd", client="rebootd@x", verb="update", namespace="kube-system",
        detail=state.to_annotation(),
    )  # fmt: skip


def cordon(at: float, node: str, *, on: bool, client: str | None = None) -> HistoryRecord:
    return rec(
        at, "write", "Node", node, client=client or f"rebootd@{node}", verb="patch",
        unschedulable_before=not on, unschedulable_after=on,
    )  # fmt: skip


def cycle(node: str, start: float) -> list[HistoryRecord]:
    """One clean reboot cycle of `node` taking 2.2 s from its slot to its release (its need
    recorded when the slot is taken)."""
    return [
        rec(start, "reboot_needed", "Node", node, client="simulator"),
        lease(start, {node: "acquiring"}),
        cordon(start + 0.05, node, on=True),
        lease(start + 0.6, {node: "rebooting"}),
        rec(start + 0.605, "reboot_requested", "Node", node, client=f"rebootd@{node}", verb="reboot"),
        rec(start + 0.61, "reboot_started", "Node", node),
        rec(start + 1.61, "node_ready", "Node", node),
        cordon(start + 1.7, node, on=False),
        lease(start + 1.9, {node: "releasing"}),
        lease(start + 2.2, {}),
    ]


def facts(history: list[HistoryRecord], **overrides: Any) -> RunFacts:
    values: dict[str, Any] = {
        "history": history,
        "final_nodes": [{"metadata": {"name": n}, "spec": {}} for n in ZONES],
        "zones": ZONES,
        "needed": list(ZONES),
        "admin_cordoned": [],
        "concurrency": 1,
        "zone_concurrency": 0,
        "window": None,
        "minimum": MINIMUM,
        "request_counts": {("rebootd@n1", "get"): 3, ("rebootd@n2", "update"): 4, ("admin", "patch"): 9},
        "origin": 0.0,
        "ended": 10.0,
    }
    values.update(overrides)
    return RunFacts(**values)


def test_a_clean_rollout_reports_timeline_gaps_lower_bound_and_passing_invariants() -> None:
    history = cycle("n1", 1.0) + cycle("n2", 3.25)
    report = build_report(facts(history))
    assert report.ok
    assert report.rebooted == 2
    assert report.lower_bound_seconds == 4.0  # 2 rounds x (0.5 + 1 + 0.25 + 0.25)
    assert report.rollout_seconds is not None
    assert abs(report.rollout_seconds - 4.45) < 1e-9  # first slot 1.0 -> last release 5.45
    assert report.overhead_ratio is not None
    assert abs(report.overhead_ratio - 4.45 / 4.0) < 1e-9
    assert [round(g, 3) for g in report.handoff_gaps] == [0.1]  # release 3.2 -> cordon 3.3
    n1 = report.timelines[0]
    times = (n1.acquired, n1.cordoned, n1.reboot, n1.released)
    assert [round(t or -1, 3) for t in times] == [1.0, 1.05, 1.61, 3.2]
    assert report.api_requests == {"get": 3, "update": 4}  # the daemons' requests only
    assert report.max_disrupted == 1


def test_two_nodes_disrupted_at_once_fail_the_concurrency_invariant_and_exit_1() -> None:
    history = sorted(cycle("n1", 1.0) + cycle("n2", 1.5), key=lambda r: r.monotonic)
    report = build_report(facts(history))
    assert not report.invariants["concurrency"].ok
    assert "at most 2 disrupted at once (limit 1)" in report.invariants["concurrency"].detail
    outcome = Outcome(
        config=SimulationConfig(),
        plan=ScenarioPlan(name="default", summary="", expect="complete", needed=tuple(ZONES)),
        report=report,
        status="completed",
    )
    assert outcome.exit_code == EXIT_FAILED
    assert "Reproduce: rebootd simulate --seed 0" in outcome.summary_line()


def test_a_node_disrupted_after_the_halt_fails_invariant_6_and_a_clean_halt_exits_3() -> None:
    halt = {"reason": "pod kube-system/agent-x is in CrashLoopBackOff", "node": "n1", "at": ""}
    clean = [*cycle("n1", 1.0)[:6], lease(3.0, {"n1": "recovering"}, halted=halt)]
    report = build_report(facts(clean))
    assert report.halted_reason == "n1: pod kube-system/agent-x is in CrashLoopBackOff"
    assert report.invariants["after_halt"].ok
    assert report.invariants["reboots"].ok  # n2 never rebooting is fine once halted
    assert report.overhead_ratio is None
    plan = ScenarioPlan(name="crashloop-after-reboot", summary="", expect="halted", needed=tuple(ZONES))
    outcome = Outcome(config=SimulationConfig(), plan=plan, report=report, status="halted")
    assert outcome.exit_code == EXIT_HALTED
    late = [*clean, cordon(4.0, "n2", on=True)]
    report = build_report(facts(late))
    assert not report.invariants["after_halt"].ok
    assert "n2" in report.invariants["after_halt"].detail


def test_a_halted_holder_left_cordoned_is_excused_but_any_other_cordon_is_not() -> None:
    halt = {"reason": "did not boot", "node": "n1", "at": ""}
    history = [
        lease(1.0, {"n1": "acquiring"}),
        cordon(1.1, "n1", on=True),
        lease(2.0, {"n1": "rebooting"}, halted=halt),
    ]
    nodes = [
        {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}},
        {"metadata": {"name": "n2"}, "spec": {}},
    ]
    assert build_report(facts(history, final_nodes=nodes)).invariants["cordons"].ok
    released = [*history[:2], lease(2.0, {})]
    assert not build_report(facts(released, final_nodes=nodes)).invariants["cordons"].ok


def test_rounds_follow_the_zone_limit_when_it_is_the_tighter_one() -> None:
    zones = {f"n{i}": ("a" if i < 4 else "b") for i in range(6)}
    assert rounds_needed(zones=zones, needed=zones, concurrency=5, zone_concurrency=0) == 2
    assert rounds_needed(zones=zones, needed=zones, concurrency=5, zone_concurrency=1) == 4


def test_gaps_match_each_release_with_the_next_disruption_and_admin_cordoned_nodes_start_at_their_slot() -> (
    None
):
    history = [
        lease(1.0, {"n1": "acquiring"}),
        cordon(1.1, "n1", on=True),
        lease(2.0, {}),
        lease(2.3, {"n2": "acquiring"}),  # n2 was cordoned by an admin: no cordon by rebootd
        lease(3.0, {}),
    ]
    steps = lease_steps(history, namespace="kube-system", name="rebootd")
    assert [round(g, 3) for g in handoff_gaps(steps, history)] == [0.3]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_text_and_json_reports_name_every_invariant_and_the_figures() -> None:
    report = build_report(facts(cycle("n1", 1.0) + cycle("n2", 3.25)))
    text = render_text(report, title="T", outcome="Result: completed")
    assert text.count("PASS") == 11
    assert "(11) no second reboot for one need" in text
    assert "overhead_ratio 1.113" in text
    assert "Hand-off gaps" in text
    data = to_json(report)
    assert {
        "nodes",
        "rebooted",
        "rollout_seconds",
        "lower_bound_seconds",
        "overhead_ratio",
        "max_disrupted",
    } <= set(data)
    assert set(data["handoff_gap_seconds"]) == {"p50", "p99", "max"}
    assert data["api_requests"] == {"total": 7, "by_verb": {"get": 3, "update": 4}}
    assert data["halted"] is None
    assert all(v["ok"] for v in data["invariants"].values())


def test_progress_views_show_done_holders_and_phases() -> None:
    snapshot = snapshot_of(
        elapsed=3.5,
        nodes=["n1", "n2", "n3"],
        needed=["n1", "n2", "n3"],
        holder_phases={"n2": "draining"},
        rebooted={"n1": 1},
        down=set(),
        halted=None,
    )
    assert snapshot.phases == {"n1": "done", "n2": "draining", "n3": "waiting"}
    assert snapshot.done == 1
    out = io.StringIO()
    LineProgress(out).update(snapshot)
    assert "n2 draining" in out.getvalue()
    assert "n3" not in out.getvalue()  # waiting from the start: no line
    live = io.StringIO()
    view = LiveView(live)
    view.update(snapshot)
    view.update(snapshot)
    assert "done 1/3" in live.getvalue()
    assert "holders: n2 (draining)" in live.getvalue()
    assert "\x1b[" in live.getvalue()  # the second frame redraws the first in place
