"""Whole rollouts: several real daemons in one process against the emulator, scaled timings.

Invariants are judged from the emulator's history (what the API server saw), never from what the
daemons believe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from rebootd.sim.emulator import Emulator
from rebootd.sim.harness import SimCluster, tokens_for
from rebootd.sim.invariants import (
    check_concurrency,
    check_cordons,
    check_evictions,
    disruption_intervals,
    reboot_counts,
)
from tests.fixtures.emulator import EmulatorFactory

FAST_ENV = {
    "REBOOTD_PERIOD": "200ms",
    "REBOOTD_LOCK_TTL": "2s",
    "REBOOTD_LOCK_RENEW_INTERVAL": "300ms",
    "REBOOTD_BOOT_TIMEOUT": "5s",
    "REBOOTD_RECOVERY_TIMEOUT": "5s",
    "REBOOTD_DRAIN_TIMEOUT": "5s",
    "REBOOTD_MIN_REBOOT_INTERVAL": "0s",
    "REBOOTD_LOCK_NAMESPACE": "kube-system",
}

ClusterFactory = Callable[..., Awaitable[SimCluster]]


@pytest.fixture
async def make_cluster(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    clusters: list[SimCluster] = []

    async def make(
        *,
        zones: Mapping[str, str],
        env: Mapping[str, str] | None = None,
        admin_cordoned: tuple[str, ...] = (),
        workloads: bool = True,
        **emulator_kwargs: Any,
    ) -> SimCluster:
        emu: Emulator = await emulator_factory(tokens=tokens_for(zones), **emulator_kwargs)
        for name, zone in zones.items():
            emu.add_node(name=name, zone=zone, unschedulable=name in admin_cordoned)
        if workloads:
            emu.add_workload(kind="Deployment", name="web", replicas=len(zones), pdb_max_unavailable=1)
            emu.add_workload(kind="StatefulSet", name="db", replicas=min(3, len(zones)), pdb_min_available=1)
            emu.add_workload(kind="DaemonSet", name="agent", namespace="kube-system")
        cluster = SimCluster(
            emulator=emu, workdir=tmp_path / f"c{len(clusters)}", env={**FAST_ENV, **(env or {})}, zones=zones
        )
        clusters.append(cluster)
        await cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            await cluster.stop()


def all_done(cluster: SimCluster, needed: set[str]) -> bool:
    counts = reboot_counts(cluster.emulator.history)
    state = cluster.lease_state()
    return (
        all(counts.get(n, 0) >= 1 for n in needed)
        and not state.holders
        and all(cluster.nodes[n].phase == "idle" for n in needed)
    )


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
    assert check_evictions(history).ok
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
