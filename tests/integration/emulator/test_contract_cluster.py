"""Contract sections 8-10 and the emulator's extras: Events, boots, discovery, RBAC, faults."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from rebootd.emulator.emulator import Emulator
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.emulator.rbac import Authorizer
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.backends import Cluster
from tests.integration.emulator.http import LEASES, NODES, RawApi, lease

EVENTS = "/api/v1/namespaces/default/events"


def node_event(node: dict[str, Any], *, reason: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{node['metadata']['name']}.reboot", "namespace": "default"},
        "involvedObject": {
            "kind": "Node",
            "name": node["metadata"]["name"],
            "uid": node["metadata"]["uid"],
            "apiVersion": "v1",
        },
        "reason": reason,
        "message": "rebooting for kernel update",
        "type": "Normal",
        "source": {"component": "rebootd", "host": node["metadata"]["name"]},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }


async def test_node_events_are_found_the_way_kubectl_describe_asks(cluster: Cluster, raw: RawApi) -> None:
    node = await cluster.add_node(name="node-a")
    await cluster.add_node(name="node-b")
    assert (await raw.post(EVENTS, node_event(node, reason="RebootScheduled"))).status == 201
    query = (
        "fieldSelector=involvedObject.name%3Dnode-a,involvedObject.namespace%3D,involvedObject.kind%3DNode"
    )
    found = (await raw.get(f"{EVENTS}?{query}")).body["items"]
    # only node-a's; on the real server the node lifecycle controller adds its RegisteredNode events
    assert {e["involvedObject"]["name"] for e in found} == {"node-a"}
    assert [e["reason"] for e in found if e["source"].get("component") == "rebootd"] == ["RebootScheduled"]
    if cluster.emulator is not None:
        assert [e["reason"] for e in found] == ["RebootScheduled"]
    v1 = (await raw.get("/apis/events.k8s.io/v1/namespaces/default/events")).body["items"]
    ours = next(e for e in v1 if e["metadata"]["name"] == "node-a.reboot")
    assert ours["regarding"]["name"] == "node-a"
    assert ours["note"] == "rebooting for kernel update"
    created = await raw.post(
        "/apis/events.k8s.io/v1/namespaces/default/events",
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "node-a.v1", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "rebootd.io/rebootd",
            "reportingInstance": "node-a",
            "action": "Reboot",
            "reason": "Rebooting",
            "type": "Normal",
            "regarding": {"kind": "Node", "name": "node-a", "apiVersion": "v1"},
            "note": "now",
        },
    )
    assert created.status == 201
    assert created.body["apiVersion"] == "events.k8s.io/v1"
    core = (await raw.get(f"{EVENTS}/node-a.v1")).body
    assert core["involvedObject"]["name"] == "node-a"
    assert core["message"] == "now"
    bad = await raw.post(
        "/apis/events.k8s.io/v1/namespaces/default/events",
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "x"},
            "eventTime": "2026-01-01T00:00:00Z",
        },
    )
    assert bad.status == 400


async def test_reboot_changes_boot_id_and_goes_not_ready_then_ready(emulator: Emulator) -> None:
    emulator.add_node(name="node-a")
    emulator.add_node(name="node-b")
    emulator.add_workload(kind="StatefulSet", name="db", replicas=1, nodes=["node-a"])
    before = emulator.get_object(kind="Node", name="node-a")
    assert before is not None
    boot_id = before["status"]["nodeInfo"]["bootID"]
    requested = emulator.clock.now()
    emulator.reboot_node(name="node-a")
    down = emulator.get_object(kind="Node", name="node-a")
    assert down is not None
    ready = next(c for c in down["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown"
    pod = emulator.get_object(kind="Pod", namespace="default", name="db-0")
    assert pod is not None
    assert next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"

    def node_ready() -> bool:
        node = emulator.get_object(kind="Node", name="node-a")
        return (
            node is not None
            and next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
        )

    await emulator.wait_until(node_ready)
    after = emulator.get_object(kind="Node", name="node-a")
    assert after is not None
    assert after["status"]["nodeInfo"]["bootID"] != boot_id
    ready = next(c for c in after["status"]["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] >= requested.strftime("%Y-%m-%dT%H:%M:%SZ")

    def pod_ready() -> bool:
        current = emulator.get_object(kind="Pod", namespace="default", name="db-0")
        return (
            current is not None
            and next(c for c in current["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
        )

    await emulator.wait_until(pod_ready)
    pod = emulator.get_object(kind="Pod", namespace="default", name="db-0")
    assert pod is not None
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1
    kinds = [r.event for r in emulator.history if r.name == "node-a" and r.event != "write"]
    assert kinds == ["reboot_started", "node_not_ready", "node_ready"]


async def test_broken_workload_crash_loops_after_reboot_until_repaired(emulator: Emulator) -> None:
    emulator.add_node(name="node-a")
    emulator.add_workload(kind="StatefulSet", name="db", replicas=1)
    emulator.break_after_reboot(namespace="default", pod_prefix="db-")
    emulator.reboot_node(name="node-a")

    def crashing() -> bool:
        pod = emulator.get_object(kind="Pod", namespace="default", name="db-0")
        state = (pod or {}).get("status", {}).get("containerStatuses", [{}])[0].get("state", {})
        return bool(state.get("waiting", {}).get("reason") == "CrashLoopBackOff")

    await emulator.wait_until(crashing)
    await asyncio.sleep(0.2)
    assert crashing()
    emulator.repair_pod(namespace="default", pod_prefix="db-")
    pod = emulator.get_object(kind="Pod", namespace="default", name="db-0")
    assert pod is not None
    assert pod["status"]["containerStatuses"][0]["ready"] is True


async def test_boot_failure_keeps_the_node_not_ready(emulator: Emulator) -> None:
    emulator.add_node(name="node-a")
    emulator.set_boot_failure(name="node-a")
    emulator.reboot_node(name="node-a")
    await asyncio.sleep(emulator.timing.boot_seconds * 2)
    node = emulator.get_object(kind="Node", name="node-a")
    assert node is not None
    assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "Unknown"
    assert [t["key"] for t in node["spec"]["taints"]] == ["node.kubernetes.io/unreachable"]


async def test_discovery_documents_kubectl_needs(cluster: Cluster, raw: RawApi) -> None:
    cluster.differs(
        "the emulator is v1.32.0 and serves only the groups rebootd and kubectl use, no OpenAPI v2"
    )
    version = (await raw.get("/version")).body
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "32", "v1.32.0")
    api = (await raw.get("/api")).body
    assert api["kind"] == "APIVersions"
    assert api["versions"] == ["v1"]
    assert api["serverAddressByClientCIDRs"][0]["serverAddress"] == raw.base.split("://", 1)[1]
    core = (await raw.get("/api/v1")).body
    eviction = next(r for r in core["resources"] if r["name"] == "pods/eviction")
    assert eviction == {
        "name": "pods/eviction",
        "singularName": "",
        "namespaced": True,
        "group": "policy",
        "version": "v1",
        "kind": "Eviction",
        "verbs": ["create"],
    }
    assert {"nodes", "pods", "events", "namespaces"} <= {r["name"] for r in core["resources"]}
    groups = (await raw.get("/apis")).body
    assert {g["preferredVersion"]["groupVersion"] for g in groups["groups"]} == {
        "apps/v1",
        "coordination.k8s.io/v1",
        "policy/v1",
        "events.k8s.io/v1",
    }
    apps = (await raw.get("/apis/apps/v1")).body
    assert "daemonsets" in {r["name"] for r in apps["resources"]}
    assert "leases" in {r["name"] for r in (await raw.get("/apis/coordination.k8s.io/v1")).body["resources"]}
    assert (await raw.get("/openapi/v2")).status == 404
    openapi = (await raw.get("/openapi/v3")).body
    assert (
        openapi["paths"]["apis/coordination.k8s.io/v1"]["serverRelativeURL"]
        == "/openapi/v3/apis/coordination.k8s.io/v1"
    )
    document = (await raw.get("/openapi/v3/apis/coordination.k8s.io/v1")).body
    patch = document["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "coordination.k8s.io",
        "version": "v1",
        "kind": "Lease",
    }
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][0].items()


async def test_rbac_denial_is_403_with_the_apiserver_message(emulator_factory: EmulatorFactory) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    emu = await emulator_factory(
        authorizer=Authorizer.from_documents([role, binding]), tokens={"t-alice": ("alice", [])}
    )
    emu.add_node(name="node-a")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-alice"}) as session:
        api = RawApi(session, emu.url)
        assert (await api.get(NODES)).status == 200
        denied = await api.get("/api/v1/namespaces/default/pods/x")
        assert denied.status == 403
        assert denied.reason == "Forbidden"
        assert denied.message == (
            'pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" '
            'in the namespace "default"'
        )
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer wrong"}) as session:
        assert (await RawApi(session, emu.url).get(NODES)).status == 401
    assert emu.request_counts[("alice", "list")] == 1


async def test_injected_faults_answer_as_a_real_server_would(emulator_factory: EmulatorFactory) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig(throttle429=1.0, retry_after_seconds=3))
    emu = await emulator_factory(faults=faults, tokens={"t-1": ("daemon-1", [])})
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-1"}) as session:
        api = RawApi(session, emu.url)
        throttled = await api.get(LEASES)
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "3"
        assert throttled.body["details"]["retryAfterSeconds"] == 3
        assert (await api.get("/version")).status == 200  # discovery is not a resource request
    assert faults.counts["throttle429"] == 1


async def test_partitioned_client_gets_its_connection_cut(emulator_factory: EmulatorFactory) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig())
    emu = await emulator_factory(faults=faults, tokens={"t-1": ("daemon-1", []), "t-2": ("daemon-2", [])})
    await asyncio.sleep(0)
    faults.partition(client="daemon-1", seconds=30)
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-1"}) as session:
        try:
            async with session.get(emu.url + LEASES) as response:
                await response.read()
        except aiohttp.ClientError:
            pass
        else:
            raise AssertionError("a partitioned client got an answer")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-2"}) as session:
        assert (await RawApi(session, emu.url).post(LEASES, lease("other"))).status == 201
    faults.heal(client="daemon-1")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-1"}) as session:
        assert (await RawApi(session, emu.url).get(LEASES)).status == 200


async def test_watch_faults_cut_streams_and_expire_resumes(emulator_factory: EmulatorFactory) -> None:
    config = FaultConfig(watch_drop=1.0, watch_drop_after_seconds=(0.2, 0.2), watch_expire_on_resume=1.0)
    faults = FaultInjector(seed=3, config=config)
    emu = await emulator_factory(faults=faults, tokens={"t-1": ("daemon-1", [])})
    emu.add_node(name="node-a")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-1"}) as session:
        api = RawApi(session, emu.url)
        resumed = await api.watch(
            f"{NODES}?watch=1&resourceVersion={emu.store.resource_version}", max_events=3
        )
        assert [e["type"] for e in resumed] == ["ERROR"]
        assert resumed[0]["object"]["code"] == 410
        started = asyncio.get_running_loop().time()
        try:
            await api.watch(f"{NODES}?watch=1&timeoutSeconds=30", max_events=10, within=5)
        except aiohttp.ClientPayloadError:
            pass  # the chunked stream ended without its terminating chunk: a cut connection
        else:
            raise AssertionError("the watch stream ended cleanly instead of being cut")
        assert asyncio.get_running_loop().time() - started < 2
    assert faults.counts["watch_drop"] >= 1
    assert faults.counts["watch_expire_on_resume"] == 1


async def test_pods_and_deployments_created_through_the_api_are_scheduled_and_started(
    emulator: Emulator, raw: RawApi
) -> None:
    emulator.add_node(name="node-a")
    created = await raw.post("/api/v1/namespaces/default/pods", pod_body("solo"))
    assert created.status == 201
    assert created.body["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": pod_body("x")["spec"]},
        },
    }
    assert (await raw.post("/apis/apps/v1/namespaces/default/deployments", deployment)).status == 201

    def running() -> bool:
        pods = emulator.list_objects(kind="Pod", namespace="default")
        return len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods)

    await emulator.wait_until(running)
    solo = emulator.get_object(kind="Pod", namespace="default", name="solo")
    assert solo is not None
    assert solo["spec"]["nodeName"] == "node-a"
    assert [c["status"] for c in solo["status"]["conditions"] if c["type"] == "Ready"] == ["True"]

    def deployment_ready() -> bool:
        current = emulator.get_object(kind="Deployment", namespace="default", name="api")
        return current is not None and current.get("status", {}).get("readyReplicas") == 2

    await emulator.wait_until(deployment_ready)
    assert len(emulator.list_objects(kind="ReplicaSet", namespace="default")) == 1
    assert (await raw.delete("/apis/apps/v1/namespaces/default/deployments/api")).status == 200
    await emulator.wait_until(lambda: len(emulator.list_objects(kind="Pod", namespace="default")) == 1)
    assert emulator.list_objects(kind="ReplicaSet", namespace="default") == []


def pod_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            "terminationGracePeriodSeconds": 1,
        },
    }


async def test_namespace_deletion_removes_its_content_then_itself(emulator: Emulator, raw: RawApi) -> None:
    emulator.add_node(name="node-a")
    emulator.add_workload(kind="StatefulSet", name="db", namespace="team", replicas=2, pdb_max_unavailable=1)
    assert (
        await raw.post("/apis/coordination.k8s.io/v1/namespaces/team/leases", lease("l", namespace="team"))
    ).status == 201
    assert (await raw.delete("/api/v1/namespaces/team")).status == 200
    await emulator.wait_until(lambda: emulator.get_object(kind="Namespace", name="team") is None)
    assert emulator.list_objects(kind="Pod", namespace="team") == []
    assert emulator.list_objects(kind="Lease", namespace="team") == []
    assert emulator.list_objects(kind="PodDisruptionBudget", namespace="team") == []


async def test_without_a_token_table_each_bearer_token_names_its_client(emulator: Emulator) -> None:
    for token in ("daemon-a", "daemon-b", "daemon-a"):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            assert (await RawApi(session, emulator.url).get(NODES)).status == 200
    async with aiohttp.ClientSession() as session:
        assert (await RawApi(session, emulator.url).get(NODES)).status == 200
    assert emulator.request_counts[("daemon-a", "list")] == 2
    assert emulator.request_counts[("daemon-b", "list")] == 1
    assert emulator.request_counts[("anonymous", "list")] == 1
