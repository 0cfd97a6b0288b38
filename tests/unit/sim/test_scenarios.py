"""Scenario plans: the named scenarios of issue 14 are fixed plans (the seed changes nothing), the
chaos plan is a function of its seed and draws the new fault kinds too."""

from __future__ import annotations

from collections import Counter

import pytest

from rebootd.sim.scenarios import NAMED, SCENARIOS, ScenarioError, ScenarioPlan, plan_scenario

ZONES = {f"node-{i:03d}": f"zone-{'abc'[i % 3]}" for i in range(6)}


def plan(name: str, *, seed: int = 0, concurrency: int = 1) -> ScenarioPlan:
    return plan_scenario(name, zones=ZONES, concurrency=concurrency, seed=seed, lock_ttl=3.5, per_node=2.0)


@pytest.mark.parametrize("name", NAMED)
def test_a_named_scenario_is_described_and_the_same_plan_for_every_seed(name: str) -> None:
    assert SCENARIOS[name]
    assert plan(name, seed=0) == plan(name, seed=12345)
    assert plan(name).expect in ("complete", "halted")
    assert plan(name).needed == tuple(ZONES)


@pytest.mark.parametrize("name", NAMED)
def test_a_named_scenario_needs_nodes_left_waiting(name: str) -> None:
    with pytest.raises(ScenarioError, match="at least 3 nodes"):
        plan_scenario(name, zones={"a": "z", "b": "z"}, concurrency=1, seed=0, lock_ttl=3.5, per_node=2.0)


def test_deferred_nodes_get_their_reboot_required_file_from_an_action() -> None:
    for name in NAMED:
        p = plan(name)
        released = {n for a in p.actions if a.kind == "require_reboot" for n in a.nodes}
        assert set(p.deferred) <= released, name
        assert "node-000" not in p.deferred  # the first node goes first


def test_unlock_race_needs_two_admin_cordoned_holders_and_others() -> None:
    with pytest.raises(ScenarioError, match="at least 4 nodes"):
        plan_scenario(
            "unlock-race",
            zones=dict(list(ZONES.items())[:3]),
            concurrency=1,
            seed=0,
            lock_ttl=3.5,
            per_node=2.0,
        )


def test_each_failure_is_set_up_by_its_own_fault() -> None:
    assert plan("lost-response").scripts[0].lose == "lost_reset"
    frozen = plan("frozen-holder").actions[0]
    assert (frozen.kind, frozen.verb, frozen.nth, frozen.seconds) == ("freeze", "evict", 2, 7.0)
    late = plan("late-kubelet")
    assert late.kubelet_post_delay > 0
    assert late.node_monitor_grace > 1.0 + late.kubelet_post_delay  # longer than boot + late post
    assert [a.kind for a in plan("duplicate-daemon").actions].count("duplicate_daemon") == 2
    race = plan("unlock-race")
    assert race.admin_cordoned == ("node-000", "node-001")
    assert race.scripts[0].hold_for == "unlock"
    twice = plan("lease-deleted-twice")
    assert (twice.concurrency, twice.scripts[0].hold_for, twice.scripts[0].then) == (
        1,
        "delete_lease",
        "delete_lease",
    )
    halt = plan("halt-in-flight")
    assert halt.concurrency == 2
    assert halt.expect == "halted"
    assert any(a.kind == "fail_reboot" and a.node == "node-000" for a in halt.actions)
    stale = plan("stale-ready")
    outage = next(a for a in stale.actions if a.kind == "power_loss")
    assert stale.expect == "halted"
    assert outage.seconds > 3 * 3.5  # down well past the TTL and a heartbeat lease
    assert stale.node_monitor_grace > outage.seconds  # its Node shows Ready all through


def test_the_chaos_plan_is_a_function_of_its_seed() -> None:
    assert plan("chaos", seed=7) == plan("chaos", seed=7)
    assert plan("chaos", seed=7) != plan("chaos", seed=8)


def test_the_chaos_plans_draw_the_new_fault_kinds() -> None:
    kinds: Counter[str] = Counter()
    late = lost = 0
    for seed in range(200):
        p = plan("chaos", seed=seed)
        kinds.update(a.kind for a in p.actions)
        late += p.kubelet_post_delay > 0
        assert p.faults is not None
        lost += p.faults.lost_reset + p.faults.lost_504 > 0
    for kind in (
        "freeze",
        "duplicate_daemon",
        "delete_lease_twice",
        "unlock",
        "unlock_force",
        "pause",
        "power_loss",
    ):
        assert kinds[kind] > 0, kind
    assert kinds["resume"] == kinds["pause"]  # a paused rollout is resumed
    assert 20 < late < 120
    assert lost > 190
