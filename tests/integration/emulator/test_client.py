"""kubernetes-asyncio against the emulator: typed reads, optimistic concurrency, strict Lease rules, watch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

from rebootd.emulator.emulator import Emulator
from tests.fixtures.emulator import EmulatorFactory


@pytest.fixture
async def api(emulator: Emulator, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig", token="t-daemon")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
async def emulator(emulator_factory: EmulatorFactory) -> Emulator:
    return await emulator_factory(
        tokens={"t-daemon": ("system:serviceaccount:kube-system:rebootd", ["rebootd"])}
    )


def error_text(error: ApiException) -> str:
    body = error.body
    return body.decode() if isinstance(body, bytes) else str(body)


def lease_body(name: str, *, holder: str, rv: str | None = None, uid: str | None = None) -> dict[str, object]:
    metadata: dict[str, object] = {"name": name, "namespace": "default"}
    if rv is not None:
        metadata["resourceVersion"] = rv
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "renewTime": "2026-01-01T00:00:00.000000Z",
        },
    }


async def test_read_node_returns_typed_object(emulator: Emulator, api: client.ApiClient) -> None:
    emulator.add_node(name="node-a", zone="zone-1")
    node = await client.CoreV1Api(api).read_node("node-a")
    assert isinstance(node, client.V1Node)
    assert node.metadata.labels["topology.kubernetes.io/zone"] == "zone-1"
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert ready.reason == "KubeletReady"
    assert node.status.node_info.boot_id
    assert emulator.request_counts[("system:serviceaccount:kube-system:rebootd", "get")] == 1


async def test_stale_replace_is_a_409_conflict(emulator: Emulator, api: client.ApiClient) -> None:
    emulator.add_node(name="node-a")
    core = client.CoreV1Api(api)
    first = await core.read_node("node-a")
    second = await core.read_node("node-a")
    first.metadata.labels["a"] = "1"
    await core.replace_node("node-a", first)
    second.metadata.labels["b"] = "2"
    with pytest.raises(ApiException) as info:
        await core.replace_node("node-a", second)
    assert info.value.status == 409
    body = error_text(info.value)
    assert '"reason":"Conflict"' in body
    assert 'Operation cannot be fulfilled on nodes \\"node-a\\"' in body


async def test_lease_update_without_resource_version_is_422(
    emulator: Emulator, api: client.ApiClient
) -> None:
    coordination = client.CoordinationV1Api(api)
    created = await coordination.create_namespaced_lease("default", cast(Any, lease_body("lock", holder="a")))
    assert created.metadata.resource_version
    with pytest.raises(ApiException) as info:
        await coordination.replace_namespaced_lease(
            "lock", "default", cast(Any, lease_body("lock", holder="b"))
        )
    assert info.value.status == 422
    assert "must be specified for an update" in error_text(info.value)
    assert "metadata.resourceVersion" in error_text(info.value)
    stored = emulator.get_object(kind="Lease", namespace="default", name="lock")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "a"


async def test_watch_streams_changes_after_the_list_resource_version(
    emulator: Emulator, api: client.ApiClient
) -> None:
    emulator.add_node(name="node-a")
    core = client.CoreV1Api(api)
    listing = await core.list_node()
    emulator.set_node_ready(name="node-a", ready=False)
    events = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            core.list_node, resource_version=listing.metadata.resource_version, timeout_seconds=1
        ):
            events.append((event["type"], event["object"].metadata.name))
            ready = next(c for c in event["object"].status.conditions if c.type == "Ready")
            if ready.status != "True":
                break
    assert events == [("MODIFIED", "node-a")]


async def test_patch_bodies_dict_is_strategic_merge_and_list_is_json_patch(
    emulator: Emulator, api: client.ApiClient
) -> None:
    emulator.add_node(name="node-a", taints=[{"key": "a", "effect": "NoSchedule"}])
    core = client.CoreV1Api(api)
    cordoned = await core.patch_node("node-a", {"spec": {"unschedulable": True}})
    assert cordoned.spec.unschedulable is True
    await core.patch_node("node-a", {"spec": {"unschedulable": None}})
    node = emulator.get_object(kind="Node", name="node-a")
    assert node is not None
    assert "unschedulable" not in node["spec"]
    stale_guard = [
        {"op": "test", "path": "/spec/taints", "value": []},
        {"op": "add", "path": "/spec/taints/-", "value": {"key": "b", "effect": "NoSchedule"}},
    ]
    with pytest.raises(ApiException) as info:
        await core.patch_node("node-a", stale_guard)
    assert info.value.status == 422
    guarded = [
        {"op": "test", "path": "/spec/taints", "value": [{"key": "a", "effect": "NoSchedule"}]},
        {"op": "add", "path": "/spec/taints/-", "value": {"key": "b", "effect": "NoSchedule"}},
    ]
    patched = await core.patch_node("node-a", guarded)
    assert [t.key for t in patched.spec.taints] == ["a", "b"]


async def test_a_datetime_microtime_without_fraction_is_rejected(
    emulator: Emulator, api: client.ApiClient
) -> None:
    whole_second = datetime(2026, 1, 1, tzinfo=UTC)  # isoformat() drops the fraction: not a MicroTime
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="lock", namespace="default"),
        spec=client.V1LeaseSpec(holder_identity="a", renew_time=whole_second),
    )
    with pytest.raises(ApiException) as info:
        await client.CoordinationV1Api(api).create_namespaced_lease("default", body)
    assert info.value.status == 400
    assert json.loads(error_text(info.value))["message"].endswith('cannot parse "+00:00" as ".000000"')
    assert emulator.get_object(kind="Lease", namespace="default", name="lock") is None
