"""Whether a simulated rollout did what its scenario expects, beyond the safety invariants.

Rule: pure functions of the scenario's plan, the actions carried out (which node each hit), the
report, how the run ended and the run's history (the emulator's, or the one read from a real
kube-apiserver's audit log: the same records). A run must end as the scenario expects
(completed or halted); a run that stops must have a cause the scenario injected, and its halt
must name the node hit; nothing reboots after a node that failed; a node whose reboot command
always fails is not retried in a loop; a windowed run's first reboot waits for the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rebootd.emulator.history import HistoryRecord
from rebootd.schedule import Window
from rebootd.sim.report import Report
from rebootd.sim.scenarios import MAX_FAILED_REBOOT_REQUESTS, ScenarioPlan

# scenario actions that justify a halt
HALT_CAUSES = frozenset({"fail_boot", "break_pod", "fail_reboot", "power_loss"})
Check = tuple[bool, str]


def justified_halt(plan: ScenarioPlan, targets: Mapping[int, str]) -> str | None:
    """What the scenario did that justifies a halt (a node that never boots, a workload that
    never recovers), as carried out in this run; None when nothing did."""
    causes = [
        plan.actions[i].describe(node)
        for i, node in sorted(targets.items())
        if plan.actions[i].kind in HALT_CAUSES
    ]
    return "; ".join(causes) or None


def _victims(plan: ScenarioPlan, targets: Mapping[int, str], kinds: frozenset[str]) -> list[str]:
    return [targets[i] for i, a in enumerate(plan.actions) if a.kind in kinds and i in targets]


def progress_checks(
    *, plan: ScenarioPlan, targets: Mapping[int, str], report: Report, status: str
) -> list[Check]:
    """Progress, not only safety: a run that stops (halted or stuck) must have a justified
    cause, and the halt must name a node that cause hit; a run that completes must have
    rebooted every node that needed it."""
    if status == "completed":
        return [
            (
                report.rebooted == report.needed,
                f"every node that needed a reboot rebooted ({report.rebooted} of {report.needed})",
            )
        ]
    if status not in ("halted", "stuck"):
        return []
    cause = justified_halt(plan, targets)
    victims = set(_victims(plan, targets, HALT_CAUSES))
    if status == "halted":
        named = str((report.halted or {}).get("node", ""))
        ok = cause is not None and named in victims
        text = f"the halt at {named or '?'} ({report.halted_reason}) is justified"
    else:
        ok = cause is not None and set(report.stuck_holders) <= victims
        text = f"the stall behind {', '.join(report.stuck_holders)} is justified"
    return [(ok, f"{text}: {'by: ' + cause if cause else 'the scenario injected no cause for it'}")]


def window_check(*, started: datetime, window: Window, history: Sequence[HistoryRecord]) -> Check:
    """The daemons started before the window opened and the first reboot waited for it."""
    opens = window.next_open(started)
    reboots = [r.time for r in history if r.event == "reboot_started"]
    ok = started < opens and bool(reboots) and min(reboots) >= opens
    first = min(reboots).strftime("%H:%M:%S") if reboots else "none"
    return (
        ok,
        f"the clock started at {started.strftime('%H:%M:%S')}, before the window opened at "
        f"{opens.strftime('%H:%M:%S')}; the first reboot started at {first}",
    )


def scenario_checks(
    *,
    plan: ScenarioPlan,
    targets: Mapping[int, str],
    report: Report,
    status: str,
    history: Sequence[HistoryRecord],
    broken_pods: Mapping[str, str],
    halted_at: float | None,
    reboot_requests: Mapping[str, int],
    window: tuple[datetime, Window] | None = None,
) -> list[Check]:
    """Every expectation of the scenario (see the module rule). `halted_at` is on the history's
    `monotonic` scale; `window`: when the clock started and the window, for a windowed run."""
    checks: list[Check] = []
    if plan.expect == "complete":
        checks.append((status == "completed", f"the rollout completes (it {status})"))
    elif plan.expect == "halted":
        checks.append((status == "halted", f"the rollout halts (it {status})"))
    checks += progress_checks(plan=plan, targets=targets, report=report, status=status)
    if window is not None:
        checks.append(window_check(started=window[0], window=window[1], history=history))
    victims = _victims(plan, targets, frozenset({"break_pod", "fail_boot", "power_loss"}))
    if plan.expect == "halted" and victims:
        victim = victims[0]
        halted_node = (report.halted or {}).get("node")
        checks.append(
            (halted_node == victim, f"the halt names {victim} (it names {halted_node or 'nothing'})")
        )
        pod = broken_pods.get(victim)
        if pod is not None:
            reason = str((report.halted or {}).get("reason", ""))
            checks.append((pod in reason, f"the halt reason names the broken pod {pod}"))
        first = next(
            (
                r.monotonic
                for r in history
                if r.event in ("reboot_started", "power_lost") and r.name == victim
            ),
            None,
        )
        later = sorted(
            {
                r.name
                for r in history
                if r.event == "reboot_started" and first is not None and r.monotonic > first
            }
        )
        checks.append(
            (
                first is not None and not later,
                f"nothing rebooted after {victim}" + (f" (rebooted: {', '.join(later)})" if later else ""),
            )
        )
    failing = _victims(plan, targets, frozenset({"fail_reboot"}))
    if failing:
        victim = failing[0]
        halted_node = (report.halted or {}).get("node")
        after = sorted(
            {
                r.name
                for r in history
                if r.event == "reboot_started" and halted_at is not None and r.monotonic > halted_at
            }
        )
        requests = reboot_requests.get(victim, 0)
        checks += [
            (halted_node == victim, f"the halt names {victim} (it names {halted_node or 'nothing'})"),
            (
                halted_at is not None and not after,
                "no reboot started after the halt" + (f" (rebooted: {', '.join(after)})" if after else ""),
            ),
            (
                requests <= MAX_FAILED_REBOOT_REQUESTS,
                f"{victim}'s failing reboot command ran at most {MAX_FAILED_REBOOT_REQUESTS} times "
                f"(it ran {requests})",
            ),
        ]
    return checks
