"""The eight named scenarios of issue 14, each one failure reproduced deterministically: the shipped
`rebootd simulate --scenario NAME --json` must end as the scenario expects (completed, or halted
for the reason it names) with every invariant and every scenario expectation holding.

These fail on the code before the daemon side of issue 14 (that is what they are for); the lead
enables this file in the default run once those fixes are merged. Four nodes each, to keep it short.
"""

from __future__ import annotations

from typing import Any

from tests.integration.test_simulate import EXIT_HALTED, EXIT_OK, simulate

NODES = ("--nodes", "4")


def outcome(scenario: str, *, code: int) -> dict[str, Any]:
    run = simulate("--scenario", scenario, *NODES, "--json", limit=180.0)
    assert run.code == code, run.explain()
    data: dict[str, Any] = run.json()
    broken = {name: check["detail"] for name, check in data["invariants"].items() if not check["ok"]}
    assert not broken, f"invariants broken: {broken}; reproduce: {data['command']}"
    failed = [check["detail"] for check in data["scenario_expectations"] if not check["ok"]]
    assert not failed, f"expectations failed: {failed}; reproduce: {data['command']}"
    assert data["scenario_expectations"], "a named scenario states what it expects"
    return data


def test_a_lost_cordon_response_is_still_our_cordon_and_is_undone() -> None:
    data = outcome("lost-response", code=EXIT_OK)
    assert any("lost the response of cordon #1" in action for action in data["scenario_actions"])
    assert data["rebooted"] == 4


def test_a_holder_frozen_past_the_ttl_evicts_and_reboots_nothing_without_its_slot() -> None:
    data = outcome("frozen-holder", code=EXIT_OK)
    assert any("freeze the first daemon" in action for action in data["scenario_actions"])
    assert data["max_disrupted"] == 1


def test_a_late_kubelet_never_causes_a_second_reboot() -> None:
    data = outcome("late-kubelet", code=EXIT_OK)
    assert data["rebooted"] == 4


def test_a_duplicate_daemon_with_its_own_pod_uid_cannot_undo_the_grant_of_the_other() -> None:
    data = outcome("duplicate-daemon", code=EXIT_OK)
    started = [a for a in data["scenario_actions"] if "second daemon for" in a and "started" in a]
    assert len(started) == 2


def test_unlock_without_force_never_frees_a_node_mid_drain_nor_races_its_cordon() -> None:
    data = outcome("unlock-race", code=EXIT_OK)
    assert any("held cordon #1" in action for action in data["scenario_actions"])
    assert data["max_disrupted"] == 1


def test_deleting_the_lease_twice_never_rebuilds_it_with_more_holders_than_the_limit() -> None:
    data = outcome("lease-deleted-twice", code=EXIT_OK)
    assert sum("Lease deleted" in action for action in data["scenario_actions"]) == 2
    assert data["max_disrupted"] == 1


def test_a_failed_reboot_halts_everything_in_flight_and_is_not_retried_in_a_loop() -> None:
    data = outcome("halt-in-flight", code=EXIT_HALTED)
    assert data["status"] == "halted"
    assert "node-000" in str(data["halted"])
    details = " ".join(check["detail"] for check in data["scenario_expectations"])
    assert "no reboot started after the halt" in details
    assert "ran at most 3 times" in details


def test_a_node_that_died_mid_drain_while_still_showing_ready_is_not_reclaimed_the_rollout_halts() -> None:
    data = outcome("stale-ready", code=EXIT_HALTED)
    assert data["status"] == "halted"
    assert str(data["halted"]).startswith("node-000: ")
    assert "its kubelet renewed no heartbeat" in data["halted"]
    assert data["max_disrupted"] == 1
    assert any("cut the power of node-000" in action for action in data["scenario_actions"])
