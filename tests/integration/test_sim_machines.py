"""The simulated machines behind the daemons: each has its own host boot id file, each daemon start
its own pod uid, a duplicate daemon another one, and a frozen daemon sends nothing until it thaws."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from rebootd.sim.harness import SimNode
from rebootd.sim.invariants import reboot_counts
from tests.fixtures.cluster import ClusterFactory, all_done


def boot_id_in(path: Path) -> str:
    return path.read_text().strip()


async def test_each_machine_has_its_own_boot_id_file_renewed_by_its_reboot(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z1"})
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    first = boot_id_in(n1.boot_id_file)
    assert first == cluster.emulator.machine_boot_id(name="n1")
    assert first != boot_id_in(n2.boot_id_file)
    assert n1.settings().boot_id_file == n1.boot_id_file
    uid_before = n1.pod_uid
    assert uid_before
    assert uid_before != n2.pod_uid
    n1.require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1"}), within=30)
    assert reboot_counts(cluster.emulator.history)["n1"] == 1
    second = boot_id_in(n1.boot_id_file)
    assert second != first
    node = cluster.emulator.get_object(kind="Node", name="n1")
    assert node is not None
    assert node["status"]["nodeInfo"]["bootID"] == second  # what the kubelet posted for this boot
    assert n1.starts == 2
    assert n1.pod_uid == uid_before != ""  # the kubelet restarts the containers of the same Pod
    assert n1.settings().pod_uid == n1.pod_uid


async def test_a_frozen_daemon_sends_nothing_until_it_thaws(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z1"})
    node: SimNode = cluster.nodes["n1"]
    node.freeze(seconds=1.5, verb="evict", nth=1)
    counts = cluster.emulator.request_counts

    def sent() -> int:
        return sum(n for (client, _), n in counts.items() if client == "rebootd@n1")

    def evictions() -> int:
        return sum(1 for r in cluster.emulator.history if r.event == "eviction" and r.client == "rebootd@n1")

    node.require_reboot()
    assert await cluster.wait_until(lambda: node.frozen == 1, within=10)
    frozen_at = sent()
    await asyncio.sleep(1.0)
    assert evictions() == 0  # stopped right before its first eviction
    assert sent() == frozen_at  # and nothing else of it goes out either
    assert await cluster.wait_until(lambda: evictions() > 0, within=5)  # thawed, it goes on
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1"}), within=30)


async def test_a_duplicate_daemon_runs_beside_the_first_with_its_own_pod_uid(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(zones={"n1": "z1"}, workloads=False)
    node = cluster.nodes["n1"]
    uid = await node.start_duplicate()
    assert uid not in ("", node.pod_uid)
    before = sum(n for (client, _), n in cluster.emulator.request_counts.items() if client == "rebootd@n1")
    assert await cluster.wait_until(
        lambda: (
            sum(n for (c, _), n in cluster.emulator.request_counts.items() if c == "rebootd@n1") > before + 2
        ),
        within=10,
    )
    await node.kill()  # the machine goes down: both daemons die
    assert not node.running


async def test_a_kubelet_renews_its_heartbeat_lease_only_while_its_machine_is_up(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z1"})
    emu = cluster.emulator
    emu.cluster.timing = replace(emu.cluster.timing, node_monitor_grace=30.0)  # Ready outlives the machine

    def beat(node: str) -> str:
        lease = emu.get_object(kind="Lease", namespace="kube-node-lease", name=node)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == node
        return str(lease["metadata"]["resourceVersion"])

    first = beat("n1")
    assert await cluster.wait_until(lambda: beat("n1") != first, within=5)  # renewed while up
    emu.power_loss(name="n1", seconds=60.0)
    assert any(r.event == "power_lost" and r.name == "n1" for r in emu.history)
    node = emu.get_object(kind="Node", name="n1")
    assert node is not None
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    stood, other = beat("n1"), beat("n2")
    # three renewal intervals: n2's kubelet renews, the dead machine's Lease stands still
    assert await cluster.wait_until(lambda: beat("n2") != other, within=5)
    await asyncio.sleep(3 * emu.timing.heartbeat_interval)
    assert beat("n1") == stood
