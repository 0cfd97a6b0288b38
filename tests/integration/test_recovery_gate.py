"""The recovery gate for the workloads a drain evicted: the slot is not given back, and the rollout
halts naming the workload, while an evicted pod's controller is short of the Ready pods it had
before the drain (its replacement cannot pull its image, or cannot be scheduled anywhere) or a
budget that covered an evicted pod stays below its desired health. Nothing on the rebooted node
itself is broken in these tests, so only the checks on evicted workloads can catch them.

Judged from the Lease and the emulator's history (who was cordoned, who rebooted)."""

from __future__ import annotations

from collections.abc import Callable

from rebootd.sim.harness import SimCluster
from rebootd.sim.invariants import reboot_counts
from tests.fixtures.cluster import ClusterFactory
from tests.integration.test_gates import cordoned_ever, waiting_annotation

ZONES = {"n1": "z1", "n2": "z2", "n3": "z3"}
ENV = {"REBOOTD_RECOVERY_TIMEOUT": "2s"}
HALT_WITHIN = 30.0  # seconds: reboot, boot, 2 s recovery timeout, on a loaded 2-core machine


async def halt_of_first_node(cluster: SimCluster) -> str:
    """n1 reboots first (n2 and n3 wait behind it); returns the halt reason, once every waiter has
    seen the halt, after checking that nobody else was disrupted."""
    halted = await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=HALT_WITHIN)
    state = cluster.lease_state()
    assert halted, f"no halt; rebooted {reboot_counts(cluster.emulator.history)}, holders {state.holders}"
    assert state.halted is not None
    assert state.halted["node"] == "n1"
    # Each waiter publishes why it waits (the halt, or a budget the broken workload holds at 0):
    # both have looked at the cluster since n1's reboot and did not go ahead.
    assert await cluster.wait_until(
        lambda: all(waiting_annotation(cluster, n) for n in ("n2", "n3")),
        within=10,
    ), {n: waiting_annotation(cluster, n) for n in ("n2", "n3")}
    assert reboot_counts(cluster.emulator.history) == {"n1": 1}
    assert not cordoned_ever(cluster, "n2")
    assert not cordoned_ever(cluster, "n3")
    return str(state.halted["reason"])


async def start(make_cluster: ClusterFactory) -> SimCluster:
    return await make_cluster(zones=ZONES, workloads=False, env=ENV)


async def require_reboots(cluster: SimCluster, *, then: Callable[[], None] = lambda: None) -> None:
    """n1 needs a reboot; once it reboots (its drain is over), `then()`, and n2 and n3 need one."""
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(
        lambda: reboot_counts(cluster.emulator.history).get("n1") == 1, within=HALT_WITHIN
    )
    then()
    for name in ("n2", "n3"):
        cluster.nodes[name].require_reboot()


async def test_a_deployment_whose_evicted_pod_cannot_pull_its_image_elsewhere_halts_naming_it(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await start(make_cluster)
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="web", replicas=3, nodes=["n1", "n2", "n3"])
    emu.fail_image_pulls(namespace="default", pod_prefix="web-")  # new pods only: the 3 run
    await require_reboots(cluster)
    reason = await halt_of_first_node(cluster)
    assert "ReplicaSet default/web-" in reason, reason
    assert "has 2 Ready pods, had 3 before the drain" in reason, reason
    assert "ImagePullBackOff" in reason, reason


async def test_a_statefulset_whose_evicted_pod_cannot_be_scheduled_anywhere_halts_naming_it(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await start(make_cluster)
    emu = cluster.emulator
    # Scheduled on n1 while it had the label; no node has it any more, so db-0 cannot come back.
    emu.add_workload(
        kind="StatefulSet", name="db", replicas=1, nodes=["n1"], node_selector={"pool": "legacy"}
    )
    await require_reboots(cluster)
    reason = await halt_of_first_node(cluster)
    assert "StatefulSet default/db has 0 Ready pods, had 1 before the drain" in reason, reason
    pending = emu.get_object(kind="Pod", namespace="default", name="db-0")
    assert pending is not None
    assert not pending["spec"].get("nodeName")  # still unscheduled: the gate was right


async def test_a_budget_that_covered_an_evicted_pod_and_stays_unhealthy_halts_naming_it(
    make_cluster: ClusterFactory,
) -> None:
    """The evicted web pod comes back elsewhere (its controller is whole again), but the budget
    that covered it also covers cache, whose two pods went unready meanwhile: 3 healthy, needs 4."""
    cluster = await start(make_cluster)
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="web", replicas=3, nodes=["n1", "n2", "n3"])
    emu.add_workload(kind="StatefulSet", name="cache", replicas=2, nodes=["n2"])
    emu.add_pdb(
        name="frontend",
        selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "cache"]}]},
        min_available=4,
    )

    def break_cache() -> None:
        for name in ("cache-0", "cache-1"):
            emu.set_pod_ready(namespace="default", name=name, ready=False)

    # The drain is over once n1 reboots; only then does cache break (before, the eviction would
    # have been refused by the budget, which is the PDB preflight's business, not this gate's).
    await require_reboots(cluster, then=break_cache)
    reason = await halt_of_first_node(cluster)
    assert reason.endswith(": PodDisruptionBudget default/frontend has 3 healthy pods, needs 4"), reason


async def test_evicted_workloads_that_come_back_ready_elsewhere_let_the_rollout_go_on(
    make_cluster: ClusterFactory,
) -> None:
    """The same workloads, nothing broken: every node reboots once and nothing halts (the gate
    holds only for real trouble)."""
    cluster = await start(make_cluster)
    emu = cluster.emulator
    emu.add_workload(kind="Deployment", name="web", replicas=3, nodes=["n1", "n2", "n3"])
    emu.add_workload(kind="StatefulSet", name="db", replicas=1, nodes=["n1"])
    emu.add_pdb(name="frontend", selector={"matchLabels": {"app": "web"}}, min_available=2)
    await require_reboots(cluster)
    assert await cluster.wait_until(
        lambda: reboot_counts(emu.history) == dict.fromkeys(ZONES, 1) and not cluster.lease_state().holders,
        within=60,
    ), (reboot_counts(emu.history), cluster.lease_state().holders)
    assert cluster.lease_state().halted is None
