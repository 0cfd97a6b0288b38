"""The workload controllers a drain depends on: evicted pods come back elsewhere, DaemonSet pods stay."""

from __future__ import annotations

import asyncio
from typing import Any

from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.http import PODS, RawApi


def ready(pod: dict[str, Any] | None) -> bool:
    if pod is None:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


async def evict(raw: RawApi, name: str) -> int:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}
    return (await raw.post(f"{PODS}/{name}/eviction", body)).status


async def test_evicted_replicaset_pod_is_replaced_with_a_new_name_on_another_node(
    emulator: Emulator, raw: RawApi
) -> None:
    for index in range(3):
        emulator.add_node(name=f"node-{index}")
    emulator.add_workload(
        kind="Deployment", name="web", replicas=2, nodes=["node-0", "node-1"], pdb_max_unavailable=1
    )
    victim = next(p for p in emulator.list_objects(kind="Pod") if p["spec"]["nodeName"] == "node-0")
    await raw.patch(
        "/api/v1/nodes/node-0",
        {"spec": {"unschedulable": True}},
        content_type="application/strategic-merge-patch+json",
    )
    assert await evict(raw, victim["metadata"]["name"]) == 201

    def replaced() -> bool:
        pods = [p for p in emulator.list_objects(kind="Pod") if p["metadata"]["name"].startswith("web-")]
        return (
            len(pods) == 2
            and all(ready(p) for p in pods)
            and victim["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
        )

    await emulator.wait_until(replaced)
    pods = [p for p in emulator.list_objects(kind="Pod") if p["metadata"]["name"].startswith("web-")]
    new = next(
        p
        for p in pods
        if p["metadata"]["uid"] != victim["metadata"]["uid"] and p["spec"]["nodeName"] != "node-1"
    )
    assert new["metadata"]["name"].startswith(victim["metadata"]["name"].rsplit("-", 1)[0] + "-")
    assert new["spec"]["nodeName"] == "node-2"  # node-0 is cordoned; node-1 already runs one
    rs = emulator.list_objects(kind="ReplicaSet")[0]
    assert new["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    deployment = emulator.get_object(kind="Deployment", namespace="default", name="web")
    assert deployment is not None
    assert deployment["status"]["readyReplicas"] == 2


async def test_evicted_statefulset_pod_comes_back_with_the_same_name_and_a_new_uid(
    emulator: Emulator, raw: RawApi
) -> None:
    for index in range(2):
        emulator.add_node(name=f"node-{index}")
    emulator.add_workload(kind="StatefulSet", name="db", replicas=1, nodes=["node-0"], pdb_max_unavailable=1)
    old = emulator.get_object(kind="Pod", namespace="default", name="db-0")
    assert old is not None
    await raw.patch(
        "/api/v1/nodes/node-0",
        {"spec": {"unschedulable": True}},
        content_type="application/strategic-merge-patch+json",
    )
    assert await evict(raw, "db-0") == 201
    started = asyncio.get_running_loop().time()

    def back() -> bool:
        pod = emulator.get_object(kind="Pod", namespace="default", name="db-0")
        return pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"] and ready(pod)

    await emulator.wait_until(back)
    assert asyncio.get_running_loop().time() - started >= emulator.timing.pod_ready_delay
    pod = emulator.get_object(kind="Pod", namespace="default", name="db-0")
    assert pod is not None
    assert pod["spec"]["nodeName"] == "node-1"

    def budget_healthy() -> bool:  # the disruption controller catches up on its next turn
        pdb = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
        return pdb is not None and pdb["status"]["currentHealthy"] == 1

    await emulator.wait_until(budget_healthy)


async def test_daemonset_pods_stay_on_their_nodes(emulator: Emulator, raw: RawApi) -> None:
    for index in range(2):
        emulator.add_node(name=f"node-{index}")
    emulator.add_workload(kind="DaemonSet", name="agent")
    before = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in emulator.list_objects(kind="Pod")}
    assert set(before) == {"node-0", "node-1"}
    await raw.patch(
        "/api/v1/nodes/node-0",
        {"spec": {"unschedulable": True}},
        content_type="application/strategic-merge-patch+json",
    )
    assert await evict(raw, before["node-0"]) == 201

    def recreated() -> bool:
        pods = emulator.list_objects(kind="Pod")
        return (
            len(pods) == 2
            and before["node-0"] not in {p["metadata"]["name"] for p in pods}
            and all(map(ready, pods))
        )

    await emulator.wait_until(recreated)
    assert sorted(p["spec"]["nodeName"] for p in emulator.list_objects(kind="Pod")) == ["node-0", "node-1"]
    emulator.add_node(name="node-2")
    await emulator.wait_until(lambda: len(emulator.list_objects(kind="Pod")) == 3)
    ds = emulator.get_object(kind="DaemonSet", namespace="default", name="agent")
    await emulator.wait_until(
        lambda: (
            (emulator.get_object(kind="DaemonSet", namespace="default", name="agent") or {})
            .get("status", {})
            .get("numberReady")
            == 3
        )
    )
    assert ds is not None


async def test_pending_replacement_waits_for_a_schedulable_node(emulator: Emulator, raw: RawApi) -> None:
    emulator.add_node(name="node-0")
    emulator.add_workload(kind="Deployment", name="web", replicas=1)
    await raw.patch(
        "/api/v1/nodes/node-0",
        {"spec": {"unschedulable": True}},
        content_type="application/strategic-merge-patch+json",
    )
    victim = emulator.list_objects(kind="Pod")[0]
    assert await evict(raw, victim["metadata"]["name"]) == 201
    await emulator.wait_until(
        lambda: (
            len(emulator.list_objects(kind="Pod")) == 1
            and emulator.list_objects(kind="Pod")[0]["metadata"]["uid"] != victim["metadata"]["uid"]
        )
    )
    pending = emulator.list_objects(kind="Pod")[0]
    assert pending["status"]["phase"] == "Pending"
    assert "nodeName" not in pending["spec"]
    emulator.add_node(name="node-1")
    await emulator.wait_until(lambda: ready(emulator.list_objects(kind="Pod")[0]))
    assert emulator.list_objects(kind="Pod")[0]["spec"]["nodeName"] == "node-1"
