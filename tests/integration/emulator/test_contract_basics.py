"""Contract sections 0-2: error shapes, optimistic concurrency, preconditions, Lease strictness."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.backends import Cluster
from tests.integration.emulator.http import LEASES, NODES, PODS, RawApi, lease, pod


async def test_not_found_bodies_are_status_objects_with_plural_kind(cluster: Cluster, raw: RawApi) -> None:
    missing_pod = await raw.get(f"{PODS}/nope")
    assert missing_pod.status == 404
    assert missing_pod.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }
    missing_node = await raw.get(f"{NODES}/nope")
    assert missing_node.message == 'nodes "nope" not found'
    missing_lease = await raw.get(f"{LEASES}/nope")
    assert missing_lease.message == 'leases.coordination.k8s.io "nope" not found'
    assert missing_lease.body["details"] == {"name": "nope", "group": "coordination.k8s.io", "kind": "leases"}


async def test_lists_carry_empty_items_without_kind_and_one_global_resource_version(
    cluster: Cluster, raw: RawApi
) -> None:
    empty = await raw.get(LEASES)
    assert empty.status == 200
    assert empty.body["items"] == []
    assert empty.body["kind"] == "LeaseList"
    created = await raw.post(LEASES, lease("one"))
    node_rv = (await cluster.add_node(name="node-a"))["metadata"]["resourceVersion"]
    assert created.status == 201
    assert int(node_rv) > int(created.body["metadata"]["resourceVersion"])
    listing = await raw.get(LEASES)
    # one counter for every type: the lease list is at the server's latest version, at or past the
    # node's; on the real server controllers may write after the list, never before
    latest = await cluster.resource_version()
    listed = int(listing.body["metadata"]["resourceVersion"])
    assert int(node_rv) <= listed <= latest
    if cluster.emulator is not None:  # nothing else writes; the node's lease was written last
        assert int(node_rv) < listed == latest
    assert isinstance(listing.body["metadata"]["resourceVersion"], str)
    assert "kind" not in listing.body["items"][0]
    assert "apiVersion" not in listing.body["items"][0]


async def test_noop_write_keeps_resource_version_and_emits_no_event(cluster: Cluster, raw: RawApi) -> None:
    created = (await raw.post(LEASES, lease("same"))).body
    again = await raw.put(f"{LEASES}/same", created)
    assert again.status == 200
    assert again.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    rv = created["metadata"]["resourceVersion"]
    events = await raw.watch(f"{LEASES}?watch=1&resourceVersion={rv}&timeoutSeconds=1", max_events=5)
    assert events == []


async def test_stale_put_is_conflict_with_the_exact_message(cluster: Cluster, raw: RawApi) -> None:
    created = (await raw.post(LEASES, lease("lock"))).body
    fresh = dict(created, spec=dict(created["spec"], holderIdentity="b"))
    assert (await raw.put(f"{LEASES}/lock", fresh)).status == 200
    stale = dict(created, spec=dict(created["spec"], holderIdentity="c"))
    reply = await raw.put(f"{LEASES}/lock", stale)
    assert reply.status == 409
    assert reply.reason == "Conflict"
    assert reply.message == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "lock": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


async def test_put_without_resource_version_allowed_for_pods_and_nodes_refused_for_leases(
    cluster: Cluster, raw: RawApi
) -> None:
    await cluster.add_node(name="node-a")
    node = (await raw.get(f"{NODES}/node-a")).body
    del node["metadata"]["resourceVersion"]
    node["metadata"]["labels"]["x"] = "y"
    assert (await raw.put(f"{NODES}/node-a", node)).status == 200
    await cluster.add_pod(name="p", node="node-a")
    current = (await raw.get(f"{PODS}/p")).body
    del current["metadata"]["resourceVersion"]
    current["metadata"]["labels"] = {"changed": "yes"}
    assert (await raw.put(f"{PODS}/p", current)).status == 200
    await raw.post(LEASES, lease("lock"))
    reply = await raw.put(f"{LEASES}/lock", lease("lock", holder="b"))
    assert reply.status == 422
    assert reply.reason == "Invalid"
    assert reply.message == (
        'leases.coordination.k8s.io "lock" is invalid: metadata.resourceVersion: Invalid value: 0: '
        "must be specified for an update"
    )
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: must be specified for an update",
            "field": "metadata.resourceVersion",
        }
    ]


async def test_put_to_missing_object_creates_leases_only(cluster: Cluster, raw: RawApi) -> None:
    created = await raw.put(f"{LEASES}/fresh", lease("fresh"))
    assert created.status == 201
    assert created.body["metadata"]["uid"]
    await cluster.add_node(name="node-a")
    assert (await raw.put(f"{PODS}/ghost", pod("ghost", node="node-a"))).status == 404
    node = (await raw.get(f"{NODES}/node-a")).body
    node["metadata"] = {"name": "ghost-node"}
    assert (await raw.put(f"{NODES}/ghost-node", node)).status == 404


async def test_put_with_uid_of_a_deleted_and_recreated_lease_is_conflict(
    cluster: Cluster, raw: RawApi
) -> None:
    old = (await raw.post(LEASES, lease("lock"))).body
    assert (await raw.delete(f"{LEASES}/lock")).status == 200
    assert (await raw.post(LEASES, lease("lock", holder="other"))).status == 201
    reply = await raw.put(f"{LEASES}/lock", old)
    assert reply.status == 409
    assert reply.reason == "Conflict"
    assert "Precondition failed: UID in precondition" in reply.message
    assert (await raw.delete(f"{LEASES}/lock")).status == 200
    gone = await raw.put(f"{LEASES}/lock", old)  # the uid precondition also refuses to re-create
    assert gone.status == 409


async def test_post_of_an_existing_name_is_already_exists(cluster: Cluster, raw: RawApi) -> None:
    await raw.post(LEASES, lease("lock"))
    reply = await raw.post(LEASES, lease("lock"))
    assert reply.status == 409
    assert reply.reason == "AlreadyExists"
    assert reply.message == 'leases.coordination.k8s.io "lock" already exists'


async def test_delete_preconditions_and_return_shapes(cluster: Cluster, raw: RawApi) -> None:
    created = (await raw.post(LEASES, lease("lock"))).body
    wrong = await raw.delete(f"{LEASES}/lock", {"preconditions": {"uid": "not-it"}})
    assert wrong.status == 409
    assert wrong.reason == "Conflict"
    stale = await raw.delete(f"{LEASES}/lock", {"preconditions": {"resourceVersion": "1"}})
    assert stale.status == 409
    done = await raw.delete(
        f"{LEASES}/lock",
        {
            "preconditions": {
                "uid": created["metadata"]["uid"],
                "resourceVersion": created["metadata"]["resourceVersion"],
            }
        },
    )
    assert done.status == 200
    assert done.body["kind"] == "Status"
    assert done.body["status"] == "Success"
    assert done.body["details"]["uid"] == created["metadata"]["uid"]
    await cluster.add_node(name="node-a")
    await cluster.add_pod(name="p", node="node-a")
    reply = await raw.delete(f"{PODS}/p?gracePeriodSeconds=0")
    assert reply.status == 200
    assert reply.body["kind"] == "Pod"
    assert await cluster.get_object(kind="Pod", namespace="default", name="p") is None


async def test_delete_body_wins_over_query_and_negative_grace_becomes_one(
    cluster: Cluster, raw: RawApi
) -> None:
    await cluster.add_node(name="node-a")
    await cluster.add_pod(name="p", node="node-a", termination_grace_seconds=30)
    reply = await raw.request("DELETE", f"{PODS}/p?gracePeriodSeconds=0", body={"gracePeriodSeconds": -5})
    assert reply.status == 200
    assert reply.body["metadata"]["deletionGracePeriodSeconds"] == 1
    assert reply.body["metadata"]["deletionTimestamp"]


async def test_graceful_pod_delete_is_modified_then_deleted(cluster: Cluster, raw: RawApi) -> None:
    cluster.differs(
        "the emulator plays the kubelet and removes a terminating pod after its grace; on the real"
        " server only the pod's kubelet does, and no kubelet runs there (issue 15 part 2)"
    )
    await cluster.add_node(name="node-a")
    created = await cluster.add_pod(name="p", node="node-a", termination_grace_seconds=10)
    unscheduled = await cluster.add_pod(name="u", node=None, phase="Pending")
    rv = created["metadata"]["resourceVersion"]
    reply = await raw.delete(f"{PODS}/p")
    assert reply.body["metadata"]["deletionGracePeriodSeconds"] == 10
    assert await cluster.get_object(kind="Pod", namespace="default", name="p") is not None
    events = await raw.watch(
        f"{PODS}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dp", max_events=2
    )
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]  # removed after 10 s x grace_scale
    assert unscheduled["metadata"]["name"] == "u"
    gone = await raw.delete(f"{PODS}/u")  # unscheduled: grace 0, removed at once
    assert gone.status == 200
    assert await cluster.get_object(kind="Pod", namespace="default", name="u") is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-01-01T00:00:00Z", 'cannot parse "Z" as ".000000"'),
        ("2026-01-01T00:00:00.123Z", 'cannot parse ".123Z" as ".000000"'),
        ("2026-01-01T00:00:00.123456789Z", 'cannot parse "789Z" as "Z07:00"'),
        ("2026-01-01T00:00:00.123456", 'cannot parse "" as "Z07:00"'),
    ],
)
async def test_lease_microtime_needs_six_digits_and_a_zone(
    cluster: Cluster, raw: RawApi, value: str, problem: str
) -> None:
    body = lease("lock")
    body["spec"]["renewTime"] = value
    reply = await raw.post(LEASES, body)
    assert reply.status == 400
    assert reply.reason == "BadRequest"
    assert reply.message.startswith('Lease in version "v1" cannot be handled as a Lease: ')
    assert problem in reply.message
    body["spec"]["renewTime"] = "2026-01-01T00:00:00.000000+02:00"
    assert (await raw.post(LEASES, body)).status == 201


async def test_lease_preferred_holder_is_dropped_and_durations_validated(
    cluster: Cluster, raw: RawApi
) -> None:
    body = lease("lock")
    body["spec"]["preferredHolder"] = "someone"
    body["spec"]["strategy"] = "OldestEmulationVersion"
    created = await raw.post(LEASES, body)
    assert "preferredHolder" not in created.body["spec"]
    assert "strategy" not in created.body["spec"]
    bad = lease("bad")
    bad["spec"]["leaseDurationSeconds"] = 0
    reply = await raw.post(LEASES, bad)
    assert reply.status == 422
    assert "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0" in reply.message
    wrong_type = lease("typed")
    wrong_type["spec"]["leaseDurationSeconds"] = "30"
    assert (await raw.post(LEASES, wrong_type)).status == 400


async def test_missing_namespace_is_not_found(cluster: Cluster, raw: RawApi) -> None:
    reply = await raw.post(
        "/apis/coordination.k8s.io/v1/namespaces/elsewhere/leases", lease("x", namespace="elsewhere")
    )
    assert reply.status == 404
    assert reply.message == 'namespaces "elsewhere" not found'
    await asyncio.sleep(0)


async def test_a_pending_graceful_delete_can_only_be_shortened(cluster: Cluster, raw: RawApi) -> None:
    await cluster.add_node(name="node-a")
    await cluster.add_pod(name="p", node="node-a", termination_grace_seconds=3000)
    first = (await raw.delete(f"{PODS}/p")).body["metadata"]
    longer = (await raw.delete(f"{PODS}/p?gracePeriodSeconds=5000")).body["metadata"]
    assert (longer["deletionTimestamp"], longer["deletionGracePeriodSeconds"]) == (
        first["deletionTimestamp"],
        3000,
    )
    shorter = (await raw.delete(f"{PODS}/p?gracePeriodSeconds=1000")).body["metadata"]
    assert shorter["deletionGracePeriodSeconds"] == 1000
    moved = datetime.fromisoformat(first["deletionTimestamp"]) - datetime.fromisoformat(
        shorter["deletionTimestamp"]
    )
    assert moved == timedelta(seconds=2000)


async def test_history_records_writes_with_client_and_the_lock_state_of_lease_writes(
    emulator: Emulator, raw: RawApi
) -> None:
    body = lease("rebootd", annotations={"rebootd.io/state": '{"version": 1, "holders": {}}'})
    created = (await raw.post(LEASES, body)).body
    created["metadata"]["annotations"]["rebootd.io/state"] = '{"version": 1, "halted": {"node": "n1"}}'
    assert (await raw.put(f"{LEASES}/rebootd", created)).status == 200
    assert (await raw.delete(f"{LEASES}/rebootd")).status == 200
    writes = [r for r in emulator.history if r.kind == "Lease" and r.name == "rebootd"]
    assert [(r.event, r.client, r.verb) for r in writes] == [
        ("write", "anonymous", "create"),
        ("write", "anonymous", "update"),
        ("write", "anonymous", "delete"),
    ]
    assert [r.detail for r in writes[:2]] == [
        '{"version": 1, "holders": {}}',
        '{"version": 1, "halted": {"node": "n1"}}',
    ]
    assert writes[2].detail == ""
    assert writes[0].monotonic <= writes[1].monotonic <= writes[2].monotonic


async def test_unknown_fields_are_dropped_with_a_warning_or_refused_when_strict(
    cluster: Cluster, raw: RawApi
) -> None:
    body = lease("typo")
    body["spec"]["holderIdentty"] = "x"
    body["metadata"]["labelz"] = {"a": "b"}
    created = await raw.post(LEASES, body)
    assert created.status == 201
    assert "holderIdentty" not in created.body["spec"]
    assert "labelz" not in created.body["metadata"]
    assert created.headers["Warning"].startswith('299 - "unknown field \\"')
    stored = await cluster.get_object(kind="Lease", namespace="default", name="typo")
    assert stored is not None
    assert "holderIdentty" not in stored["spec"]
    strict = lease("strict")
    strict["spec"]["holderIdentty"] = "x"
    refused = await raw.post(f"{LEASES}?fieldValidation=Strict", strict)
    assert refused.status == 400
    assert refused.message == (
        'Lease in version "v1" cannot be handled as a Lease: '
        'strict decoding error: unknown field "spec.holderIdentty"'
    )
    patched = await raw.patch(
        f"{LEASES}/typo", {"spec": {"renewTme": "x"}}, content_type="application/merge-patch+json"
    )
    assert patched.status == 200
    assert "renewTme" not in patched.body["spec"]
    ignored = await raw.post(f"{LEASES}?fieldValidation=Ignore", dict(body, metadata={"name": "quiet"}))
    assert ignored.status == 201
    assert "Warning" not in ignored.headers
