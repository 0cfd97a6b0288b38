"""Contract section 5: the eviction subresource, step by step, and the disruption controller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rebootd.emulator.emulator import Emulator
from rebootd.emulator.errors import ApiError
from tests.integration.emulator.backends import Cluster
from tests.integration.emulator.http import PDBS, PODS, RawApi

BUDGET_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


def eviction(name: str, *, version: str = "policy/v1", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": version,
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
        **extra,
    }


def web_pods(emulator: Emulator, prefix: str = "web") -> list[dict[str, Any]]:
    return [
        p
        for p in emulator.list_objects(kind="Pod", namespace="default")
        if p["metadata"]["name"].startswith(prefix)
    ]


async def evict(raw: RawApi, name: str, **extra: Any) -> Any:
    return await raw.post(f"{PODS}/{name}/eviction", eviction(name, **extra))


def three_nodes(emulator: Emulator) -> None:
    for index in range(3):
        emulator.add_node(name=f"node-{index}")


async def test_step1_missing_pod_is_404_and_name_mismatch_400(cluster: Cluster, raw: RawApi) -> None:
    assert (await evict(raw, "ghost")).status == 404
    await cluster.add_node(name="node-0")
    await cluster.add_pod(name="p", node="node-0")
    mismatch = await raw.post(f"{PODS}/p/eviction", eviction("other"))
    assert mismatch.status == 400
    assert mismatch.message == "name in URL does not match name in Eviction object"


async def test_step2_pending_pods_are_deleted_without_a_budget_check(emulator: Emulator, raw: RawApi) -> None:
    three_nodes(emulator)
    emulator.add_workload(kind="Deployment", name="web", replicas=2, pdb_min_available=2)
    emulator.add_pod(name="web-pending", node="node-0", phase="Pending", labels={"app": "web"})
    reply = await evict(raw, "web-pending")
    assert reply.status == 201
    assert reply.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    record = next(r for r in emulator.history if r.event == "eviction")
    assert record.name == "web-pending"
    assert record.pdb is None


async def test_step3_two_matching_budgets_is_500(emulator: Emulator, raw: RawApi) -> None:
    three_nodes(emulator)
    emulator.add_workload(kind="Deployment", name="web", replicas=2, pdb_max_unavailable=1)
    second = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "second"},
        "spec": {"minAvailable": 0, "selector": {}},
    }
    assert (await raw.post(PDBS, second)).status == 201
    reply = await evict(raw, web_pods(emulator)[0]["metadata"]["name"])
    assert reply.status == 500
    assert reply.message == (
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    )


async def test_step4_unready_pod_is_evicted_without_decrement_when_budget_is_healthy(
    emulator: Emulator, raw: RawApi
) -> None:
    three_nodes(emulator)
    emulator.add_workload(kind="Deployment", name="web", replicas=3, pdb_min_available=2)
    emulator.add_pod(name="web-sick", node="node-0", ready=False, labels={"app": "web"})
    await asyncio.sleep(0.05)
    before = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="web")
    assert before is not None
    assert before["status"]["currentHealthy"] == 3
    reply = await evict(raw, "web-sick")
    assert reply.status == 201
    after = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="web")
    assert after is not None
    assert "web-sick" not in after["status"].get("disruptedPods", {})


async def test_step4_always_allow_policy_evicts_unready_pods(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-0")
    await cluster.add_pod(name="solo", node="node-0", ready=False, labels={"app": "solo"})
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "solo"},
        "spec": {
            "minAvailable": 1,
            "selector": {"matchLabels": {"app": "solo"}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    await raw.post(PDBS, pdb)
    await asyncio.sleep(0.05)
    assert (await evict(raw, "solo")).status == 201


async def bare_pods_with_budget(cluster: Cluster, raw: RawApi, *, min_available: int) -> dict[str, Any]:
    """Three Ready pods of no controller (integer budgets work for those on a real server too)
    and a budget over them, returned once the disruption controller has processed it."""
    await cluster.add_node(name="node-0")
    for index in range(3):
        await cluster.add_pod(
            name=f"web-{index}", node="node-0", labels={"app": "web"}, termination_grace_seconds=300
        )
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
    }
    assert (await raw.post(PDBS, budget)).status == 201

    async def processed() -> dict[str, Any] | None:
        current = await cluster.get_object(kind="PodDisruptionBudget", name="web")
        status = (current or {}).get("status", {})
        ready = status.get("observedGeneration") == 1 and status.get("currentHealthy") == 3
        return current if ready else None

    return await cluster.eventually(processed)


async def test_step5_budget_at_zero_for_bare_pods_is_429_with_the_exact_cause(
    cluster: Cluster, raw: RawApi
) -> None:
    await bare_pods_with_budget(cluster, raw, min_available=3)
    reply = await evict(raw, "web-0")
    assert reply.status == 429
    assert reply.reason == "TooManyRequests"
    assert reply.message == BUDGET_MESSAGE
    assert reply.body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
        }
    ]
    assert "Retry-After" not in reply.headers


async def test_step5_and_6_admitted_eviction_of_a_bare_pod_decrements_marks_and_deletes_gracefully(
    cluster: Cluster, raw: RawApi
) -> None:
    budget = await bare_pods_with_budget(cluster, raw, min_available=2)
    assert budget["status"]["disruptionsAllowed"] == 1
    assert (await evict(raw, "web-0")).status == 201
    pod = await cluster.get_object(kind="Pod", name="web-0")
    assert pod is not None
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 300
    target = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (target["status"], target["reason"]) == ("True", "EvictionByEvictionAPI")
    after = await cluster.get_object(kind="PodDisruptionBudget", name="web")
    assert after is not None
    assert after["status"]["disruptionsAllowed"] == 0
    assert (await evict(raw, "web-1")).status == 429


async def test_step5_budget_at_zero_is_429_with_the_exact_cause(emulator: Emulator, raw: RawApi) -> None:
    three_nodes(emulator)
    emulator.add_workload(kind="Deployment", name="web", replicas=3, pdb_min_available=3)
    reply = await evict(raw, web_pods(emulator)[0]["metadata"]["name"])
    assert reply.status == 429
    assert reply.reason == "TooManyRequests"
    assert reply.message == BUDGET_MESSAGE
    assert reply.body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
        }
    ]
    assert "Retry-After" not in reply.headers


def test_step5_unprocessed_budget_generation_is_429_retry_after_10() -> None:
    emulator = Emulator()
    three_nodes(emulator)
    emulator.add_workload(kind="StatefulSet", name="db", replicas=2, pdb_max_unavailable=1)
    pdb = emulator.store.get("poddisruptionbudgets.policy", "default", "db")
    assert pdb is not None
    bumped = dict(pdb, spec=dict(pdb["spec"], maxUnavailable=2))
    bumped["metadata"] = dict(pdb["metadata"], generation=2)
    # the disruption controller has not run yet (no event loop turn): observedGeneration 1 < 2
    emulator.registry.put_internal("poddisruptionbudgets.policy", bumped, pdb, client="test", verb="update")
    with pytest.raises(ApiError) as info:
        emulator.registry.evict("default", "db-0", eviction("db-0"), client="test")
    assert info.value.code == 429
    assert info.value.retry_after == 10
    assert info.value.details is not None
    assert info.value.details["causes"][0]["message"] == (
        "The disruption budget db is still being processed by the server."
    )


async def test_step5_and_6_admitted_eviction_decrements_marks_and_deletes_gracefully(
    emulator: Emulator, raw: RawApi
) -> None:
    three_nodes(emulator)
    emulator.add_workload(
        kind="Deployment", name="web", replicas=3, pdb_max_unavailable=1, termination_grace_seconds=20
    )
    victim = web_pods(emulator)[0]
    name = victim["metadata"]["name"]
    reply = await evict(raw, name, version="policy/v1beta1")
    assert reply.status == 201
    pdb = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="web")
    assert pdb is not None
    pod = emulator.get_object(kind="Pod", namespace="default", name=name)
    assert pod is not None
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 20
    target = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert target["status"] == "True"
    assert target["reason"] == "EvictionByEvictionAPI"
    record = next(r for r in emulator.history if r.event == "eviction")
    assert (record.name, record.pdb, record.disruptions_allowed) == (name, "web", 1)
    assert pdb["status"]["disruptionsAllowed"] == 0
    healthy = [
        p
        for p in web_pods(emulator)
        if p["status"]["phase"] == "Running" and "deletionTimestamp" not in p["metadata"]
    ]
    second = await evict(raw, healthy[0]["metadata"]["name"])
    assert second.status == 429


async def test_disruption_controller_recomputes_status_and_forgets_gone_pods(
    emulator: Emulator, raw: RawApi
) -> None:
    three_nodes(emulator)
    emulator.add_workload(kind="StatefulSet", name="db", replicas=3, pdb_min_available="50%")
    pdb = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
    assert pdb is not None
    status = pdb["status"]
    assert (
        status["expectedPods"],
        status["desiredHealthy"],
        status["currentHealthy"],
        status["disruptionsAllowed"],
    ) == (3, 2, 3, 1)
    assert status["observedGeneration"] == pdb["metadata"]["generation"]
    assert (await evict(raw, "db-0")).status == 201

    def settled() -> bool:  # the pod goes after 30 s x grace_scale, then comes back Ready
        current = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
        assert current is not None
        return (
            "db-0" not in current["status"].get("disruptedPods", {})
            and current["status"]["currentHealthy"] == 3
        )

    await emulator.wait_until(settled)
    pdb = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
    assert pdb is not None
    assert pdb["status"]["disruptionsAllowed"] == 1
    assert "disruptedPods" not in pdb["status"]


async def test_eviction_in_a_terminating_namespace_is_403_namespace_terminating(
    emulator: Emulator, raw: RawApi
) -> None:
    three_nodes(emulator)
    emulator.add_pod(name="p", namespace="doomed", node="node-0", termination_grace_seconds=3000)
    reply = await raw.delete("/api/v1/namespaces/doomed")
    assert reply.status == 200
    assert reply.body["status"]["phase"] == "Terminating"
    evicted = await raw.post(
        "/api/v1/namespaces/doomed/pods/p/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "doomed"}},
    )
    assert evicted.status == 403
    assert evicted.body["details"]["causes"][0]["reason"] == "NamespaceTerminating"


async def test_budget_follows_pods_entering_and_leaving_its_selector(emulator: Emulator, raw: RawApi) -> None:
    three_nodes(emulator)
    emulator.add_workload(kind="StatefulSet", name="db", replicas=3)
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "db"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}},
    }
    assert (await raw.post(PDBS, pdb)).status == 201

    def status_is(expected: int, healthy: int) -> bool:
        current = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
        got = (current or {}).get("status", {})
        return (got.get("expectedPods"), got.get("currentHealthy"), got.get("observedGeneration")) == (
            expected,
            healthy,
            1,
        )

    await emulator.wait_until(lambda: status_is(3, 3))
    moved = await raw.patch(
        f"{PODS}/db-2",
        {"metadata": {"labels": {"app": "elsewhere"}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert moved.status == 200
    await emulator.wait_until(lambda: status_is(2, 2))
    back = await raw.patch(
        f"{PODS}/db-2",
        {"metadata": {"labels": {"app": "db"}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert back.status == 200
    await emulator.wait_until(lambda: status_is(3, 3))
    pdb_now = emulator.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
    assert pdb_now is not None
    assert pdb_now["status"]["disruptionsAllowed"] == 1
