"""Blockers and safety gates in whole rollouts: the recovery gate that halts on broken workloads,
the PDB preflight, the unavailable-node budget, boot timeout, reboot loops, blocking pods and a
real Prometheus. Judged from the emulator's history and the Lease, never the daemons' beliefs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from rebootd.kube import Kube
from rebootd.sim.harness import SimCluster
from rebootd.sim.invariants import check_concurrency, disruption_intervals, reboot_counts
from tests.fixtures.cluster import ClusterFactory, all_done
from tests.fixtures.prometheus import PrometheusFactory, firing_rule
from tests.integration.test_admin import rebootd


def cordoned_ever(cluster: SimCluster, node: str) -> bool:
    return any(
        r.kind == "Node" and r.name == node and r.unschedulable_after and not r.unschedulable_before
        for r in cluster.emulator.history
    )


def waiting_annotation(cluster: SimCluster, node: str) -> str:
    obj = cluster.emulator.get_object(kind="Node", name=node) or {}
    return str((obj.get("metadata", {}).get("annotations") or {}).get("rebootd.io/waiting-for", ""))


async def metric_value(cluster: SimCluster, node: str, name: str) -> str:
    daemon = cluster.nodes[node].daemon
    assert daemon is not None
    assert daemon.server is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{daemon.server.port}/metrics") as resp,
    ):
        text = await resp.text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_database_member_crashlooping_after_a_reboot_halts_the_rollout_until_fixed_and_resumed(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """The story behind rebootd: a database member stays in CrashLoopBackOff after its node's
    reboot; the next node must not be touched until an operator has fixed it and resumed."""
    zones = {"n1": "z1", "n2": "z2", "n3": "z3"}
    # Database pods live on local volumes: they stay on their node through the reboot.
    cluster = await make_cluster(
        zones=zones,
        workloads=False,
        env={"REBOOTD_DRAIN_POD_SELECTOR": "app!=db", "REBOOTD_RECOVERY_TIMEOUT": "2s"},
    )
    emu = cluster.emulator
    emu.add_workload(kind="StatefulSet", name="db", replicas=3, pdb_min_available=2)
    emu.add_workload(kind="Deployment", name="web", replicas=3, pdb_max_unavailable=1)
    emu.break_after_reboot(namespace="default", pod_prefix="db-")
    first = "n1"
    cluster.nodes[first].require_reboot()
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=30)
    for name in ("n2", "n3"):
        cluster.nodes[name].require_reboot()

    def seen_halt() -> bool:  # asked after the halt: whatever they wait for, they looked since
        return all(waiting_annotation(cluster, n) for n in ("n2", "n3"))

    halted = cluster.lease_state().halted
    assert halted is not None
    assert halted["node"] == first
    broken = [
        p["metadata"]["name"]
        for p in emu.list_objects(kind="Pod", namespace="default")
        if p["spec"].get("nodeName") == first and p["metadata"]["name"].startswith("db-")
    ]
    assert broken
    assert f"default/{broken[0]}" in halted["reason"]
    assert "CrashLoopBackOff" in halted["reason"]
    code, out, _ = await rebootd(cluster, tmp_path, "status")
    assert code == 0
    assert f"HALTED at node {first}" in out
    assert broken[0] in out
    assert await cluster.wait_until(seen_halt, within=30)  # both waiters saw the halt and held
    assert not cordoned_ever(cluster, "n2")
    assert not cordoned_ever(cluster, "n3")
    assert "rebootd_rollout_halted 1.0" in await metric_value(cluster, "n2", "rebootd_rollout_halted")
    warnings = [
        e
        for e in emu.list_objects(kind="Event", namespace="default")
        if e.get("reason") == "RebootdRecoveryFailed" and e.get("type") == "Warning"
    ]
    assert warnings
    # The operator repairs the database member and resumes: the rollout completes.
    emu.repair_pod(namespace="default", pod_prefix="db-")
    code, out, _ = await rebootd(cluster, tmp_path, "resume")
    assert "cleared the halt at node" in out
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=60), [
        (n.name, n.phase) for n in cluster.nodes.values()
    ]
    assert reboot_counts(emu.history) == dict.fromkeys(zones, 1)


async def test_a_node_whose_pod_a_pdb_protects_is_never_cordoned_while_the_others_finish(
    make_cluster: ClusterFactory,
) -> None:
    zones = {"n1": "z1", "n2": "z2", "n3": "z3"}
    cluster = await make_cluster(zones=zones, workloads=False)
    emu = cluster.emulator
    emu.add_workload(kind="StatefulSet", name="solo", replicas=1, nodes=["n1"], pdb_min_available=1)
    for node in cluster.nodes.values():
        node.require_reboot()
    assert await cluster.wait_until(lambda: reboot_counts(emu.history).keys() >= {"n2", "n3"}, within=60)
    assert await cluster.wait_until(
        lambda: "PodDisruptionBudget default/solo" in waiting_annotation(cluster, "n1"), within=10
    )
    assert not cordoned_ever(cluster, "n1")
    assert "n1" not in cluster.lease_state().holders
    assert 'reason="pdb"' in await metric_value(cluster, "n1", "rebootd_blocked")


async def test_max_unavailable_nodes_waits_while_an_unrelated_node_is_not_ready(
    make_cluster: ClusterFactory,
) -> None:
    zones = {"n1": "z1", "n2": "z2", "n3": "z3", "sick": "z1"}
    cluster = await make_cluster(zones=zones, workloads=False, env={"REBOOTD_MAX_UNAVAILABLE_NODES": "1"})
    emu = cluster.emulator
    emu.set_node_ready(name="sick", ready=False)
    for name in ("n1", "n2", "n3"):
        cluster.nodes[name].require_reboot()
    # Each waiter has seen its sentinel and says what holds it back (the unready node, or the queue).
    assert await cluster.wait_until(lambda: "sick" in waiting_annotation(cluster, "n1"), within=30)
    assert await cluster.wait_until(
        lambda: all(waiting_annotation(cluster, n) for n in ("n2", "n3")), within=30
    )
    assert not reboot_counts(emu.history)
    assert not any(cordoned_ever(cluster, n) for n in ("n1", "n2", "n3"))
    emu.set_node_ready(name="sick", ready=True)
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2", "n3"}), within=60)
    check = check_concurrency(emu.history, zones=zones, concurrency=1, zone_concurrency=0)
    assert check.ok, check.detail


async def test_a_node_that_never_comes_back_halts_the_rollout_after_boot_timeout(
    make_cluster: ClusterFactory,
) -> None:
    zones = {"n1": "z1", "n2": "z2"}
    cluster = await make_cluster(zones=zones, workloads=False, env={"REBOOTD_BOOT_TIMEOUT": "1s"})
    cluster.emulator.set_boot_failure(name="n1")
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(
        lambda: getattr(cluster.lease_state().holders.get("n1"), "phase", "") == "rebooting", within=30
    )
    cluster.nodes["n2"].require_reboot()
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=30)
    halted = cluster.lease_state().halted
    assert halted is not None
    assert halted["node"] == "n1"
    assert "not Ready" in halted["reason"]
    assert await cluster.wait_until(
        lambda: "rollout halted at n1" in waiting_annotation(cluster, "n2"), within=30
    )
    assert not cordoned_ever(cluster, "n2")
    assert reboot_counts(cluster.emulator.history) == {"n1": 1}


async def test_a_node_asking_again_soon_after_its_reboot_waits_for_the_minimum_interval(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(
        zones={"n1": "z1"}, workloads=False, env={"REBOOTD_MIN_REBOOT_INTERVAL": "1h"}
    )
    node = cluster.nodes["n1"]
    node.require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1"}), within=30)
    node.require_reboot()  # the update failed and asks again
    assert await cluster.wait_until(lambda: "reboot_loop" in waiting_annotation(cluster, "n1"), within=10)
    await asyncio.sleep(1.0)
    assert reboot_counts(cluster.emulator.history) == {"n1": 1}


async def test_a_blocking_pod_on_the_node_holds_its_reboot_back_until_it_is_gone(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z2"}, workloads=False, env={"REBOOTD_BLOCKING_POD_SELECTOR": "runtime=long"}
    )
    emu = cluster.emulator
    emu.add_pod(name="batch", node="n1", labels={"runtime": "long"})
    for node in cluster.nodes.values():
        node.require_reboot()
    assert await cluster.wait_until(lambda: reboot_counts(emu.history).get("n2") == 1, within=30)
    assert await cluster.wait_until(lambda: "default/batch" in waiting_annotation(cluster, "n1"), within=10)
    assert not cordoned_ever(cluster, "n1")
    admin = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "admin-kubeconfig"))
    async with admin:
        await admin.delete_pod(namespace="default", name="batch", grace_period_seconds=0)
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2"}), within=30)


async def test_a_firing_prometheus_alert_blocks_and_every_waiting_reason_is_visible(
    make_cluster: ClusterFactory, prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    prometheus = prometheus_factory.start(rules=[firing_rule("DiskPressure")])
    cluster = await make_cluster(
        zones={"n1": "z1"}, workloads=False, env={"REBOOTD_PROMETHEUS_URL": prometheus.url}
    )
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(
        lambda: "prometheus_alerts" in waiting_annotation(cluster, "n1"), within=10
    )
    assert "DiskPressure" in waiting_annotation(cluster, "n1")
    gauge = await metric_value(cluster, "n1", "rebootd_blocked")
    assert 'rebootd_blocked{node="n1",reason="prometheus_alerts"} 1.0' in gauge
    code, out, _ = await rebootd(cluster, tmp_path, "status", "--output", "json")
    assert code == 0
    pending = json.loads(out)["reboot_required"]
    assert pending[0]["node"] == "n1"
    assert "DiskPressure" in pending[0]["waiting_for"]
    prometheus.stop()  # unreachable blocks too (fail safe)
    assert await cluster.wait_until(
        lambda: "prometheus_unreachable" in waiting_annotation(cluster, "n1"), within=10
    )
    assert not reboot_counts(cluster.emulator.history)
    assert not disruption_intervals(cluster.emulator.history)


async def test_notifications_of_a_rollout_arrive_and_a_hung_endpoint_does_not_slow_it(
    make_cluster: ClusterFactory,
) -> None:
    """Each node posts drain, reboot and uncordon messages to a real JSON endpoint on loopback. A
    second URL that accepts connections and never answers (10 s notify timeout) is configured
    too: if the cycle waited for it, three nodes would need well over 30 s."""
    received: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(Exception):
            await reader.read(-1)

    hung = await asyncio.start_server(swallow, "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    try:
        zones = {"n1": "z1", "n2": "z2", "n3": "z3"}
        urls = f"json://127.0.0.1:{port}/hook json://127.0.0.1:{hung_port}/never"
        cluster = await make_cluster(zones=zones, workloads=False, env={"REBOOTD_NOTIFY_URL": urls})
        started = asyncio.get_running_loop().time()
        for node in cluster.nodes.values():
            node.require_reboot()
        assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=80)
        took = asyncio.get_running_loop().time() - started
        # Three hung 10 s deliveries per node would be 90 s if awaited; a few seconds otherwise, and
        # a loaded machine must not fail this (that send() never waits: tests/integration/test_notify.py).
        assert took < 60, took
        assert await cluster.wait_until(lambda: len(received) >= 9, within=20)
        bodies = [m.get("message", "") for m in received]
        for name in zones:
            assert f"Draining node {name}" in bodies
            assert f"Rebooting node {name}" in bodies
            assert f"Node {name} rebooted and uncordoned" in bodies
    finally:
        hung.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        await hung.wait_closed()
        await runner.cleanup()
