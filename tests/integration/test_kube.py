"""The Kubernetes facade against the API emulator: round trips, paging, typed errors, retries,
request counting, the object follower and the client's own session, over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import random
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rebootd.emulator.emulator import Emulator
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.kube import (
    Conflict,
    Invalid,
    Kube,
    KubeError,
    NotFound,
    RetryPolicy,
    TooManyRequests,
    format_microtime,
)
from rebootd.metrics import Metrics
from tests.fixtures.emulator import FAST_TIMING, EmulatorFactory, emulator, emulator_factory

# the emulator fixtures, imported as tests/integration/conftest.py does for Prometheus
__all__ = ["emulator", "emulator_factory"]

SRC = Path(__file__).resolve().parents[2] / "src"
CLIENT = "rebootd-test"
TOKEN = "rebootd-test-token"
TOKENS = {TOKEN: (CLIENT, ["system:nodes"])}


# watches without bookmarks (a bookmark would move a quiet follower's resourceVersion on), each cut
# by the server after 1.1 s, i.e. after it counted as stable for the follower
QUIET = dataclasses.replace(FAST_TIMING, bookmark_interval=60.0)
DROP_EVERY_WATCH = FaultConfig(watch_drop=1.0, watch_drop_after_seconds=(1.1, 1.1))


class UpperBoundRandom(random.Random):
    """Jitter at its upper bound, so that back-off delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def until(predicate: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait, bounded, for a condition on counters that no event announces."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - request counters have no event to wait on
            await asyncio.sleep(0.005)


class RecordingSleep:
    """The Kube's injected sleep: records each delay, sleeps not at all, and runs `on_sleep` (e.g.
    ends the injected fault) after the given number of sleeps."""

    def __init__(self, *, after: int = 0, on_sleep: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._after = after
        self._on_sleep = on_sleep

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._on_sleep is not None and len(self.delays) >= self._after:
            self._on_sleep()
        await asyncio.sleep(0)


@pytest.fixture
async def kube(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Kube]:
    client = await Kube.connect(kubeconfig=emulator.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        yield client
    finally:
        await client.close()


async def connect(emu: Emulator, directory: Path, **kwargs: Any) -> Kube:
    token = kwargs.pop("token", None)
    return await Kube.connect(
        kubeconfig=emu.write_kubeconfig(directory / "kubeconfig", token=token), **kwargs
    )


def stored(emu: Emulator, kind: str, name: str, *, namespace: str = "") -> dict[str, Any]:
    """The object as the emulator holds it (must exist)."""
    obj = emu.get_object(kind=kind, namespace=namespace, name=name)
    assert obj is not None, f"{kind} {namespace}/{name} does not exist"
    return obj


def lease_body(name: str, *, holder: str = "node-a", when: datetime | None = None) -> dict[str, Any]:
    stamp = format_microtime(when or datetime.now(UTC))
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


# --- round trips ----------------------------------------------------------------------------------


async def test_nodes_round_trip_as_the_json_the_server_sent(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="node-a", zone="z1")
    node = await kube.get_node(name="node-a")
    assert isinstance(node, dict)
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "z1"
    assert (
        node["status"]["nodeInfo"]["bootID"]
        == stored(emulator, "Node", "node-a")["status"]["nodeInfo"]["bootID"]
    )

    cordoned = await kube.patch_node(
        name="node-a", patch={"spec": {"unschedulable": True}}, patch_type="strategic"
    )
    assert cordoned["spec"]["unschedulable"] is True
    labelled = await kube.patch_node(
        name="node-a", patch={"metadata": {"labels": {"rebootd.io/x": "1"}}}, patch_type="merge"
    )
    assert labelled["metadata"]["labels"]["rebootd.io/x"] == "1"
    rv = labelled["metadata"]["resourceVersion"]
    uncordoned = await kube.patch_node(
        name="node-a",
        patch=[
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "remove", "path": "/spec/unschedulable"},
        ],
        patch_type="json",
    )
    assert "unschedulable" not in uncordoned["spec"]
    assert stored(emulator, "Node", "node-a")["spec"].get("unschedulable") is None
    assert [
        n["metadata"]["name"] for n in await kube.list_nodes(label_selector="topology.kubernetes.io/zone=z1")
    ] == ["node-a"]


async def test_pods_daemonsets_and_pdbs_round_trip(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="node-a")
    emulator.add_node(name="node-b")
    emulator.add_workload(kind="Deployment", name="web", namespace="apps", replicas=2, nodes=["node-a"],
                          pdb_min_available=1)  # fmt: skip
    emulator.add_workload(kind="DaemonSet", name="agent", namespace="kube-system")

    on_a = await kube.list_pods(field_selector="spec.nodeName=node-a")
    assert sorted(p["metadata"]["namespace"] for p in on_a) == ["apps", "apps", "kube-system"]
    web = await kube.list_pods(namespace="apps", label_selector="app=web")
    assert len(web) == 2
    name = web[0]["metadata"]["name"]
    pod = await kube.get_pod(namespace="apps", name=name)
    assert pod["metadata"]["uid"] == web[0]["metadata"]["uid"]

    ds = await kube.get_daemonset(namespace="kube-system", name="agent")
    assert ds["kind"] == "DaemonSet"
    pdbs = await kube.list_pdbs(namespace="apps")
    assert [p["metadata"]["name"] for p in pdbs] == ["web"]
    assert [p["metadata"]["name"] for p in await kube.list_pdbs()] == ["web"]


async def test_eviction_and_deletion_remove_pods(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="node-a")
    emulator.add_pod(
        name="evictee", namespace="apps", node="node-a", owner_kind="ReplicaSet", owner_name="rs"
    )
    emulator.add_pod(name="deletee", namespace="apps", node="node-a")

    await kube.evict_pod(namespace="apps", name="evictee", grace_period_seconds=0)
    await kube.delete_pod(namespace="apps", name="deletee", grace_period_seconds=0)

    assert emulator.get_object(kind="Pod", namespace="apps", name="evictee") is None
    assert emulator.get_object(kind="Pod", namespace="apps", name="deletee") is None
    with pytest.raises(NotFound):
        await kube.evict_pod(namespace="apps", name="evictee")


async def test_leases_and_events_round_trip(emulator: Emulator, kube: Kube) -> None:
    node = emulator.add_node(name="node-a")
    created = await kube.create_lease(namespace="default", body=lease_body("rebootd"))
    assert created["spec"]["holderIdentity"] == "node-a"
    read = await kube.get_lease(namespace="default", name="rebootd")
    assert read == created
    read["spec"]["holderIdentity"] = "node-a,node-b"
    replaced = await kube.replace_lease(namespace="default", name="rebootd", body=read)
    assert replaced["spec"]["holderIdentity"] == "node-a,node-b"
    assert int(replaced["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    event = await kube.create_event(
        namespace="default",
        body={
            "metadata": {"generateName": "node-a."},
            "involvedObject": {
                "kind": "Node",
                "name": "node-a",
                "uid": node["metadata"]["uid"],
                "apiVersion": "v1",
            },
            "reason": "RebootScheduled",
            "message": "rebootd: reboot required",
            "type": "Normal",
            "source": {"component": "rebootd", "host": "node-a"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        },
    )
    assert event["metadata"]["name"].startswith("node-a.")
    stored = emulator.list_objects(kind="Event", namespace="default")
    assert [e["reason"] for e in stored] == ["RebootScheduled"]


async def test_microtime_written_by_format_microtime_is_accepted(emulator: Emulator, kube: Kube) -> None:
    whole_second = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    lease = await kube.create_lease(namespace="default", body=lease_body("whole", when=whole_second))
    assert lease["spec"]["renewTime"] == "2026-11-23T18:00:00.000000Z"
    fraction = datetime(2026, 11, 23, 18, 0, 0, 5, tzinfo=UTC)
    lease = await kube.create_lease(namespace="default", body=lease_body("fraction", when=fraction))
    assert lease["spec"]["acquireTime"] == "2026-11-23T18:00:00.000005Z"

    # what the library's isoformat() would send for the same instant: refused, as by a real server
    body = lease_body("iso")
    body["spec"]["renewTime"] = whole_second.isoformat()
    with pytest.raises(KubeError) as refused:
        await kube.create_lease(namespace="default", body=body)
    assert refused.value.status == 400
    assert emulator.get_object(kind="Lease", namespace="default", name="iso") is None


# --- paging ---------------------------------------------------------------------------------------


async def test_lists_are_paged_across_three_pages(emulator: Emulator, tmp_path: Path) -> None:
    for i in range(5):
        emulator.add_node(name=f"node-{i}")
    kube = await connect(emulator, tmp_path, page_size=2)
    try:
        names = [n["metadata"]["name"] for n in await kube.list_nodes()]
    finally:
        await kube.close()
    assert names == [f"node-{i}" for i in range(5)]
    assert kube.requests["list"] == 3
    assert emulator.request_counts[("anonymous", "list")] == 3


async def test_an_expired_continue_token_falls_back_to_one_unpaged_list(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(timing=dataclasses.replace(FAST_TIMING, continue_ttl=0.0))
    for i in range(5):
        emu.add_node(name=f"node-{i}")
    kube = await connect(emu, tmp_path, page_size=2)
    try:
        names = [n["metadata"]["name"] for n in await kube.list_nodes()]
    finally:
        await kube.close()
    assert names == [f"node-{i}" for i in range(5)]  # no duplicates from the pages read before
    assert kube.requests["list"] == 3  # first page, expired continuation, one unpaged list


# --- typed errors and retries ---------------------------------------------------------------------


async def test_conflict_is_raised_and_not_retried(emulator: Emulator, kube: Kube) -> None:
    created = await kube.create_lease(namespace="default", body=lease_body("rebootd"))
    winner = dict(created, spec={**created["spec"], "holderIdentity": "node-b"})
    await kube.replace_lease(namespace="default", name="rebootd", body=winner)
    before = kube.requests["update"]

    stale = dict(created, spec={**created["spec"], "holderIdentity": "node-c"})
    with pytest.raises(Conflict) as conflict:
        await kube.replace_lease(namespace="default", name="rebootd", body=stale)
    assert conflict.value.status == 409
    assert "the object has been modified" in conflict.value.message
    assert kube.requests["update"] == before + 1
    with pytest.raises(Conflict) as exists:
        await kube.create_lease(namespace="default", body=lease_body("rebootd"))
    assert exists.value.reason == "AlreadyExists"
    assert stored(emulator, "Lease", "rebootd", namespace="default")["spec"]["holderIdentity"] == "node-b"


async def test_not_found_and_invalid_are_typed(kube: Kube) -> None:
    with pytest.raises(NotFound) as missing:
        await kube.get_node(name="nowhere")
    assert missing.value.message == 'nodes "nowhere" not found'
    created = await kube.create_lease(namespace="default", body=lease_body("rebootd"))
    del created["metadata"]["resourceVersion"]
    with pytest.raises(Invalid) as invalid:
        await kube.replace_lease(namespace="default", name="rebootd", body=created)
    assert invalid.value.status == 422
    assert kube.requests["update"] == 1


async def test_5xx_is_retried_then_succeeds(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig(error500=0.5, error503=0.5))
    emu = await emulator_factory(faults=faults, tokens=TOKENS)
    emu.add_node(name="node-a")
    sleep = RecordingSleep(after=2, on_sleep=lambda: faults.exempt(client=CLIENT))
    metrics = Metrics.create()
    kube = await connect(emu, tmp_path, token=TOKEN, sleep=sleep, metrics=metrics)
    try:
        node = await kube.get_node(name="node-a")
    finally:
        await kube.close()
    assert node["metadata"]["name"] == "node-a"
    assert kube.requests["get"] == 3
    assert len(sleep.delays) == 2
    assert all(0.0 <= d <= 0.4 for d in sleep.delays)  # full jitter under base * 2**(attempt-1)
    failed = sum(
        metrics.registry.get_sample_value("rebootd_api_requests_total", {"verb": "get", "code": code}) or 0.0
        for code in ("500", "503")
    )
    assert failed == 2.0
    assert (
        metrics.registry.get_sample_value("rebootd_api_requests_total", {"verb": "get", "code": "200"}) == 1.0
    )


async def test_429_is_retried_after_the_servers_retry_after(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig(throttle429=1.0, retry_after_seconds=3))
    emu = await emulator_factory(faults=faults, tokens=TOKENS)
    sleep = RecordingSleep(after=2, on_sleep=lambda: faults.exempt(client=CLIENT))
    kube = await connect(emu, tmp_path, token=TOKEN, sleep=sleep)
    try:
        lease = await kube.create_lease(namespace="default", body=lease_body("rebootd"))
    finally:
        await kube.close()
    assert lease["metadata"]["name"] == "rebootd"
    assert sleep.delays == [3.0, 3.0]  # Retry-After: 3, not the (much shorter) backoff
    assert kube.requests["create"] == 3


async def test_retries_are_bounded_and_end_in_the_servers_error(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(
        faults=FaultInjector(seed=1, config=FaultConfig(error503=1.0)), tokens=TOKENS
    )
    sleep = RecordingSleep()
    kube = await connect(emu, tmp_path, token=TOKEN, sleep=sleep, retry=RetryPolicy(attempts=3))
    try:
        with pytest.raises(KubeError) as failed:
            await kube.list_nodes()
    finally:
        await kube.close()
    assert failed.value.status == 503
    assert kube.requests["list"] == 3
    assert len(sleep.delays) == 2


async def test_throttled_eviction_is_not_retried(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="node-a")
    emulator.add_workload(kind="Deployment", name="web", namespace="apps", replicas=2, pdb_min_available=2)
    pod = (await kube.list_pods(namespace="apps", label_selector="app=web"))[0]
    with pytest.raises(TooManyRequests) as refused:
        await kube.evict_pod(namespace="apps", name=pod["metadata"]["name"])
    assert "disruption budget" in refused.value.message
    assert kube.requests["evict"] == 1
    assert emulator.get_object(kind="Pod", namespace="apps", name=pod["metadata"]["name"]) is not None


async def test_connection_failures_are_retried(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig())
    emu = await emulator_factory(faults=faults, tokens=TOKENS)
    emu.add_node(name="node-a")
    faults.partition(client=CLIENT, seconds=60)  # the request hangs, then the connection is cut
    sleep = RecordingSleep(after=1, on_sleep=lambda: faults.heal(client=CLIENT))
    metrics = Metrics.create()
    kube = await connect(emu, tmp_path, token=TOKEN, sleep=sleep, metrics=metrics)
    try:
        node = await kube.get_node(name="node-a")
    finally:
        await kube.close()
    assert node["metadata"]["name"] == "node-a"
    assert kube.requests["get"] == 2
    assert (
        metrics.registry.get_sample_value("rebootd_api_requests_total", {"verb": "get", "code": "error"})
        == 1.0
    )


async def test_requests_are_counted_per_verb(emulator: Emulator, tmp_path: Path) -> None:
    emulator.add_node(name="node-a")
    emulator.add_pod(name="p1", namespace="apps", node="node-a", owner_kind="ReplicaSet", owner_name="rs")
    emulator.add_pod(name="p2", namespace="apps", node="node-a", owner_kind="ReplicaSet", owner_name="rs")
    metrics = Metrics.create()
    kube = await connect(emulator, tmp_path, metrics=metrics)
    try:
        await kube.get_node(name="node-a")
        await kube.list_nodes()
        await kube.patch_node(name="node-a", patch={"spec": {"unschedulable": True}}, patch_type="strategic")
        lease = await kube.create_lease(namespace="default", body=lease_body("rebootd"))
        await kube.replace_lease(namespace="default", name="rebootd", body=lease)
        await kube.evict_pod(namespace="apps", name="p1", grace_period_seconds=0)
        await kube.delete_pod(namespace="apps", name="p2", grace_period_seconds=0)
        async for _ in kube.watch(kind="nodes", timeout_seconds=1):
            pass
    finally:
        await kube.close()
    expected = {
        "get": 1,
        "list": 1,
        "patch": 1,
        "create": 1,
        "update": 1,
        "evict": 1,
        "delete": 1,
        "watch": 1,
    }
    assert dict(kube.requests) == expected
    for verb, count in expected.items():
        value = metrics.registry.get_sample_value("rebootd_api_requests_total", {"verb": verb, "code": "200"})
        value = value or metrics.registry.get_sample_value(
            "rebootd_api_requests_total", {"verb": verb, "code": "201"}
        )
        assert value == count, verb
    # the server saw the same requests (an eviction is a create on the pods/eviction subresource)
    server = {verb: n for (client, verb), n in emulator.request_counts.items() if client == "anonymous"}
    assert server == {"get": 1, "list": 1, "patch": 1, "create": 2, "update": 1, "delete": 1, "watch": 1}


class ForwardProxy:
    """A loopback HTTP forward proxy: relays each absolute-URL request and records its target."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def relay(self, request: web.Request) -> web.Response:
        assert self._session is not None
        self.seen.append(f"{request.method} {request.url}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "proxy-connection"}}
        async with self._session.request(
            request.method, str(request.url), headers=headers, data=await request.read()
        ) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)

    async def __aenter__(self) -> ForwardProxy:
        self._session = aiohttp.ClientSession(trust_env=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.relay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@pytest.mark.parametrize("bypass", [False, True], ids=["through-the-proxy", "no-proxy-bypasses"])
async def test_proxy_variables_are_honoured_as_read_at_start(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bypass: bool
) -> None:
    emulator.add_node(name="node-a")
    async with ForwardProxy() as proxy:
        for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        if bypass:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            monkeypatch.setenv("no_proxy", "127.0.0.1")
        kube = await connect(emulator, tmp_path)
        try:
            monkeypatch.delenv("HTTP_PROXY")  # read once at start, like client-go
            monkeypatch.delenv("http_proxy")
            node = await kube.get_node(name="node-a")
        finally:
            await kube.close()
    assert node["metadata"]["name"] == "node-a"
    if bypass:
        assert proxy.seen == []
    else:
        assert len(proxy.seen) == 1, proxy.seen
        assert proxy.seen[0].endswith("/api/v1/nodes/node-a"), proxy.seen


# --- watch and the follower -----------------------------------------------------------------------


async def test_watch_streams_changes_and_ends_at_the_server_timeout(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="node-a")
    _, rv = await kube.list_with_version(kind="nodes")
    seen: list[tuple[str, str]] = []

    async def cordon_soon() -> None:
        await asyncio.sleep(0.05)
        await kube.patch_node(name="node-a", patch={"spec": {"unschedulable": True}}, patch_type="strategic")

    task = asyncio.create_task(cordon_soon())
    async for event in kube.watch(kind="nodes", resource_version=rv, timeout_seconds=1):
        seen.append((event.type, event.object["metadata"]["resourceVersion"]))
        if event.type == "MODIFIED":
            assert event.object["spec"]["unschedulable"] is True
    await task
    assert ("MODIFIED", (await kube.get_node(name="node-a"))["metadata"]["resourceVersion"]) in seen
    assert {t for t, _ in seen} <= {"MODIFIED", "BOOKMARK"}


async def test_follower_sees_each_change_through_its_one_watch(
    emulator: Emulator, kube: Kube, tmp_path: Path
) -> None:
    other = await connect(emulator, tmp_path / "other")
    try:
        async with kube.follow(kind="leases", namespace="default", name="rebootd") as follower:
            before = follower.latest
            assert before is None  # does not exist yet
            # How fast is a benchmark's business (nox -s bench); here: the watch brings each change,
            # with no re-list and no poll (one list, asserted below).
            created = await other.create_lease(namespace="default", body=lease_body("rebootd"))
            assert await follower.changed(timeout=10.0)
            assert follower.latest == created

            replaced = await other.replace_lease(
                namespace="default",
                name="rebootd",
                body=dict(created, spec={**created["spec"], "holderIdentity": ""}),
            )
            assert await follower.changed(timeout=10.0)
            assert follower.latest == replaced

            assert not await follower.changed(timeout=0.2)  # nothing new since the caller last looked
    finally:
        await other.close()
    assert kube.requests["list"] == 1  # one list, then only the watch


async def test_follower_wait_for_returns_the_object_once_the_predicate_holds(
    emulator: Emulator, kube: Kube
) -> None:
    emulator.add_node(name="node-a")

    async def cordon_later() -> None:
        await asyncio.sleep(0)
        await kube.patch_node(name="node-a", patch={"spec": {"unschedulable": True}}, patch_type="strategic")

    async with kube.follow(kind="nodes", namespace=None, name="node-a") as follower:
        assert await follower.wait_for(lambda n: n["spec"].get("unschedulable") is True, timeout=0.1) is None
        task = asyncio.create_task(cordon_later())
        node = await follower.wait_for(lambda n: n["spec"].get("unschedulable") is True, timeout=10.0)
        await task
    assert node is not None
    assert node["spec"]["unschedulable"] is True


async def test_follower_sees_deletion_as_none(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="node-a")
    emulator.add_pod(name="p1", namespace="apps", node="node-a")
    async with kube.follow(kind="pods", namespace="apps", name="p1") as follower:
        assert follower.latest is not None
        await kube.delete_pod(namespace="apps", name="p1", grace_period_seconds=0)
        assert await follower.changed(timeout=1.0)
        assert follower.latest is None


async def test_follower_survives_dropped_watches(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = await emulator_factory(
        faults=FaultInjector(seed=3, config=DROP_EVERY_WATCH), tokens=TOKENS, timing=QUIET
    )
    kube = await connect(emu, tmp_path, token=TOKEN)
    other = await connect(emu, tmp_path / "other")
    try:
        created = await other.create_lease(namespace="default", body=lease_body("rebootd"))
        async with kube.follow(kind="leases", namespace="default", name="rebootd") as follower:
            assert follower.latest == created
            await until(lambda: kube.requests["watch"] >= 3)  # two watches cut by the server
            replaced = await other.replace_lease(
                namespace="default",
                name="rebootd",
                body=dict(created, spec={**created["spec"], "holderIdentity": "b"}),
            )
            assert await follower.changed(timeout=1.0)
            assert follower.latest == replaced
    finally:
        await kube.close()
        await other.close()
    assert kube.requests["watch"] >= 3
    assert kube.requests["list"] == 1  # drops resume from the last resourceVersion, no re-list


async def test_follower_relists_after_410_and_keeps_following(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(
        faults=FaultInjector(seed=3, config=DROP_EVERY_WATCH), tokens=TOKENS, timing=QUIET
    )
    kube = await connect(emu, tmp_path, token=TOKEN)
    other = await connect(emu, tmp_path / "other")
    try:
        created = await other.create_lease(namespace="default", body=lease_body("rebootd"))
        async with kube.follow(kind="leases", namespace="default", name="rebootd") as follower:
            # another object moves the resourceVersion on, then the history is compacted: resuming
            # from the follower's resourceVersion gets 410 Expired
            await other.create_lease(namespace="default", body=lease_body("unrelated"))
            emu.compact()
            # cut at 1.1 s, resumed: 410, re-listed at once, then watching again
            await until(lambda: kube.requests["list"] >= 2 and kube.requests["watch"] >= 3)
            assert kube.requests["list"] == 2  # the initial list and exactly one re-list
            replaced = await other.replace_lease(
                namespace="default",
                name="rebootd",
                body=dict(created, spec={**created["spec"], "holderIdentity": "b"}),
            )
            assert await follower.changed(timeout=1.0)
            assert follower.latest == replaced
    finally:
        await kube.close()
        await other.close()
    assert kube.requests["list"] == 2


async def test_follower_backs_off_when_every_resume_is_refused_with_410(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """Every resume is refused: each re-list after the first is preceded by a back-off that doubles
    (the injected sleep records them, and sleeps not at all: no wall clock involved)."""
    config = FaultConfig(watch_expire_on_resume=1.0)  # every watch from a resourceVersion gets 410
    emu = await emulator_factory(faults=FaultInjector(seed=3, config=config), tokens=TOKENS)
    sleep = RecordingSleep()
    kube = await connect(emu, tmp_path, token=TOKEN, sleep=sleep, rng=UpperBoundRandom())
    other = await connect(emu, tmp_path / "other")
    try:
        created = await other.create_lease(namespace="default", body=lease_body("rebootd"))
        async with kube.follow(kind="leases", namespace="default", name="rebootd") as follower:
            replaced = await other.replace_lease(
                namespace="default",
                name="rebootd",
                body=dict(created, spec={**created["spec"], "holderIdentity": "b"}),
            )
            assert await follower.changed(timeout=5.0)  # the re-lists still bring the change
            assert follower.latest == replaced
            await until(lambda: len(sleep.delays) >= 6)
            lists, delays = kube.requests["list"], list(sleep.delays)
    finally:
        await kube.close()
        await other.close()
    policy = RetryPolicy()
    assert delays[0] >= policy.base
    assert all(later == min(policy.cap, 2 * earlier) for earlier, later in itertools.pairwise(delays[:6]))
    assert delays[5] == policy.cap
    assert lists <= len(delays) + 2  # the first list, the one re-list at once, then one per back-off


# --- the client without kubernetes-asyncio, end to end --------------------------------------------


LEAN_CLIENT = """
import asyncio, json, sys
from pathlib import Path
from rebootd.kube import Kube

async def main():
    kube = await Kube.connect(kubeconfig=Path(sys.argv[1]))
    try:
        nodes = await kube.list_nodes()
        async with kube.follow(kind="nodes", namespace=None, name="node-a") as follower:
            cordoned = await kube.patch_node(name="node-a", patch={"spec": {"unschedulable": True}},
                                             patch_type="strategic")
            changed = await follower.changed(timeout=2.0)
            seen = follower.latest["spec"].get("unschedulable")
    finally:
        await kube.close()
    modules = sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes_asyncio")
    print(json.dumps({"modules": modules,
                      "nodes": [n["metadata"]["name"] for n in nodes], "changed": changed, "seen": seen,
                      "cordoned": cordoned["spec"]["unschedulable"]}))

asyncio.run(main())
"""


async def run_fresh_python(code: str, *args: str) -> dict[str, Any]:
    """A fresh interpreter, asynchronously (the emulator serves on this test's loop)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(code), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60.0)
    except TimeoutError:
        process.kill()
        await process.communicate()
        raise
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_client_loads_no_library_module_and_works_end_to_end(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_node(name="node-a")
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    result = await run_fresh_python(LEAN_CLIENT, str(kubeconfig))
    assert result["modules"] == []  # kubernetes-asyncio is for exec plugins and auth-providers only
    assert result["nodes"] == ["node-a"]
    assert result["cordoned"] is True
    assert result["changed"] is True
    assert result["seen"] is True


# --- credentials from the kubeconfig --------------------------------------------------------------


def exec_kubeconfig(emu: Emulator, directory: Path, token_file: Path) -> Path:
    """A kubeconfig whose user gets its token from an exec credential plugin (reads `token_file`)."""
    plugin = directory / "credential-plugin.py"
    plugin.write_text(
        "import json, pathlib, sys\n"
        f"token = pathlib.Path({str(token_file)!r}).read_text().strip()\n"
        'json.dump({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",\n'
        '           "status": {"token": token}}, sys.stdout)\n'
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emu", "cluster": {"server": emu.url}}],
        "users": [
            {
                "name": "plugin",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable,
                        "args": [str(plugin)],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "plugin"}}],
        "current-context": "emu",
    }
    path = directory / "exec-kubeconfig"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


async def test_exec_plugin_credentials_authenticate_and_refresh_after_401(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(tokens={"first": ("plugin-user", []), "second": ("plugin-user-2", [])})
    emu.add_node(name="node-a")
    token_file = tmp_path / "token"
    token_file.write_text("first")
    kube = await Kube.connect(kubeconfig=exec_kubeconfig(emu, tmp_path, token_file))
    try:
        await kube.get_node(name="node-a")
        assert emu.request_counts[("plugin-user", "get")] == 1
        # the credential is rotated and the old token revoked: a 401 re-runs the plugin once
        token_file.write_text("second")
        assert emu.api.tokens is not None
        emu.api.tokens.pop("first")
        await kube.get_node(name="node-a")
    finally:
        await kube.close()
    assert emu.request_counts[("plugin-user-2", "get")] == 1
    assert kube.requests["get"] == 3


async def test_a_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeError) as failed:
        await Kube.connect(kubeconfig=tmp_path / "absent")
    assert failed.value.reason == "ConfigError"
