"""Contract sections 3-4: the four patch flavours and their list rules; selectors and paging."""

from __future__ import annotations

from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.backends import Cluster
from tests.integration.emulator.http import LEASES, NODES, PODS, RawApi, lease

JSON_PATCH = "application/json-patch+json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


async def test_all_four_patch_types_and_415_for_others(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    path = f"{NODES}/node-a"
    merged = await raw.patch(path, {"metadata": {"labels": {"m": "1"}}}, content_type=MERGE)
    assert merged.status == 200
    assert merged.body["metadata"]["labels"]["m"] == "1"
    strategic = await raw.patch(path, {"metadata": {"annotations": {"s": "1"}}}, content_type=STRATEGIC)
    assert strategic.body["metadata"]["annotations"]["s"] == "1"
    json_patch = await raw.patch(
        path, [{"op": "add", "path": "/metadata/labels/j", "value": "1"}], content_type=JSON_PATCH
    )
    assert json_patch.body["metadata"]["labels"]["j"] == "1"
    applied = await raw.request(
        "PATCH",
        f"{LEASES}/applied?fieldManager=test",
        raw=b"apiVersion: coordination.k8s.io/v1\nkind: Lease\n"
        b"metadata:\n  name: applied\nspec:\n  holderIdentity: me\n",
        content_type=APPLY,
    )
    assert applied.status == 201
    assert applied.body["spec"]["holderIdentity"] == "me"
    no_manager = await raw.request("PATCH", f"{LEASES}/applied", raw=b"spec: {}\n", content_type=APPLY)
    assert no_manager.status == 422
    assert "fieldManager: Required value" in no_manager.message
    unsupported = await raw.patch(path, {"metadata": {}}, content_type="application/json")
    assert unsupported.status == 415
    assert unsupported.reason == "UnsupportedMediaType"
    assert unsupported.message == "415: Unsupported Media Type"


async def test_patch_concurrency_missing_object_and_failed_test(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    path = f"{NODES}/node-a"
    stale = await raw.patch(
        path, {"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}}, content_type=MERGE
    )
    assert stale.status == 409
    assert stale.reason == "Conflict"
    missing = await raw.patch(f"{NODES}/nope", {"metadata": {"labels": {"x": "y"}}}, content_type=MERGE)
    assert missing.status == 404
    failed = await raw.patch(
        path,
        [
            {"op": "test", "path": "/spec/taints", "value": []},
            {"op": "add", "path": "/spec/taints", "value": []},
        ],
        content_type=JSON_PATCH,
    )
    assert failed.status == 422
    assert failed.reason == "Invalid"


async def test_cordon_and_uncordon_by_strategic_merge_removes_the_field(
    cluster: Cluster, raw: RawApi
) -> None:
    await cluster.add_node(name="node-a")
    path = f"{NODES}/node-a"
    cordoned = await raw.patch(path, {"spec": {"unschedulable": True}}, content_type=STRATEGIC)
    assert cordoned.body["spec"]["unschedulable"] is True
    uncordoned = await raw.patch(path, {"spec": {"unschedulable": None}}, content_type=STRATEGIC)
    assert "unschedulable" not in uncordoned.body["spec"]


async def test_taints_are_replaced_whole_by_strategic_merge(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a", taints=[{"key": "a", "effect": "NoSchedule"}])
    path = f"{NODES}/node-a"
    reply = await raw.patch(
        path, {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}, content_type=STRATEGIC
    )
    assert reply.body["spec"]["taints"] == [{"key": "b", "effect": "NoSchedule"}]
    # the safe way to add one taint: JSON patch guarded by a test of the current list
    guarded = await raw.patch(
        path,
        [
            {"op": "test", "path": "/spec/taints", "value": [{"key": "b", "effect": "NoSchedule"}]},
            {"op": "add", "path": "/spec/taints/-", "value": {"key": "c", "effect": "NoExecute"}},
        ],
        content_type=JSON_PATCH,
    )
    assert [t["key"] for t in guarded.body["spec"]["taints"]] == ["b", "c"]


async def test_status_conditions_merge_by_type_finalizers_as_set_and_null_deletes_keys(
    cluster: Cluster, raw: RawApi
) -> None:
    await cluster.add_node(name="node-a", labels={"drop": "me"})
    path = f"{NODES}/node-a/status"
    patch = {"status": {"conditions": [{"type": "RebootRequired", "status": "True", "reason": "Sentinel"}]}}
    reply = await raw.patch(path, patch, content_type=STRATEGIC)
    types = [c["type"] for c in reply.body["status"]["conditions"]]
    assert types == ["RebootRequired", "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]  # new first
    ready = {"type": "Ready", "status": "False", "reason": "Test"}
    reply = await raw.patch(path, {"status": {"conditions": [ready]}}, content_type=STRATEGIC)
    merged_ready = next(c for c in reply.body["status"]["conditions"] if c["type"] == "Ready")
    assert merged_ready["status"] == "False"
    assert merged_ready["message"] == "kubelet is posting ready status"
    await raw.post(LEASES, lease("fin", finalizers=["a"]))
    reply = await raw.patch(f"{LEASES}/fin", {"metadata": {"finalizers": ["b", "a"]}}, content_type=STRATEGIC)
    assert reply.body["metadata"]["finalizers"] == ["b", "a"]  # a set, in the patch's order
    reply = await raw.patch(
        f"{NODES}/node-a", {"metadata": {"labels": {"drop": None}}}, content_type=STRATEGIC
    )
    assert "drop" not in reply.body["metadata"]["labels"]


async def test_field_and_label_selectors(cluster: Cluster, raw: RawApi) -> None:
    for name in ("node-a", "node-b"):
        await cluster.add_node(name=name)
    await cluster.add_pod(name="a1", node="node-a", labels={"app": "web", "tier": "front"})
    await cluster.add_pod(name="a2", node="node-a", labels={"app": "db"})
    await cluster.add_pod(name="b1", node="node-b", labels={"app": "web"})
    await cluster.add_pod(name="done", node="node-a", phase="Succeeded")

    async def names(query: str, base: str = PODS) -> list[str]:
        reply = await raw.get(f"{base}?{query}")
        assert reply.status == 200, reply.body
        return [item["metadata"]["name"] for item in reply.body["items"]]

    assert await names("fieldSelector=spec.nodeName%3Dnode-a") == ["a1", "a2", "done"]
    assert await names("fieldSelector=spec.nodeName%3Dnode-a,status.phase!%3DSucceeded") == ["a1", "a2"]
    assert await names("fieldSelector=spec.nodeName%3D%3Dnode-b") == ["b1"]
    assert await names("labelSelector=app%3Dweb") == ["a1", "b1"]
    assert await names("labelSelector=tier!%3Dfront") == ["a2", "b1", "done"]  # lacking the key matches
    assert await names("labelSelector=app%20notin%20(web)") == ["a2", "done"]
    assert await names("labelSelector=app%20in%20(db,web),!tier") == ["a2", "b1"]
    await raw.patch(f"{NODES}/node-b", {"spec": {"unschedulable": True}}, content_type=STRATEGIC)
    assert await names("fieldSelector=spec.unschedulable%3Dtrue", NODES) == ["node-b"]
    assert await names("fieldSelector=spec.unschedulable%3Dfalse", NODES) == ["node-a"]
    bad = await raw.get(f"{PODS}?fieldSelector=spec.foo%3Dbar")
    assert bad.status == 400
    assert bad.message == "field label not supported: spec.foo"
    bad_lease = await raw.get(f"{LEASES}?fieldSelector=spec.holderIdentity%3Dx")
    assert bad_lease.status == 400


async def test_paging_with_continue_keeps_the_list_resource_version(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    for index in range(7):
        await cluster.add_pod(name=f"p{index}", node="node-a")
    first = (await raw.get(f"{PODS}?limit=3")).body
    rv = first["metadata"]["resourceVersion"]
    assert first["metadata"]["remainingItemCount"] == 4
    await cluster.add_pod(name="p9-late", node="node-a")  # not in the snapshot the pages come from
    seen = [p["metadata"]["name"] for p in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = (await raw.get(f"{PODS}?limit=3&continue={token}")).body
        assert page["metadata"]["resourceVersion"] == rv
        seen += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue", "")
    assert seen == [f"p{i}" for i in range(7)]


async def test_expired_continue_token_is_410_with_a_fresh_token(emulator: Emulator, raw: RawApi) -> None:
    emulator.add_node(name="node-a")
    for index in range(5):
        emulator.add_pod(name=f"p{index}", node="node-a")
    first = (await raw.get(f"{PODS}?limit=2")).body
    emulator.expire_continue_tokens()
    reply = await raw.get(f"{PODS}?limit=2&continue={first['metadata']['continue']}")
    assert reply.status == 410
    assert reply.reason == "Expired"
    assert reply.message.startswith("The provided continue parameter is too old")
    fresh = reply.body["metadata"]["continue"]
    rest = (await raw.get(f"{PODS}?limit=10&continue={fresh}")).body
    assert [p["metadata"]["name"] for p in rest["items"]] == ["p2", "p3", "p4"]


async def test_query_booleans_anything_but_zero_or_false_is_true(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    events = await raw.watch(f"{NODES}?watch=True&timeoutSeconds=1", max_events=1)
    assert events[0]["type"] == "ADDED"
    listing = await raw.get(f"{NODES}?watch=false")
    assert listing.body["kind"] == "NodeList"


async def test_a_metadata_only_list_sends_each_items_metadata_and_nothing_else(
    cluster: Cluster, raw: RawApi
) -> None:
    """What client-go's metadata client asks (and the queue's refill uses): a
    PartialObjectMetadataList, each item a PartialObjectMetadata carrying the object's metadata
    (labels and annotations included), never its spec or status; the selector still applies."""
    await cluster.add_node(name="node-queued", labels={"rebootd.io/reboot-required": "true"})
    await cluster.add_node(name="node-other")
    reply = await raw.get(
        f"{NODES}?labelSelector=rebootd.io%2Freboot-required%3Dtrue",
        headers={
            "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
        },
    )
    assert reply.status == 200
    assert (reply.body["kind"], reply.body["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert reply.body["metadata"]["resourceVersion"]
    [item] = reply.body["items"]
    assert (item["kind"], item["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert set(item) == {"kind", "apiVersion", "metadata"}
    assert item["metadata"]["name"] == "node-queued"
    assert item["metadata"]["labels"]["rebootd.io/reboot-required"] == "true"
    assert item["metadata"]["uid"]
    assert item["metadata"]["resourceVersion"]
