"""Whole rollouts: several real daemons in one process against the emulator, scaled timings.

Invariants are judged from the emulator's history (what the API server saw), never from what the
daemons believe.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rebootd.daemon import Daemon
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.kube import Kube
from rebootd.lockstate import STATE_ANNOTATION, Holder, LockState
from rebootd.sim.invariants import (
    check_concurrency,
    check_cordons,
    check_pdb_disruptions,
    disruption_intervals,
    reboot_counts,
)
from rebootd.sim.report import handoff_gaps, lease_steps
from tests.fixtures.cluster import ClusterFactory, all_done, max_holders_seen, wait_phase
from tests.fixtures.emulator import EmulatorFactory, make_kubectl
from tests.integration.test_gates import waiting_annotation


async def test_five_nodes_reboot_one_at_a_time_each_exactly_once(make_cluster: ClusterFactory) -> None:
    zones = {f"n{i}": f"z{i % 3}" for i in range(1, 6)}
    cluster = await make_cluster(zones=zones, admin_cordoned=("n5",))
    for node in cluster.nodes.values():
        node.require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=60), [
        (n.name, n.phase) for n in cluster.nodes.values()
    ]
    history = cluster.emulator.history
    assert reboot_counts(history) == dict.fromkeys(zones, 1)
    assert check_concurrency(history, zones=zones, concurrency=1, zone_concurrency=0).ok
    cordons = check_cordons(history, nodes=cluster.node_objects(), admin_cordoned=["n5"])
    assert cordons.ok, cordons.detail
    assert check_pdb_disruptions(history).ok
    n5 = cluster.emulator.get_object(kind="Node", name="n5")
    assert n5 is not None
    assert n5["spec"].get("unschedulable") is True  # the admin's cordon is kept
    intervals = disruption_intervals(history)
    assert all(i.end is not None for i in intervals)


async def test_zone_concurrency_never_disrupts_two_nodes_in_one_zone(make_cluster: ClusterFactory) -> None:
    zones = {f"n{i}": f"z{i % 3}" for i in range(6)}
    cluster = await make_cluster(
        zones=zones, env={"REBOOTD_CONCURRENCY": "2", "REBOOTD_ZONE_CONCURRENCY": "1"}
    )
    for node in cluster.nodes.values():
        node.require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=60)
    check = check_concurrency(cluster.emulator.history, zones=zones, concurrency=2, zone_concurrency=1)
    assert check.ok, check.detail
    assert reboot_counts(cluster.emulator.history) == dict.fromkeys(zones, 1)


@pytest.mark.parametrize("kill_at", ["after_cordon", "mid_drain", "before_reboot_request", "after_boot"])
async def test_a_daemon_killed_at_any_phase_resumes_and_completes(
    make_cluster: ClusterFactory, kill_at: str
) -> None:
    zones = {"n1": "z1", "n2": "z2", "n3": "z3"}
    env = {"REBOOTD_REBOOT_DELAY": "1s"} if kill_at == "before_reboot_request" else {}
    cluster = await make_cluster(zones=zones, env=env, workloads=False)
    emu = cluster.emulator
    # Slow pods on n1 so a drain takes about a second (grace 100 s x 0.01).
    emu.add_workload(kind="Deployment", name="slow", replicas=2, nodes=["n1"], termination_grace_seconds=100)
    for node in cluster.nodes.values():
        node.require_reboot()
    n1 = cluster.nodes["n1"]
    if kill_at == "after_cordon":
        assert await cluster.wait_until(
            lambda: bool((emu.get_object(kind="Node", name="n1") or {}).get("spec", {}).get("unschedulable")),
            within=30,
            poll=0.002,
        )
    elif kill_at == "mid_drain":
        assert await cluster.wait_until(
            lambda: any(r.event == "eviction" and "slow" in r.name for r in emu.history),
            within=30,
            poll=0.002,
        )
    elif kill_at == "before_reboot_request":
        await wait_phase(cluster, "n1", {"rebooting"})
    else:
        assert await cluster.wait_until(lambda: n1.starts >= 2, within=30, poll=0.002)
    await n1.restart()
    holders: list[int] = []
    assert await cluster.wait_until(
        lambda: max_holders_seen(cluster, holders) or all_done(cluster, set(zones)), within=60
    ), [(n.name, n.phase) for n in cluster.nodes.values()]
    assert max(holders) <= 1
    history = emu.history
    assert reboot_counts(history) == dict.fromkeys(zones, 1)
    check = check_concurrency(history, zones=zones, concurrency=1, zone_concurrency=0)
    assert check.ok, check.detail
    assert check_cordons(history, nodes=cluster.node_objects(), admin_cordoned=[]).ok
    assert not cluster.lease_state().holders  # no slot leaked


async def test_a_partitioned_holder_whose_node_is_up_loses_its_slot_to_the_next_node(
    make_cluster: ClusterFactory, emulator_factory: EmulatorFactory
) -> None:
    zones = {"n1": "z1", "n2": "z2"}
    faults = FaultInjector(seed=1, config=FaultConfig())
    cluster = await make_cluster(zones=zones, workloads=False, faults=faults)
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="slow", replicas=2, nodes=["n1"], termination_grace_seconds=300)
    cluster.nodes["n1"].require_reboot()
    await wait_phase(cluster, "n1", {"draining"})
    faults.partition(client="rebootd@n1", seconds=6.0)  # TTL is 2 s
    cluster.nodes["n2"].require_reboot()
    assert await cluster.wait_until(lambda: "n2" in cluster.lease_state().holders, within=20)
    n1 = emu.get_object(kind="Node", name="n1")
    assert n1 is not None
    assert not n1["spec"].get("unschedulable")  # the reclaimer put n1 back before n2 went on
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=60)
    check = check_concurrency(emu.history, zones=zones, concurrency=1, zone_concurrency=0)
    assert check.ok, check.detail
    assert reboot_counts(emu.history) == dict.fromkeys(zones, 1)


async def test_a_partitioned_holder_whose_node_is_down_halts_the_rollout(
    make_cluster: ClusterFactory,
) -> None:
    zones = {"n1": "z1", "n2": "z2"}
    faults = FaultInjector(seed=1, config=FaultConfig())
    cluster = await make_cluster(zones=zones, workloads=False, faults=faults)
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="slow", replicas=2, nodes=["n1"], termination_grace_seconds=300)
    cluster.nodes["n1"].require_reboot()
    await wait_phase(cluster, "n1", {"draining"})
    faults.partition(client="rebootd@n1", seconds=30.0)
    emu.set_node_ready(name="n1", ready=False)
    cluster.nodes["n2"].require_reboot()
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=20)
    halted = cluster.lease_state().halted
    assert halted is not None
    assert halted["node"] == "n1"
    # n2's daemon has seen the halt (it says so on its node) and did not go on.
    assert await cluster.wait_until(
        lambda: "rollout halted at n1" in waiting_annotation(cluster, "n2"), within=10
    )
    n2 = emu.get_object(kind="Node", name="n2")
    assert n2 is not None
    assert not n2["spec"].get("unschedulable")  # nobody reboots next
    assert reboot_counts(emu.history).get("n2", 0) == 0


async def test_a_drain_stuck_on_a_pdb_times_out_uncordons_frees_the_slot_and_others_proceed(
    make_cluster: ClusterFactory,
) -> None:
    """The PDB allows one disruption when n1 takes its slot (the preflight passes), but the evicted
    replica cannot be scheduled anywhere (n2, n3 are cordoned by their admin), so the budget drops
    to 0 and the second eviction is refused until the drain times out."""
    zones = {"n1": "z1", "n2": "z2", "n3": "z3"}
    cluster = await make_cluster(
        zones=zones, workloads=False, admin_cordoned=("n2", "n3"), env={"REBOOTD_DRAIN_TIMEOUT": "1s"}
    )
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="db", replicas=2, nodes=["n1"], pdb_min_available=1)
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(
        lambda: any(
            e.get("reason") == "RebootdDrainFailed" and e.get("type") == "Warning"
            for e in emu.list_objects(kind="Event", namespace="default")
        ),
        within=20,
    )
    # Put back and freed: uncordoned by us, no longer a holder, waiting with a reason.
    assert await cluster.wait_until(
        lambda: (
            not (emu.get_object(kind="Node", name="n1") or {}).get("spec", {}).get("unschedulable")
            and "n1" not in cluster.lease_state().holders
        ),
        within=5,
    )
    assert cluster.nodes["n1"].daemon is not None
    assert cluster.nodes["n1"].daemon.cycle is not None
    assert cluster.nodes["n1"].daemon.cycle.waiting_for is not None
    for name in ("n2", "n3"):
        cluster.nodes[name].require_reboot()
    assert await cluster.wait_until(lambda: reboot_counts(emu.history).keys() >= {"n2", "n3"}, within=30)

    def cordon_attempts() -> int:
        return sum(
            1
            for r in emu.history
            if r.kind == "Node" and r.name == "n1" and r.unschedulable_after and not r.unschedulable_before
        )

    assert await cluster.wait_until(lambda: cordon_attempts() >= 2, within=20)  # retried after back-off
    assert reboot_counts(emu.history).get("n1", 0) == 0
    check = check_concurrency(emu.history, zones=zones, concurrency=1, zone_concurrency=0)
    assert check.ok, check.detail
    for name in ("n2", "n3"):  # rebooted, and their admin's cordon kept
        assert (emu.get_object(kind="Node", name=name) or {}).get("spec", {}).get("unschedulable") is True


async def test_deleting_the_lease_mid_rollout_never_lets_holders_exceed_the_limit(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    zones = {f"n{i}": f"z{i}" for i in range(1, 5)}
    cluster = await make_cluster(zones=zones, workloads=False)
    emu = cluster.emulator
    for name in zones:
        emu.add_workload(
            kind="Deployment", name=f"app-{name}", replicas=1, nodes=[name], termination_grace_seconds=60
        )
    for node in cluster.nodes.values():
        node.require_reboot()
    kubectl = make_kubectl(emu, tmp_path / "kubectl")
    deleted = 0
    for _ in range(3):
        assert await cluster.wait_until(lambda: bool(cluster.lease_state().holders), within=30, poll=0.01)
        result = await kubectl.run("delete", "lease", "rebootd", "-n", "kube-system")
        deleted += result.returncode == 0
        await asyncio.sleep(0.3)
    assert deleted >= 1
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=90), [
        (n.name, n.phase) for n in cluster.nodes.values()
    ]
    check = check_concurrency(emu.history, zones=zones, concurrency=1, zone_concurrency=0)
    assert check.ok, check.detail
    assert reboot_counts(emu.history) == dict.fromkeys(zones, 1)


async def test_kubectl_get_lease_shows_the_holders(make_cluster: ClusterFactory, tmp_path: Path) -> None:
    zones = {"n1": "z1", "n2": "z2"}
    cluster = await make_cluster(zones=zones, workloads=False)
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="slow", replicas=2, nodes=["n1"], termination_grace_seconds=200)
    cluster.nodes["n1"].require_reboot()
    await wait_phase(cluster, "n1", {"draining"})
    kubectl = make_kubectl(emu, tmp_path / "kubectl")
    table = await kubectl("get", "lease", "rebootd", "-n", "kube-system")
    assert "n1" in table
    yaml_out = await kubectl("get", "lease", "rebootd", "-n", "kube-system", "-o", "yaml")
    assert "holderIdentity: n1" in yaml_out
    assert "rebootd.io/state" in yaml_out


async def sentinel_checks(daemon: Daemon, count: int, *, within: float = 30.0) -> bool:
    """Whether the daemon checks its sentinel `count` more times within `within` seconds (a spy
    on its checker, delegating to the real one): periods that really passed, however loaded."""
    checker = daemon.checker
    real = checker.reboot_required
    done = asyncio.Event()
    seen = 0

    async def counting() -> bool:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()
        return await real()

    # The checkers are frozen dataclasses: the spy goes onto this one instance, around the real call.
    object.__setattr__(checker, "reboot_required", counting)
    try:
        async with asyncio.timeout(within):
            await done.wait()
        return True
    except TimeoutError:
        return False
    finally:
        object.__delattr__(checker, "reboot_required")  # the class's own method again


async def test_an_idle_node_makes_no_api_requests_after_start_up(make_cluster: ClusterFactory) -> None:
    zones = {"n1": "z1"}
    cluster = await make_cluster(zones=zones, workloads=False, env={"REBOOTD_PERIOD": "50ms"})
    node = cluster.nodes["n1"]
    assert await cluster.wait_until(lambda: node.phase == "idle", within=10)
    daemon = node.daemon
    assert daemon is not None
    assert await sentinel_checks(daemon, 3)  # past start-up: the lock read, the first checks
    before_emulator = {k: v for k, v in cluster.emulator.request_counts.items() if k[0] == "rebootd@n1"}
    assert node._kube is not None
    before_facade = dict(node._kube.requests)
    assert await sentinel_checks(daemon, 40)  # 40 periods of an idle node
    after_emulator = {k: v for k, v in cluster.emulator.request_counts.items() if k[0] == "rebootd@n1"}
    assert node._kube is not None
    assert dict(node._kube.requests) == before_facade
    new = {k: after_emulator[k] - before_emulator.get(k, 0) for k in after_emulator}
    assert all(count == 0 for (client, verb), count in new.items() if verb != "watch"), new
    # Quiet because idle, not because dead: the same daemon is healthy and still answers a reboot.
    assert node.daemon is daemon
    healthy, detail = daemon.supervisor.health()
    assert healthy, detail
    node.require_reboot()
    assert await cluster.wait_until(lambda: reboot_counts(cluster.emulator.history).get("n1") == 1, within=30)


async def test_a_freed_slot_is_taken_and_the_next_node_cordoned_within_a_second(
    make_cluster: ClusterFactory,
) -> None:
    zones = {f"n{i}": f"z{i}" for i in range(1, 6)}
    cluster = await make_cluster(zones=zones, workloads=False)
    for node in cluster.nodes.values():
        node.require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=60)
    steps = lease_steps(cluster.emulator.history, namespace="kube-system", name="rebootd")
    gaps = handoff_gaps(steps, cluster.emulator.history)
    assert len(gaps) == len(zones) - 1  # every release but the last had a waiter to hand off to
    assert max(gaps) < 1.0, gaps


async def test_only_the_nodes_next_in_line_keep_listing_pods_and_pdbs_every_period(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """The PDB preflight (two lists) runs every period only for the waiters about to be served:
    with a slot taken and four nodes queued, the last in line lists nothing period after period."""
    zones = {f"n{i}": "z1" for i in range(1, 5)}
    cluster = await make_cluster(zones=zones, env={"REBOOTD_PERIOD": "100ms", "REBOOTD_LOCK_TTL": "60s"})
    occupied = LockState().with_holder(Holder(node="elsewhere", zone="z1", phase="draining"))
    kube = await Kube.connect(kubeconfig=cluster.emulator.write_kubeconfig(tmp_path / "admin-kubeconfig"))
    # The daemons create the Lease at their first step: write the occupied state into it.
    assert await cluster.wait_until(
        lambda: (
            cluster.emulator.get_object(kind="Lease", namespace="kube-system", name="rebootd") is not None
        ),
        within=10,
    )
    try:
        lease = await kube.get_lease(namespace="kube-system", name="rebootd")
        lease["metadata"]["annotations"][STATE_ANNOTATION] = occupied.to_annotation()
        lease["spec"]["holderIdentity"] = "elsewhere"
        await kube.replace_lease(namespace="kube-system", name="rebootd", body=lease)
    finally:
        await kube.close()
    for name in zones:
        cluster.nodes[name].require_reboot()

    # The Lease names the head of the queue (two nodes at concurrency 1); the others wait outside.
    # Every node says it waits for a slot once its one try to join the head is behind it.
    def waiting_for_slot(name: str) -> bool:
        node = cluster.emulator.get_object(kind="Node", name=name) or {}
        annotations = node.get("metadata", {}).get("annotations") or {}
        return str(annotations.get("rebootd.io/waiting-for", "")).startswith("slot:")

    assert await cluster.wait_until(
        lambda: all(map(waiting_for_slot, zones)) and len(cluster.lease_state().waiters) == 2, within=10
    )

    def lists() -> dict[str, int]:
        counts = cluster.emulator.request_counts
        return {name: counts.get((f"rebootd@{name}", "list"), 0) for name in zones}

    head = sorted(cluster.lease_state().waiters.values(), key=lambda w: (w.ticket, w.node))
    first = head[0].node
    last = max(set(zones) - {w.node for w in head})  # outside the head: not next in line
    # Every waiter past its first check (the first in line has listed twice since), then while
    # the first in line lists pods and PDBs for 10 periods, the last in line lists nothing.
    start = lists()
    assert await cluster.wait_until(lambda: lists()[first] >= start[first] + 4, within=30)
    before = lists()
    assert await cluster.wait_until(lambda: lists()[first] >= before[first] + 20, within=30)
    after = lists()
    assert after[last] - before[last] <= 2, (before, after)  # nothing period after period
    assert not cluster.lease_state().holders.keys() - {"elsewhere"}  # nobody jumped the slot
