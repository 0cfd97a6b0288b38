"""The real apiserver's size limits: annotations (256 KiB), request bodies (3 MiB), etcd's object
limit (1.5 MiB), label values and names; and the lock format 2 (every waiter in the Lease's
annotation) running into the first of them at about 3,300 waiting nodes.

Messages are kube-apiserver's (checked on v1.37.2): `field.TooLong` ("Too long: may not be more
than N bytes") from ValidateAnnotationsSize, `NewRequestEntityTooLargeError("limit is N")` from
the body reader, and etcd's "etcdserver: request is too large" passed on as a 500 without a
reason (an object over gRPC's 2 MiB gets a transport error instead: not emulated).
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.emulator.backends import Cluster
from tests.integration.emulator.http import LEASES, PODS, RawApi, lease, pod

ANNOTATIONS_LIMIT = 262_144
KEY = "example.com/blob"


def _annotated(name: str, size: int) -> dict[str, Any]:
    """A Lease whose annotations total exactly `size` bytes (key and value)."""
    return lease(name, annotations={KEY: "x" * (size - len(KEY))})


async def test_annotations_of_exactly_256_kib_are_accepted_and_one_byte_more_is_a_422(
    cluster: Cluster, raw: RawApi
) -> None:
    accepted = await raw.post(LEASES, _annotated("at-limit", ANNOTATIONS_LIMIT))
    assert accepted.status == 201, accepted.body
    refused = await raw.post(LEASES, _annotated("over-limit", ANNOTATIONS_LIMIT + 1))
    assert refused.status == 422
    assert refused.reason == "Invalid"
    assert refused.message == (
        'Lease.coordination.k8s.io "over-limit" is invalid: '
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    )
    assert refused.body["details"]["causes"] == [
        {
            "reason": "FieldValueTooLong",
            "message": "Too long: may not be more than 262144 bytes",
            "field": "metadata.annotations",
        }
    ]
    # An update that grows the annotations past the limit is refused the same way.
    current = (await raw.get(f"{LEASES}/at-limit")).body
    current["metadata"]["annotations"]["example.com/one-more"] = "y"
    grown = await raw.put(f"{LEASES}/at-limit", current)
    assert grown.status == 422
    assert "metadata.annotations: Too long: may not be more than 262144 bytes" in grown.message


async def test_a_request_body_over_3_mib_is_refused_with_413(cluster: Cluster, raw: RawApi) -> None:
    body = pod("huge-body")
    body["metadata"]["annotations"] = {"example.com/blob": "x" * (3 * 1024 * 1024)}
    refused = await raw.post(PODS, body)
    assert refused.status == 413
    assert refused.reason == "RequestEntityTooLarge"
    assert refused.message == "Request entity too large: limit is 3145728"


async def test_an_object_over_etcds_1_5_mib_is_refused_by_the_store(cluster: Cluster, raw: RawApi) -> None:
    body = pod("huge-object")
    body["spec"]["containers"][0]["args"] = ["x" * (1700 * 1024)]  # over 1.5 MiB, under gRPC's 2 MiB
    assert len(json.dumps(body)) < 3 * 1024 * 1024
    refused = await raw.post(PODS, body)
    assert refused.status == 500
    assert refused.message == "etcdserver: request is too large"
    assert "reason" not in refused.body
    assert (await raw.get(f"{PODS}/huge-object")).status == 404


async def test_label_values_and_names_beyond_their_limits_are_invalid(cluster: Cluster, raw: RawApi) -> None:
    long_value = await raw.post(PODS, pod("labelled", labels={"app": "v" * 64}))
    assert long_value.status == 422
    assert long_value.message.startswith(
        f'Pod "labelled" is invalid: metadata.labels: Invalid value: "{"v" * 64}": '
        "must be no more than 63 bytes"
    )
    at_limit = await raw.post(PODS, pod("labelled", labels={"app": "v" * 63}))
    assert at_limit.status == 201
    name = "n" * 254
    long_name = await raw.post(LEASES, lease(name))
    assert long_name.status == 422
    assert long_name.message.startswith(
        f'Lease.coordination.k8s.io "{name}" is invalid: metadata.name: Invalid value: "{name}": '
        "must be no more than 253 characters"
    )


def _format2_state(waiters: int) -> str:
    """The lock format 2 annotation with `waiters` queued nodes, cloud-style names and zones."""
    queue = {
        f"ip-10-{i // 65536 % 256}-{i // 256 % 256}-{i % 256}.eu-west-1.compute.internal": {
            "zone": f"eu-west-1{'abc'[i % 3]}",
            "ticket": i + 1,
        }
        for i in range(waiters)
    }
    data = {"version": 2, "holders": {}, "waiters": queue, "nextTicket": waiters + 1}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


async def test_the_format_2_lease_with_every_waiter_inline_is_refused_at_about_3300_waiters(
    cluster: Cluster, raw: RawApi
) -> None:
    created = await raw.post(LEASES, lease("rebootd"))
    assert created.status == 201
    current = created.body
    written = 0
    refused = None
    for waiters in range(3000, 3700, 50):  # bounded: the limit falls inside this range
        current["metadata"]["annotations"] = {"rebootd.io/state": _format2_state(waiters)}
        reply = await raw.put(f"{LEASES}/rebootd", current)
        if reply.status != 200:
            refused = (waiters, reply)
            break
        written = waiters
        current = reply.body
    assert refused is not None, "the format 2 state was never refused"
    waiters, reply = refused
    assert reply.status == 422
    assert reply.message == (
        'Lease.coordination.k8s.io "rebootd" is invalid: '
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    )
    assert 3150 <= written < waiters <= 3450, (written, waiters)
