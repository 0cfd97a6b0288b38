"""`rebootd simulate` end to end: the shipped command in a subprocess, judged by its exit status,
its report and the JSON figures the issue asks for.

Every run has a hard limit (`--timeout` inside, a subprocess timeout outside). Scenario runs use
five nodes where the scenario does not need more, to keep the suite short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest

EXIT_OK, EXIT_FAILED, EXIT_HALTED = 0, 1, 3


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def explain(self) -> str:
        return f"exit {self.code} after {self.seconds:.1f}s\n{self.stdout[-6000:]}\n{self.stderr[-3000:]}"


def simulate(*args: str, limit: float = 240.0) -> Run:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "rebootd", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def assert_all_invariants(data: dict[str, Any]) -> None:
    bad = {name: check["detail"] for name, check in data["invariants"].items() if not check["ok"]}
    assert not bad, f"invariants failed: {bad}; reproduce: {data['command']}"
    assert set(data["invariants"]) == {
        "concurrency",
        "reboots",
        "cordons",
        "evictions",
        "window",
        "after_halt",
        "evictions_need_slot",
        "requests_after_halt",
        "requests_in_window",
        "reboots_granted",
        "one_reboot_per_need",
    }


def passing(*args: str, code: int = EXIT_OK) -> dict[str, Any]:
    """Run `rebootd simulate --json` with `args`; the exit status must be `code` and every invariant hold."""
    run = simulate(*args, "--json")
    assert run.code == code, run.explain()
    data = run.json()
    assert_all_invariants(data)
    return data


def test_simulate_without_arguments_completes_with_every_invariant_passing_and_prints_the_overhead() -> None:
    run = simulate()
    assert run.code == EXIT_OK, run.explain()
    assert run.stdout.count("  PASS  (") == 11, run.explain()
    assert "FAIL" not in run.stdout
    assert "overhead_ratio 1." in run.stdout
    assert "Rebooted: 10 of 10" in run.stdout
    assert "] node-000 draining" in run.stdout  # plain progress lines when stdout is not a terminal
    assert run.seconds < 60, f"the default simulation took {run.seconds:.1f}s (target: under 30 s)"


@pytest.fixture(scope="module")
def fifty_nodes() -> Run:
    return simulate(
        "--nodes", "50", "--concurrency", "5", "--zones", "5", "--zone-concurrency", "1", "--json"
    )


def test_fifty_nodes_in_five_zones_never_disrupt_more_than_five_nor_two_in_one_zone(fifty_nodes: Run) -> None:
    assert fifty_nodes.code == EXIT_OK, fifty_nodes.explain()  # fault-free: no halt is justified
    data = fifty_nodes.json()
    assert_all_invariants(data)
    assert data["nodes"] == 50
    assert data["status"] == "completed"
    assert data["rebooted"] == 50
    assert 1 <= data["max_disrupted"] <= 5
    assert data["max_disrupted_per_zone"]
    assert max(data["max_disrupted_per_zone"].values()) == 1
    assert {
        "rebooted",
        "rollout_seconds",
        "lower_bound_seconds",
        "overhead_ratio",
        "handoff_gap_seconds",
    } <= set(data)
    assert set(data["handoff_gap_seconds"]) == {"p50", "p99", "max"}
    assert data["api_requests"]["total"] == sum(data["api_requests"]["by_verb"].values()) > 0


def test_a_pod_crash_looping_after_the_reboot_halts_the_rollout_naming_it_and_nothing_reboots_after() -> None:
    data = passing("--scenario", "crashloop-after-reboot", "--nodes", "5", code=EXIT_HALTED)
    assert data["status"] == "halted"
    assert "CrashLoopBackOff" in data["halted"]
    assert "kube-system/agent-" in data["halted"]
    assert data["invariants"]["after_halt"]["ok"]
    assert data["scenario_expectations"]
    assert all(check["ok"] for check in data["scenario_expectations"]), data["scenario_expectations"]
    details = " ".join(check["detail"] for check in data["scenario_expectations"])
    assert "nothing rebooted after" in details
    assert "the halt reason names the broken pod" in details


def test_the_text_report_of_a_halt_has_its_own_line_and_exit_status_3() -> None:
    run = simulate("--scenario", "node-fails-to-boot", "--nodes", "4")
    assert run.code == EXIT_HALTED, run.explain()
    assert "\nHALTED at node-" in run.stdout
    assert "is not Ready and its rebootd stopped renewing" in run.stdout
    assert "Result: HALTED (" in run.stdout
    assert run.stdout.count("  PASS  (") == 11


def test_a_node_pinned_by_a_pdb_waits_while_the_others_reboot_and_goes_once_the_workload_is_scaled() -> None:
    data = passing("--scenario", "pdb-blocked", "--nodes", "5")
    pinned = next(t for t in data["timeline"] if t["node"] == "node-001")
    others = [t for t in data["timeline"] if t["node"] != "node-001"]
    assert all(pinned["reboot"] > t["released"] for t in others)  # it went last, after the scale-up
    assert any("scale statefulset ledger to 2" in action for action in data["scenario_actions"])


def test_nodes_cordoned_by_an_admin_are_rebooted_and_stay_cordoned() -> None:
    data = passing("--scenario", "admin-cordoned", "--nodes", "5")
    assert data["rebooted"] == 5
    assert "admin cordons kept" in data["invariants"]["cordons"]["detail"]


def test_with_a_simulated_clock_no_reboot_starts_before_the_window_opens() -> None:
    data = passing("--scenario", "window", "--nodes", "4")
    assert data["invariants"]["window"]["detail"] == "every reboot started inside the window"
    check = data["scenario_expectations"][-1]
    assert check["ok"], check
    assert "started at 01:56:00, before the window opened at 02:00:00" in check["detail"]


def test_five_rebootd_run_processes_configured_only_by_environment_complete_the_rollout() -> None:
    data = passing("--processes", "--nodes", "5")
    assert data["rebooted"] == 5
    assert data["status"] == "completed"


def test_daemons_in_worker_processes_complete_the_rollout() -> None:
    data = passing("--nodes", "6", "--workers", "2")
    assert data["rebooted"] == 6


def test_bad_arguments_are_a_usage_error() -> None:
    assert simulate("--nodes", "0").code == 2
    assert simulate("--scenario", "nope").code == 2
    run = simulate("--scenario", "node-fails-to-boot", "--nodes", "2")
    assert run.code == 2
    assert "needs at least" in run.stderr
