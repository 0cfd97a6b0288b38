"""Drain against the emulator: kubectl drain semantics, PDBs, uid check, timeouts, stop and cancel.

Durations are scaled down: the emulator runs pod grace periods at 1/100 (`FAST_TIMING`), the
drain's 429 retry and poll intervals are a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from rebootd.clock import OffsetClock
from rebootd.drain import DrainError, DrainOptions, DrainStopped, DrainTimeout, drain_node
from rebootd.emulator.emulator import Emulator
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.kube import Kube, RetryPolicy
from rebootd.pods import Owner
from tests.fixtures.emulator import EmulatorFactory, Kubectl, emulator, emulator_factory, kubectl

__all__ = ["emulator", "emulator_factory", "kubectl"]

FAST = DrainOptions(poll=0.05, retry_429=0.05, timeout=10.0)


async def cordon(kube: Kube, *, node: str) -> None:
    """kubectl cordon (the drain tests do not go through rebootd's grant-scoped cordon)."""
    await kube.patch_node(name=node, patch={"spec": {"unschedulable": True}}, patch_type="strategic")


@pytest.fixture
async def kube(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Kube]:
    client = await Kube.connect(
        kubeconfig=emulator.write_kubeconfig(tmp_path / "kubeconfig"),
        retry=RetryPolicy(attempts=3, base=0.02, cap=0.1),
    )
    try:
        yield client
    finally:
        await client.close()


def pods_on(emu: Emulator, node: str) -> dict[str, dict[str, object]]:
    return {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
        for p in emu.list_objects(kind="Pod")
        if p["spec"].get("nodeName") == node
    }


def controller_uid(emu: Emulator, *, kind: str, name: str, namespace: str = "default") -> str:
    obj = emu.get_object(kind=kind, namespace=namespace, name=name)
    assert obj is not None
    return str(obj["metadata"]["uid"])


async def test_drain_evicts_through_pdbs_keeps_daemonset_pods_and_returns_owners(
    emulator: Emulator, kube: Kube
) -> None:
    for name in ("n1", "n2"):
        emulator.add_node(name=name)
    emulator.add_workload(kind="Deployment", name="web", replicas=2, nodes=["n1", "n2"], pdb_min_available=1)
    emulator.add_workload(kind="StatefulSet", name="db", replicas=1, nodes=["n1"], pdb_max_unavailable=1)
    emulator.add_workload(kind="DaemonSet", name="agent")
    web_on_n1 = [k for k in pods_on(emulator, "n1") if k.startswith("default/web-")]
    assert len(web_on_n1) == 1
    await cordon(kube, node="n1")

    result = await drain_node(kube, node="n1", options=FAST)

    assert sorted(p.key for p in result.evicted) == sorted([*web_on_n1, "default/db-0"])
    rs = next(o for o in emulator.list_objects(kind="ReplicaSet") if o["metadata"]["name"].startswith("web-"))
    assert set(result.owners) == {
        Owner(kind="ReplicaSet", name=rs["metadata"]["name"], uid=rs["metadata"]["uid"],
              api_version="apps/v1"),
        Owner(kind="StatefulSet", name="db", uid=controller_uid(emulator, kind="StatefulSet", name="db"),
              api_version="apps/v1"),
    }  # fmt: skip
    assert [(s.namespace, s.reason) for s in result.skipped] == [
        ("default", "DaemonSet-managed (DaemonSet agent)")
    ]
    left = pods_on(emulator, "n1")
    assert list(left) == [result.skipped[0].key], "only the DaemonSet pod stays on the drained node"
    # evicted pods really went through the Eviction API with the PDB admitting them
    evictions = [h for h in emulator.history if h.event == "eviction"]
    assert {h.name for h in evictions} >= {"db-0", web_on_n1[0].split("/")[1]}
    assert all(h.disruptions_allowed is None or h.disruptions_allowed >= 0 for h in evictions)


async def test_drain_returns_only_after_graceful_termination(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    pod = emulator.add_pod(name="slow", node="n1", owner_kind="ReplicaSet", owner_name="slow-rs",
                           termination_grace_seconds=40)  # fmt: skip
    await cordon(kube, node="n1")
    loop = asyncio.get_running_loop()
    started = loop.time()

    result = await drain_node(kube, node="n1", options=FAST)

    assert loop.time() - started >= 0.3, "40 s grace at 1/100 speed: the drain waited for it"
    assert [p.uid for p in result.evicted] == [pod["metadata"]["uid"]]
    assert emulator.get_object(kind="Pod", namespace="default", name="slow") is None


async def test_drain_with_pdb_at_zero_retries_429_then_times_out_naming_the_budget(
    emulator: Emulator, kube: Kube
) -> None:
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    emulator.add_workload(kind="Deployment", name="db", replicas=1, nodes=["n1"], pdb_min_available=1)
    await cordon(kube, node="n1")
    (db_pod,) = list(pods_on(emulator, "n1"))
    before = kube.requests["evict"]
    options = DrainOptions(poll=0.05, retry_429=0.1, timeout=0.75)

    with pytest.raises(DrainTimeout) as caught:
        await drain_node(kube, node="n1", options=options)

    attempts = kube.requests["evict"] - before
    assert 3 <= attempts <= 10, f"retried every 0.1 s for 0.75 s, not a hot loop: {attempts}"
    assert f"{db_pod}: PodDisruptionBudget db allows 0 disruptions (needs 1 healthy pods, has 1)" in str(
        caught.value
    )
    assert list(caught.value.pending) == [db_pod]
    assert db_pod in pods_on(emulator, "n1")


async def test_drain_of_pod_with_two_pdbs_fails_at_once_naming_pod_and_budgets(
    emulator: Emulator, kube: Kube, kubectl: Kubectl
) -> None:
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    emulator.add_workload(
        kind="Deployment", name="api", replicas=2, nodes=["n1", "n2"], pdb_max_unavailable=1
    )
    await kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "api-extra", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "maxUnavailable": 1},
    }))  # fmt: skip
    (api_pod,) = list(pods_on(emulator, "n1"))
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(DrainError) as caught:
        await drain_node(kube, node="n1", options=DrainOptions(poll=0.05, retry_429=0.05, timeout=30.0))

    assert not isinstance(caught.value, DrainTimeout)
    assert loop.time() - started < 5.0
    message = str(caught.value)
    assert api_pod in message
    assert "more than one PodDisruptionBudget (api, api-extra)" in message


async def test_pod_selector_limits_evictions_to_matching_pods(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    emulator.add_workload(kind="Deployment", name="web", replicas=1, nodes=["n1"], labels={"tier": "front"})
    emulator.add_workload(kind="Deployment", name="cache", replicas=1, nodes=["n1"], labels={"tier": "back"})
    await cordon(kube, node="n1")
    cache_pod = next(k for k in pods_on(emulator, "n1") if k.startswith("default/cache-"))

    result = await drain_node(kube, node="n1", options=DrainOptions(poll=0.05, pod_selector="tier=front"))

    assert [p.key.split("-")[0] for p in result.evicted] == ["default/web"]
    assert list(pods_on(emulator, "n1")) == [cache_pod]


async def test_drain_waits_for_the_evicted_uid_not_the_name(emulator: Emulator, kube: Kube) -> None:
    """kubectl's uid check: a StatefulSet pod recreated under the same name (here on the same,
    uncordoned node) is a new pod, and the drain does not wait for it to go away too."""
    emulator.add_node(name="n1")
    emulator.add_workload(kind="StatefulSet", name="db", replicas=1, nodes=["n1"])
    old = emulator.get_object(kind="Pod", namespace="default", name="db-0")
    assert old is not None

    result = await drain_node(kube, node="n1", options=FAST)

    assert [(p.key, p.uid) for p in result.evicted] == [("default/db-0", old["metadata"]["uid"])]
    for _ in range(100):  # the StatefulSet controller recreates db-0 right after the old one is gone
        new = emulator.get_object(kind="Pod", namespace="default", name="db-0")
        if new is not None and new["spec"].get("nodeName") == "n1":
            break
        await asyncio.sleep(0.02)
    assert new is not None
    assert new["metadata"]["uid"] != old["metadata"]["uid"]


async def test_drain_evicts_bare_and_orphaned_daemonset_pods_and_skips_mirror_pods(
    emulator: Emulator, kube: Kube
) -> None:
    emulator.add_node(name="n1")
    emulator.add_pod(name="bare", node="n1", empty_dir=True)
    emulator.add_pod(name="orphan", node="n1", owner_kind="DaemonSet", owner_name="gone-ds")
    emulator.add_pod(name="etcd-n1", namespace="kube-system", node="n1",
                     annotations={"kubernetes.io/config.mirror": "abc"})  # fmt: skip
    emulator.add_pod(name="done", node="n1", phase="Succeeded", owner_kind="DaemonSet", owner_name="gone-ds")

    result = await drain_node(kube, node="n1", options=FAST)

    assert sorted(p.key for p in result.evicted) == ["default/bare", "default/done", "default/orphan"]
    assert [(s.key, s.reason) for s in result.skipped] == [
        ("kube-system/etcd-n1", "mirror pod (static pod managed by the kubelet)")
    ]
    assert {(o.kind, o.name) for o in result.owners} == {("DaemonSet", "gone-ds")}
    assert list(pods_on(emulator, "n1")) == ["kube-system/etcd-n1"]


async def test_skip_wait_for_delete_timeout_skips_and_stops_waiting_for_stuck_pods(
    emulator: Emulator, kube: Kube
) -> None:
    """A node whose kubelet is down keeps pods Terminating forever; with the option, pods already
    terminating too long are skipped and freshly evicted ones are not waited for once they are.
    The drain's clock runs 10 minutes ahead instead of the test waiting."""
    emulator.add_node(name="n1")
    emulator.add_pod(name="stuck", node="n1", owner_kind="ReplicaSet", owner_name="rs")
    emulator.add_pod(name="fresh", node="n1", owner_kind="ReplicaSet", owner_name="rs")
    emulator.set_node_ready(name="n1", ready=False)
    await kube.delete_pod(namespace="default", name="stuck")
    ahead = OffsetClock(offset=timedelta(minutes=10))
    options = DrainOptions(poll=0.05, retry_429=0.05, timeout=5.0, skip_wait_for_delete_timeout=60)

    result = await drain_node(kube, node="n1", options=options, clock=ahead)

    assert [(s.key, s.reason) for s in result.skipped] == [("default/stuck", "terminating for more than 60s")]
    assert [p.key for p in result.evicted] == ["default/fresh"]
    fresh = emulator.get_object(kind="Pod", namespace="default", name="fresh")
    assert fresh is not None
    assert fresh["metadata"].get("deletionTimestamp"), "still Terminating: not waited for"

    with pytest.raises(DrainTimeout) as caught:  # without the option the drain waits for it
        await drain_node(kube, node="n1", options=DrainOptions(poll=0.05, timeout=0.5), clock=ahead)
    assert "default/fresh: terminating (grace period 30s)" in str(caught.value)


async def test_drain_in_terminating_namespace_waits_for_the_pods(
    emulator: Emulator, kube: Kube, kubectl: Kubectl
) -> None:
    """403 NamespaceTerminating: the pod is being deleted with its namespace; wait, do not fail."""
    emulator.add_node(name="n1")
    emulator.add_pod(name="job", namespace="doomed", node="n1", owner_kind="ReplicaSet", owner_name="rs",
                     termination_grace_seconds=20)  # fmt: skip
    await kubectl("delete", "namespace", "doomed", "--wait=false")

    result = await drain_node(kube, node="n1", options=FAST)

    assert [p.key for p in result.evicted] == ["doomed/job"]
    assert emulator.get_object(kind="Pod", namespace="doomed", name="job") is None


async def test_stop_event_aborts_a_blocked_drain_promptly(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    emulator.add_workload(kind="Deployment", name="db", replicas=1, nodes=["n1"], pdb_min_available=1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, stop.set)

    # Without the stop, the retry wait alone would outlast this bound tenfold.
    with pytest.raises(DrainStopped):
        async with asyncio.timeout(60):
            await drain_node(kube, node="n1", options=DrainOptions(poll=0.05, retry_429=600.0), stop=stop)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("rebootd.drain")]


@pytest.mark.timeout(20)
async def test_cancelling_a_drain_leaves_no_tasks_behind(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    emulator.add_workload(kind="Deployment", name="db", replicas=1, nodes=["n1"], pdb_min_available=1)
    emulator.add_workload(
        kind="Deployment", name="web", replicas=1, nodes=["n1"], termination_grace_seconds=3000
    )
    task = asyncio.create_task(drain_node(kube, node="n1", options=DrainOptions(poll=0.05, retry_429=0.05)))

    def terminating() -> bool:  # web evicted (3000 s grace): the drain is waiting for it and retrying db
        return any(
            p["metadata"].get("deletionTimestamp")
            for p in emulator.list_objects(kind="Pod", namespace="default")
            if p["metadata"]["name"].startswith("web")
        )

    await emulator.wait_until(terminating, within=10)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("rebootd.drain")]


async def test_drain_with_nothing_to_evict_makes_no_eviction_requests(emulator: Emulator, kube: Kube) -> None:
    emulator.add_node(name="n1")
    emulator.add_workload(kind="DaemonSet", name="agent")
    before = dict(kube.requests)

    result = await drain_node(kube, node="n1", options=FAST)

    assert result.evicted == ()
    assert [s.reason for s in result.skipped] == ["DaemonSet-managed (DaemonSet agent)"]
    spent = {verb: n - before.get(verb, 0) for verb, n in kube.requests.items() if n != before.get(verb, 0)}
    assert spent == {"list": 1, "get": 1}, "one list of the node's pods, one GET of the DaemonSet"


async def test_drain_requests_stay_modest_for_many_pods(emulator: Emulator, kube: Kube) -> None:
    """40 pods evicted at once, waited for by one watch: about one eviction per pod plus a
    handful of lists and watches, not a GET per pod per second."""
    emulator.add_node(name="n1")
    emulator.add_node(name="n2")
    emulator.add_workload(
        kind="Deployment", name="web", replicas=40, nodes=["n1"], termination_grace_seconds=50
    )
    await cordon(kube, node="n1")
    before = dict(kube.requests)

    result = await drain_node(kube, node="n1", options=FAST)

    assert len(result.evicted) == 40
    spent = {verb: n - before.get(verb, 0) for verb, n in kube.requests.items() if n != before.get(verb, 0)}
    assert spent["evict"] == 40
    assert spent.get("list", 0) + spent.get("watch", 0) <= 6, spent
    assert "get" not in spent


async def test_drain_completes_through_dropped_and_expired_watches(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    faults = FaultInjector(
        seed=7,
        config=FaultConfig(watch_drop=1.0, watch_drop_after_seconds=(0.05, 0.15), watch_expire_on_resume=0.5,
                           error503=0.1),
    )  # fmt: skip
    emu = await emulator_factory(faults=faults)
    emu.add_node(name="n1")
    emu.add_node(name="n2")
    emu.add_workload(kind="Deployment", name="web", replicas=5, nodes=["n1"], termination_grace_seconds=80)
    client = await Kube.connect(
        kubeconfig=emu.write_kubeconfig(tmp_path / "kubeconfig"),
        retry=RetryPolicy(attempts=5, base=0.02, cap=0.1),
    )
    try:
        await cordon(client, node="n1")
        result = await drain_node(client, node="n1", options=FAST)
        watches = client.requests["watch"]
    finally:
        await client.close()

    assert len(result.evicted) == 5
    assert pods_on(emu, "n1") == {}
    assert faults.counts["watch_drop"] >= 2, "the 0.8 s of termination outlived several watch streams"
    assert watches <= 40, f"resumed after each drop, not in a hot loop: {watches}"


async def test_eviction_conflicts_are_retried_not_fatal(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """A 409 on an eviction means the apiserver lost a race on the PDB and evicted nothing."""
    faults = FaultInjector(seed=3, config=FaultConfig(conflict409=0.5))
    emu = await emulator_factory(faults=faults)
    emu.add_node(name="n1")
    emu.add_node(name="n2")
    emu.add_workload(kind="Deployment", name="web", replicas=6, nodes=["n1"], pdb_max_unavailable=6)
    client = await Kube.connect(
        kubeconfig=emu.write_kubeconfig(tmp_path / "kubeconfig"),
        retry=RetryPolicy(attempts=3, base=0.02, cap=0.1),
    )
    try:
        result = await drain_node(client, node="n1", options=FAST)
        evictions = client.requests["evict"]
    finally:
        await client.close()

    assert len(result.evicted) == 6
    assert faults.counts["conflict409"] >= 2
    assert evictions == 6 + faults.counts["conflict409"]
