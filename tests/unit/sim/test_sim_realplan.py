"""Which scenarios run on a real control plane, the window around the wall clock, the workloads
as real objects, and following the lock from outside (rebootd.sim.realplan, rebootd.sim.follow)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rebootd.schedule import Window
from rebootd.settings import load_settings
from rebootd.sim.follow import LockFollower, due
from rebootd.sim.realplan import RUN_LABEL, WINDOW_LEAD, real_unsupported, window_env, workload_documents
from rebootd.sim.scenarios import SCENARIOS, Action, ScenarioPlan, Trigger, plan_scenario

ZONES = {f"node-{i:03d}": f"zone-{'abc'[i % 3]}" for i in range(5)}
EMULATOR_ONLY = {
    "chaos": "fault injector",
    "lost-response": "cannot hold a write nor lose its response",
    "unlock-race": "cannot hold a write nor lose its response",
    "lease-deleted-twice": "cannot hold a write nor lose its response",
    "stale-ready": "node-monitor grace",
}


def plan(name: str, concurrency: int = 1) -> ScenarioPlan:
    return plan_scenario(name, zones=ZONES, concurrency=concurrency, seed=0, lock_ttl=5.0, per_node=2.0)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_scenario_runs_on_the_real_plane_unless_it_needs_an_emulator_only_fault(name: str) -> None:
    why = real_unsupported(plan(name))
    if name in EMULATOR_ONLY:
        assert why is not None
        assert EMULATOR_ONLY[name] in why
    else:
        assert why is None


def test_the_real_window_opens_after_the_daemons_start_and_holds_three_lower_bounds() -> None:
    start = datetime(2026, 12, 6, 23, 59, 50, 400000, tzinfo=UTC)  # across midnight too
    env = window_env(start=start, rounds=5, per_node=2.0)
    window: Window = load_settings(environ={"REBOOTD_NODE_ID": "n", **env}).window
    opens = window.next_open(start)
    assert start + timedelta(seconds=WINDOW_LEAD) < opens <= start + timedelta(seconds=WINDOW_LEAD + 2)
    assert window.contains(opens + timedelta(seconds=3 * 5 * 2.0))
    assert not window.contains(start)


def test_every_pod_of_a_real_run_is_kept_to_its_nodes_and_a_pinned_workload_keeps_one_pod_per_node() -> None:
    docs = workload_documents(
        plan=plan("pdb-blocked"), namespace="apps-x", run="x", replicas=5, concurrency=1
    )
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "web"), ("DaemonSet", "agent"), ("StatefulSet", "ledger")} <= kinds
    assert ("PodDisruptionBudget", "ledger") in kinds
    for doc in docs:
        if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
            assert doc["spec"]["template"]["spec"]["nodeSelector"] == {RUN_LABEL: "x"}
    ledger = next(d for d in docs if d["metadata"]["name"] == "ledger" and d["kind"] == "StatefulSet")
    affinity = ledger["spec"]["template"]["spec"]["affinity"]
    preferred = affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert preferred["preference"]["matchExpressions"][0]["values"] == ["node-001"]
    assert affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "topologyKey"
    ] == ("kubernetes.io/hostname")


def lease(holders: dict[str, str], *, halted: dict[str, str] | None = None) -> dict[str, object]:
    state = {
        "version": 3,
        "holders": {
            n: {"node": n, "zone": "", "phase": p, "grant": "g", "seq": 1} for n, p in holders.items()
        },
        "halted": halted,
    }
    return {"metadata": {"annotations": {"rebootd.io/state": json.dumps(state)}}, "spec": {}}


def test_a_follower_orders_holders_by_first_slot_and_a_holder_trigger_fires_once_its_phase_is_reached() -> (
    None
):
    follower = LockFollower()
    action = Action(kind="fail_boot", trigger=Trigger(holder=2, phase="draining"))
    seen: dict[int, float] = {}

    def fired() -> str | None:
        return due(action, follower=follower, rebooted={}, needed=list(ZONES), elapsed=1.0, first_seen=seen)

    follower.observe(lease({"node-003": "draining"}), now=1.0)
    follower.observe(lease({"node-001": "acquiring"}), now=2.0)
    assert follower.order == ["node-003", "node-001"]
    assert "node-003" in follower.released
    assert fired() is None
    follower.observe(lease({"node-001": "rebooting"}), now=3.0)
    assert fired() == "node-001"
    follower.observe(lease({}, halted={"node": "node-001", "reason": "x"}), now=4.0)
    assert follower.halted_at == 4.0
