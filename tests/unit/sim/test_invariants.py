"""The invariants judged from the emulator's history, on hand-made histories: each one passes a
history of good behaviour and fails the same history with one misstep."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from rebootd.emulator.history import BudgetFacts, HistoryRecord, PodFacts
from rebootd.lockstate import Holder, LockState
from rebootd.schedule import Window
from rebootd.sim.invariants import (
    check_evictions_hold_slot,
    check_no_request_after_halt,
    check_one_reboot_per_need,
    check_pdb_disruptions,
    check_reboots_granted,
    check_requests_in_window,
    daemon_node,
    lock_views,
)

T0 = datetime(2025, 1, 6, 2, 0, tzinfo=UTC)


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


def lease(
    at: float, holders: list[str], *, halted: str | None = None, client: str = "rebootd@n9"
) -> HistoryRecord:
    state = LockState(
        holders={n: Holder(node=n, zone="z", phase="draining") for n in holders},
        halted={"node": halted, "reason": "did not boot", "at": ""} if halted else None,
    )
    return rec(
        at, "write", "Lease", "rebootd", client=client, verb="update", namespace="kube-system",
        detail=state.to_annotation(),
    )  # fmt: skip


def lease_deleted(at: float) -> HistoryRecord:
    return rec(
        at, "write", "Lease", "rebootd", client="admin", verb="delete", namespace="kube-system", removed=True
    )


def requested(at: float, node: str) -> HistoryRecord:
    return rec(at, "reboot_requested", "Node", node, client=f"rebootd@{node}", verb="reboot")


def started(at: float, node: str) -> HistoryRecord:
    return rec(at, "reboot_started", "Node", node)


def needed(at: float, node: str) -> HistoryRecord:
    return rec(at, "reboot_needed", "Node", node, client="simulator")


def pod_facts(node: str, *, ready: bool = True, app: str = "ledger", owner: str = "StatefulSet") -> PodFacts:
    return PodFacts(
        uid=f"uid-{node}-{app}", node=node, labels={"app": app}, ready=ready, terminating=False,
        owner_kind=owner, owner=f"{owner}/{app}",
    )  # fmt: skip


def scale(at: float, name: str, replicas: int) -> HistoryRecord:
    return rec(
        at, "write", "StatefulSet", name, client="admin", verb="patch", namespace="default", replicas=replicas
    )  # fmt: skip


def pod_write(at: float, name: str, facts: PodFacts) -> HistoryRecord:
    return rec(at, "write", "Pod", name, client="kubelet", verb="update", namespace="default", pod=facts)


def pdb_write(at: float, name: str, *, app: str = "ledger", min_available: int | str | None = 1,
              max_unavailable: int | str | None = None) -> HistoryRecord:  # fmt: skip
    facts = BudgetFacts(
        namespace="default", name=name, selector={"matchLabels": {"app": app}}, min_available=min_available,
        max_unavailable=max_unavailable, disruptions_allowed=None, current_healthy=None, desired_healthy=None,
    )  # fmt: skip
    return rec(at, "write", "PodDisruptionBudget", name, client="disruption-controller", verb="update",
               namespace="default", budgets=(facts,))  # fmt: skip


def evicted(at: float, name: str, facts: PodFacts, *, client: str, event: str = "eviction") -> HistoryRecord:
    return rec(at, event, "Pod", name, client=client, verb="evict", namespace="default", pod=facts)


# --- (4) PDB-covered pods --------------------------------------------------------------------------


def test_evicting_the_only_ready_pod_of_a_min_available_1_budget_fails_4_and_a_second_replica_passes() -> (
    None
):
    one = pod_facts("n1")
    base = [pdb_write(0, "ledger"), pod_write(0.1, "ledger-0", one)]
    bad = check_pdb_disruptions([*base, evicted(1, "ledger-0", one, client="rebootd@n1")])
    assert not bad.ok
    assert "default/ledger-0 evicted by rebootd@n1" in bad.detail
    assert "PDB ledger allowed no disruption (1 healthy, 1 desired)" in bad.detail
    other = pod_facts("n2")
    good = check_pdb_disruptions(
        [*base, pod_write(0.2, "ledger-1", other), evicted(1, "ledger-0", one, client="rebootd@n1")]
    )
    assert good.ok, good.detail


def test_a_direct_delete_by_a_daemon_counts_as_taking_the_pod_down_and_one_by_a_controller_does_not() -> None:
    one = pod_facts("n1")
    base = [pdb_write(0, "ledger"), pod_write(0.1, "ledger-0", one)]
    assert not check_pdb_disruptions(
        [*base, evicted(1, "ledger-0", one, client="rebootd@n1", event="pod_delete")]
    ).ok
    assert check_pdb_disruptions(
        [*base, evicted(1, "ledger-0", one, client="replicaset-controller", event="pod_delete")]
    ).ok


def test_a_second_eviction_sees_the_first_pod_gone_from_the_budget() -> None:
    a, b = pod_facts("n1"), pod_facts("n1", app="ledger")
    history = [
        scale(0, "ledger", 2),
        pdb_write(0, "ledger", min_available=None, max_unavailable=1),
        pod_write(0.1, "ledger-0", a),
        pod_write(0.1, "ledger-1", b),
        evicted(1, "ledger-0", a, client="rebootd@n1"),
    ]
    assert check_pdb_disruptions(history).ok
    bad = check_pdb_disruptions([*history, evicted(1.1, "ledger-1", b, client="rebootd@n1")])
    assert not bad.ok
    assert "ledger-1" in bad.detail


def test_unready_pods_never_hold_a_place_and_percentages_round_up() -> None:
    sick = pod_facts("n1", ready=False)
    history = [
        pdb_write(0, "ledger"),
        pod_write(0.1, "ledger-0", sick),
        evicted(1, "ledger-0", sick, client="rebootd@n1"),
    ]
    assert check_pdb_disruptions(history).ok
    pods = [pod_facts(f"n{i}") for i in range(3)]
    writes = [pod_write(0.1, f"ledger-{i}", p) for i, p in enumerate(pods)]
    # 50% of 3 rounds up to 2 desired: one may go, the second may not
    history = [
        scale(0, "ledger", 3),
        pdb_write(0, "ledger", min_available="50%"),
        *writes,
        evicted(1, "ledger-0", pods[0], client="rebootd@n0"),
    ]
    assert check_pdb_disruptions(history).ok
    assert not check_pdb_disruptions([*history, evicted(2, "ledger-1", pods[1], client="rebootd@n1")]).ok


def test_a_reboot_request_takes_down_the_pods_left_on_the_node_except_daemonset_pods() -> None:
    one = pod_facts("n1")
    agent = pod_facts("n1", app="agent", owner="DaemonSet")
    history = [pdb_write(0, "ledger"), pdb_write(0, "agents", app="agent"), pod_write(0.1, "agent-x", agent)]
    assert check_pdb_disruptions([*history, requested(1, "n1")]).ok
    bad = check_pdb_disruptions([*history, pod_write(0.1, "ledger-0", one), requested(1, "n1")])
    assert not bad.ok
    assert "taken down by the reboot of n1" in bad.detail


# --- (7) and (10): slots ---------------------------------------------------------------------------


def test_an_eviction_by_a_daemon_without_a_slot_fails_7_refused_ones_included() -> None:
    pod = pod_facts("n1", app="web")
    ok = [lease(0, ["n1"]), evicted(1, "web-0", pod, client="rebootd@n1")]
    assert check_evictions_hold_slot(ok).ok
    for event in ("eviction", "eviction_refused", "pod_delete"):
        bad = check_evictions_hold_slot(
            [lease(0, ["n2"]), evicted(1, "web-0", pod, client="rebootd@n1", event=event)]
        )
        assert not bad.ok, event
        assert "while n1 held no slot (slot holders were n2)" in bad.detail


def test_an_eviction_after_the_lease_was_deleted_holds_no_slot() -> None:
    pod = pod_facts("n1", app="web")
    bad = check_evictions_hold_slot(
        [lease(0, ["n1"]), lease_deleted(0.5), evicted(1, "web-0", pod, client="rebootd@n1")]
    )
    assert not bad.ok
    assert "the lock Lease did not exist" in bad.detail
    again = [
        lease(0, ["n1"]),
        lease_deleted(0.5),
        lease(0.7, ["n1"]),
        evicted(1, "web-0", pod, client="rebootd@n1"),
    ]
    assert check_evictions_hold_slot(again).ok


def test_an_unreadable_lock_state_proves_no_slot() -> None:
    broken = rec(0, "write", "Lease", "rebootd", client="rebootd@n1", verb="update", namespace="kube-system",
                 detail='{"version": 99}')  # fmt: skip
    check = check_reboots_granted([broken, requested(1, "n1")])
    assert not check.ok
    assert "unreadable" in check.detail
    assert lock_views([broken])[0].unreadable


def test_a_reboot_request_without_a_slot_fails_10() -> None:
    assert check_reboots_granted([lease(0, ["n1"]), requested(1, "n1")]).ok
    bad = check_reboots_granted([lease(0, ["n1"]), lease(0.5, []), requested(1, "n1")])
    assert not bad.ok
    assert "rebootd@n1 asked to reboot n1 at 1.00: slot holders were nobody" in bad.detail


def test_daemon_identities_name_their_node() -> None:
    assert daemon_node("rebootd@node-003") == "node-003"
    assert daemon_node("rebootd@node-003#surge") == "node-003"
    assert daemon_node("admin") is None
    assert daemon_node("kubelet") is None


# --- (8) halt ------------------------------------------------------------------------------------


def test_a_reboot_request_after_a_halt_fails_8_until_an_operator_resumes() -> None:
    halted = [lease(0, ["n1"]), requested(0.5, "n1"), lease(1, ["n1"], halted="n1")]
    assert check_no_request_after_halt(halted).ok  # the request that failed came before the halt
    bad = check_no_request_after_halt([*halted, requested(2, "n1")])
    assert not bad.ok
    assert "after the halt at 1.00 (n1)" in bad.detail
    resumed = [*halted, lease(1.5, [], client="admin"), requested(2, "n2")]
    assert check_no_request_after_halt(resumed).ok


def test_a_halt_wiped_by_deleting_the_lease_and_a_daemons_rebuild_still_stands() -> None:
    history = [
        lease(0, ["n1"], halted="n1"),
        lease_deleted(1),
        lease(2, ["n2"], client="rebootd@n2"),
        requested(3, "n2"),
    ]
    bad = check_no_request_after_halt(history)
    assert not bad.ok
    assert "n2" in bad.detail


# --- (9) window ----------------------------------------------------------------------------------


def test_a_reboot_request_outside_the_window_fails_9() -> None:
    window = Window(days=frozenset(range(7)), start=time(2, 0), end=time(2, 10), tz=UTC)
    assert check_requests_in_window([requested(60, "n1")], window=window).ok
    bad = check_requests_in_window([requested(60, "n1"), requested(3600, "n2")], window=window)
    assert not bad.ok
    assert "rebootd@n2 asked to reboot n2 at 2025-01-06T03:00:00+00:00" in bad.detail
    assert check_requests_in_window([requested(3600, "n2")], window=None).ok


# --- (11) one reboot per need --------------------------------------------------------------------


def test_two_machine_reboots_for_one_need_fail_11_and_retried_requests_do_not() -> None:
    retried = [needed(0, "n1"), requested(1, "n1"), requested(2, "n1"), started(2, "n1")]
    assert check_one_reboot_per_need(retried).ok
    twice = [*retried, requested(5, "n1"), started(5, "n1")]
    bad = check_one_reboot_per_need(twice)
    assert not bad.ok
    assert "n1 rebooted a second time at 5.00 for one need" in bad.detail
    two_needs = [*retried, needed(4, "n1"), requested(5, "n1"), started(5, "n1")]
    assert check_one_reboot_per_need(two_needs).ok


def test_a_machine_reboot_with_no_need_fails_11() -> None:
    bad = check_one_reboot_per_need([needed(0, "n1"), started(1, "n2")])
    assert not bad.ok
    assert "n2 rebooted at 1.00 without a need" in bad.detail
