"""The safety rules of the lock (lock.py's safety model), each proven by the fault that would break
it, against the emulator with real daemons or real LeaseLock clients.

Each test names the failure of the safety issue it guards against; each failed on the code before
the grant, the holder deadline and the escalation gate (see the commit that added this file).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rebootd import admin
from rebootd.clock import OffsetClock, SystemClock
from rebootd.emulator.emulator import Emulator
from rebootd.emulator.registry import DeleteOptions
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.kube import Kube, RetryPolicy
from rebootd.lock import LOCK_FINALIZER, LeaseLock, LeaseStore, LockConfig, LostSlot
from rebootd.lockstate import STATE_ANNOTATION, Holder, Limits, LockState
from rebootd.marks import HALT_ANNOTATION, NODE_MARK_ANNOTATION, Mark
from rebootd.node import set_annotations
from rebootd.phases import Phase
from rebootd.sim.harness import DaemonSeams, SimCluster, SimNode, sim_pod_uid
from rebootd.sim.invariants import reboot_counts
from tests.fixtures.cluster import FAST_ENV, ClusterFactory, all_done, wait_phase
from tests.fixtures.emulator import EmulatorFactory

NS, NAME = "kube-system", "rebootd"
LEASES = BY_GROUP_RESOURCE[("coordination.k8s.io", "leases")]
FAST_RETRY = RetryPolicy(attempts=3, base=0.02, cap=0.1)
REPORT_SKELETON: dict[str, Any] = {
    "lock": f"{NS}/{NAME}",
    "holders": [],
    "waiters": [],
    "paused": None,
    "reboot_required": [],
    "window": {"open": True, "next_open": "now", "schedule": "always"},
}


def lease_of(emu: Emulator) -> dict[str, Any] | None:
    return emu.get_object(kind="Lease", namespace=NS, name=NAME)


def node_of(emu: Emulator, name: str) -> dict[str, Any]:
    obj = emu.get_object(kind="Node", name=name)
    assert obj is not None
    return obj


def delete_lease(emu: Emulator, *, force: bool = False) -> None:
    """An operator's `kubectl delete lease`; `force` also strips the finalizer (a GitOps prune
    with finalizers removed, or `kubectl patch ... finalizers: null`)."""
    emu.registry.delete(LEASES, NS, NAME, DeleteOptions(), client="admin")
    if force and lease_of(emu) is not None:
        emu.registry.patch(
            LEASES,
            NS,
            NAME,
            content_type="application/merge-patch+json",
            raw=json.dumps({"metadata": {"finalizers": None}}).encode(),
            client="admin",
        )


def slow_pods(emu: Emulator, node: str, *, replicas: int = 2, grace: int = 3000) -> None:
    emu.add_workload(
        kind="Deployment",
        name=f"slow-{node}",
        replicas=replicas,
        nodes=[node],
        termination_grace_seconds=grace,
    )


# --- 1. a halt stops work already under way ---------------------------------------------------


async def test_a_reboot_command_that_always_fails_is_tried_a_bounded_number_of_times_then_halts(
    make_cluster: ClusterFactory,
) -> None:
    """Failure 1: the halt recorded after a failed reboot request did not stop the daemon from
    requesting the reboot again at once (about 1,500 attempts in 10 s). Now: three attempts with
    back-off, then a halt, and the node waits holding its slot."""
    cluster = await make_cluster(zones={"n1": "z1"}, workloads=False)
    n1 = cluster.nodes["n1"]
    n1.reboot_failures = -1
    n1.require_reboot()
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=20)
    await asyncio.sleep(2.0)  # long enough for hundreds of attempts if nothing stopped them
    halted = cluster.lease_state().halted
    assert halted is not None
    assert n1.reboot_requests == 3, n1.reboot_requests
    assert "failed" in str(halted["reason"])
    assert halted["node"] == "n1"
    holder = cluster.lease_state().holders["n1"]
    assert (holder.phase, holder.attempts) == ("rebooting", 3)
    mirror = node_of(cluster.emulator, "n1")["metadata"]["annotations"].get(HALT_ANNOTATION)
    assert mirror, "the halt is mirrored on the node"
    assert json.loads(mirror) == dict(halted)


async def test_a_reboot_command_that_fails_twice_then_succeeds_completes(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z2"}, workloads=False)
    cluster.nodes["n1"].reboot_failures = 2
    for node in cluster.nodes.values():
        node.require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2"}), within=30)
    assert cluster.nodes["n1"].reboot_requests == 3
    assert cluster.lease_state().halted is None
    assert reboot_counts(cluster.emulator.history) == {"n1": 1, "n2": 1}


async def test_a_halt_stops_a_second_holder_mid_drain_before_it_reboots(make_cluster: ClusterFactory) -> None:
    """Failure 1, concurrency 2: node n1's reboot fails for good and halts the rollout while n2 is
    still draining: n2 must stop, be put back and give its slot up, never reboot."""
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z2", "spare": "z3"},
        workloads=False,
        env={"REBOOTD_CONCURRENCY": "2", "REBOOTD_DRAIN_TIMEOUT": "2m"},
    )
    slow_pods(cluster.emulator, "n2")
    cluster.nodes["n1"].reboot_failures = -1
    # n1 first: were n2 drained first, its slow pods' replacements could land on n1 and hold n1's
    # drain (not its reboot) for their whole grace period
    cluster.nodes["n1"].require_reboot()
    await wait_phase(cluster, "n1", {"draining", "rebooting"})
    cluster.nodes["n2"].require_reboot()
    await wait_phase(cluster, "n2", {"draining"})
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=20)
    assert await cluster.wait_until(lambda: "n2" not in cluster.lease_state().holders, within=10)
    await asyncio.sleep(1.0)
    assert reboot_counts(cluster.emulator.history).get("n2", 0) == 0
    assert cluster.nodes["n2"].reboot_requests == 0
    n2 = node_of(cluster.emulator, "n2")
    assert not n2["spec"].get("unschedulable"), "put back"
    assert NODE_MARK_ANNOTATION not in (n2["metadata"].get("annotations") or {})


# --- 4. a frozen holder -----------------------------------------------------------------------


async def test_a_frozen_holder_stops_evicting_once_its_deadline_passed(make_cluster: ClusterFactory) -> None:
    """Failure 4: a daemon frozen past the TTL thawed and went on evicting on a node whose slot
    another node held by then. Now each eviction is fenced by the holder's deadline."""
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z2"}, workloads=False, env={"REBOOTD_DRAIN_TIMEOUT": "2m"}
    )
    emu = cluster.emulator
    # Evictions one at a time: a PDB that allows one disruption, replacements slow to be Ready.
    emu.add_workload(
        kind="Deployment",
        name="web",
        replicas=4,
        nodes=["n1"],
        pdb_max_unavailable=1,
        termination_grace_seconds=50,
    )
    n1 = cluster.nodes["n1"]
    n1.require_reboot()
    await wait_phase(cluster, "n1", {"draining"})
    assert await cluster.wait_until(
        lambda: any(r.event == "eviction" and r.client == "rebootd@n1" for r in emu.history), within=10
    )
    n1.freeze(seconds=6.0)  # three TTLs of 2 s
    cluster.nodes["n2"].require_reboot()
    # n2 sees n1's record go stale, reclaims it (n1 is up), takes the slot.
    assert await cluster.wait_until(lambda: reboot_counts(emu.history).get("n2", 0) == 1, within=30)
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2"}), within=60)
    slotless = [
        r
        for r in emu.history
        if r.event == "eviction" and r.client == "rebootd@n1" and "n1" not in _holders_at(emu, r.monotonic)
    ]
    assert not slotless, slotless


def _lock_writes(emu: Emulator) -> int:
    """Writes of the lock Lease (not the kubelets' heartbeat Leases)."""
    return sum(1 for r in emu.history if r.kind == "Lease" and r.event == "write" and r.name == NAME)


def _holders_at(emu: Emulator, at: float) -> set[str]:
    holders: set[str] = set()
    for rec in emu.history:
        if rec.monotonic > at:
            break
        if rec.kind == "Lease" and rec.event == "write" and rec.detail:
            holders = set(LockState.from_annotation(rec.detail).holders)
    return holders


# --- 5. proof of reboot from the host ----------------------------------------------------------


async def test_a_node_still_showing_its_old_boot_id_after_a_reboot_is_not_rebooted_again(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """Failure 5: after a reboot faster than the node monitor grace period, the Node still shows the
    old bootID and a stale Ready=True; the daemon read "never went down" and rebooted again. Now the
    host's own boot id decides, and the daemon waits for the kubelet to report the new boot."""
    emu, node, lease_uid = await _restarted_after_seeded_reboot(emulator_factory, tmp_path)
    await node.start()
    try:
        await asyncio.sleep(1.5)
        assert node.reboot_requests == 0, "rebooted a second time on a stale Node"
        assert node.phase == "verifying"
        emu.set_node_boot_id(name="n1", boot_id="new-boot")  # the kubelet's status arrives
        assert await _wait(lambda: node.phase == "idle" and not state_of_emu(emu).holders, within=15)
    finally:
        await node.stop()
    assert lease_uid == (lease_of(emu) or {})["metadata"]["uid"]


async def test_a_take_over_cut_off_between_its_lease_write_and_its_node_write_is_finished_after_restart(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """A take-over writes the Lease (our grant) and then the Node (the mark and cordon moved to our
    grant). A daemon that died between the two left a record whose grant no mark names: on restart
    it read no evidence and halted the rollout ("no boot id to prove its reboot"). The record now
    says which grant it was taken from, and the restarted daemon carries that mark first."""
    emu, node, _ = await _restarted_after_seeded_reboot(emulator_factory, tmp_path, taken_over_by="g-taker")
    emu.set_node_boot_id(name="n1", boot_id="new-boot")  # the node rebooted meanwhile
    await node.start()
    try:
        assert await _wait(lambda: node.phase == "idle" and not state_of_emu(emu).holders, within=15)
    finally:
        await node.stop()
    assert state_of_emu(emu).halted is None
    assert node.reboot_requests == 0
    after = node_of(emu, "n1")
    assert not after["spec"].get("unschedulable")
    assert NODE_MARK_ANNOTATION not in after["metadata"].get("annotations", {})


async def test_a_reclaimer_puts_back_the_mark_and_cordon_of_the_grant_a_dead_record_was_taken_from(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """The same cut-off take-over, its daemon then dead for good: the reclaimer scopes its put-back
    to the stale record's grant, which no mark names yet. It must put back the mark and cordon of
    the grant the record was taken from, or the node stays cordoned with no record behind it."""
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z2"}, workloads=False)
    emu = cluster.emulator
    await cluster.nodes["n1"].stop()  # n1's daemon is gone; its kubelet keeps renewing
    old = node_of(emu, "n1")["status"]["nodeInfo"]["bootID"]
    await _seed_rebooting_holder(
        emu, tmp_path, node="n1", boot=old, phase="draining", taken_over_by="g-taker", pod="dead-pod"
    )
    cluster.nodes["n2"].require_reboot()
    assert await cluster.wait_until(lambda: reboot_counts(emu.history).get("n2", 0) >= 1, within=30)
    assert await cluster.wait_until(lambda: not cluster.lease_state().holders, within=20)
    assert cluster.lease_state().halted is None
    n1 = node_of(emu, "n1")
    assert not n1["spec"].get("unschedulable"), "left cordoned by a grant no record answers for"
    assert NODE_MARK_ANNOTATION not in n1["metadata"].get("annotations", {})


async def test_an_empty_boot_id_is_never_proof_and_nothing_is_disrupted(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(tokens={"token-n1": ("rebootd@n1", ("rebootd",))})
    emu.add_node(name="n1", zone="z1")
    emu.set_node_boot_id(name="n1", boot_id="")
    node = SimNode(emulator=emu, name="n1", workdir=tmp_path / "n1", env=FAST_ENV, host_boot_id="")
    await node.start()
    try:
        node.require_reboot()
        assert await _wait(
            lambda: "no_boot_id" in str(node_of(emu, "n1")["metadata"].get("annotations", {})), within=10
        )
        assert node.reboot_requests == 0
        assert not node_of(emu, "n1")["spec"].get("unschedulable")
        assert not state_of_emu(emu).holders
        writes = _lock_writes(emu)
        await asyncio.sleep(1.0)  # five periods: a node that cannot prove a reboot does not spin on the lock
        assert _lock_writes(emu) == writes
    finally:
        await node.stop()


async def _restarted_after_seeded_reboot(
    emulator_factory: EmulatorFactory, tmp_path: Path, *, taken_over_by: str = ""
) -> tuple[Emulator, SimNode, str]:
    """Node n1 with a seeded holder in phase rebooting (`_seed_rebooting_holder`), and the daemon
    that starts on it after its reboot (host boot id "new-boot"; the Node still shows the old
    one); returns the emulator, that daemon (not started) and the Lease uid."""
    emu = await emulator_factory(tokens={"token-n1": ("rebootd@n1", ("rebootd",))})
    emu.add_node(name="n1", zone="z1")
    old = node_of(emu, "n1")["status"]["nodeInfo"]["bootID"]
    lease_uid = await _seed_rebooting_holder(emu, tmp_path, node="n1", boot=old, taken_over_by=taken_over_by)
    workdir, boot = tmp_path / "n1", "new-boot"
    node = SimNode(emulator=emu, name="n1", workdir=workdir, env=FAST_ENV, time_scale=0.05, host_boot_id=boot)
    return emu, node, lease_uid


async def _seed_rebooting_holder(
    emu: Emulator,
    tmp_path: Path,
    *,
    node: str,
    boot: str,
    phase: str = "rebooting",
    taken_over_by: str = "",
    pod: str = "",
) -> str:
    """A holder record in `phase` (rebooting: as a daemon leaves it when its reboot request was the
    last thing it did) and its mark under grant g-seeded; returns the Lease uid. `taken_over_by`:
    the record was then taken over under that grant, the daemon dying before it carried the mark
    (the Lease write of a take-over landed, its Node write did not)."""
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "seed"), retry=FAST_RETRY)
    try:
        lock = LeaseLock(kube=kube, config=_config(node, pod=sim_pod_uid(node)), clock=SystemClock())
        await lock.refresh()
        holder = Holder(
            node=node,
            zone="z1",
            phase=phase,
            grant="g-seeded",
            pod=pod or sim_pod_uid(node),
            lease=lock.uid,
            attempts=1 if phase == "rebooting" else 0,
        )
        record = holder
        if taken_over_by:
            record = replace(holder, grant=taken_over_by, seq=holder.seq + 1, taken_from=holder.grant)
        await lock.update(lambda s: s.with_holder(record), event="seed")
        mark = Mark(holder=holder, evidence={"bootID": boot, "bootSource": "host", "evicted": []})
        await kube.patch_node(
            name=node,
            patch={
                "spec": {"unschedulable": True},
                "metadata": {
                    "annotations": {NODE_MARK_ANNOTATION: mark.encode(), "rebootd.io/cordoned-by": "g-seeded"}
                },
            },
            patch_type="strategic",
        )
        return lock.uid
    finally:
        await kube.close()


def state_of_emu(emu: Emulator) -> LockState:
    lease = lease_of(emu)
    return LockState.from_annotation(
        ((lease or {}).get("metadata") or {}).get("annotations", {}).get(STATE_ANNOTATION)
    )


async def _wait(predicate: Any, *, within: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


# --- 6 and 8. deleting the Lease ------------------------------------------------------------


async def test_deleting_the_lease_keeps_a_halt_until_resume_then_lets_it_go(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """Failure 6: deleting the Lease (a likely move when a rollout looks stuck) cleared the halt.
    Now the finalizer keeps the Lease, halted, until an operator resumes; then it goes and is
    re-created, and the rollout goes on."""
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z2"}, workloads=False)
    emu = cluster.emulator
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "op"), retry=FAST_RETRY)
    try:
        lock = admin.operator_lock(kube=kube, namespace=NS, name=NAME, clock=SystemClock())
        await lock.refresh()
        assert await lock.halt(reason="test halt", node="n9")
        uid = lock.uid
        delete_lease(emu)
        lease = lease_of(emu)
        assert lease is not None
        assert lease["metadata"].get("deletionTimestamp"), "kept by the finalizer"
        assert LOCK_FINALIZER in lease["metadata"]["finalizers"]
        await lock.refresh()
        assert lock.deleting
        report = admin.render_status({**REPORT_SKELETON, "deleting": True, "halted": lock.state.halted})
        assert "DELETING" in report
        assert "HALTED" in report
        for node in cluster.nodes.values():
            node.require_reboot()
        await asyncio.sleep(1.0)
        assert not reboot_counts(emu.history), "nobody reboots while halted"
        assert state_of_emu(emu).halted is not None
        state = await lock.refresh()
        await admin.resume(lock=lock, halt=state.halted, pause=None)
        assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2"}), within=40)
        lease = lease_of(emu)
        assert lease is not None
        assert lease["metadata"]["uid"] != uid, "deleted, then re-created"
    finally:
        await kube.close()


async def test_a_lease_deleted_by_force_is_rebuilt_halted_from_the_halt_mirrored_on_the_node(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = await make_cluster(zones={"n1": "z1"}, workloads=False)
    emu = cluster.emulator
    cluster.nodes["n1"].reboot_failures = -1
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=20)
    reason = cluster.lease_state().halted
    delete_lease(emu, force=True)
    assert await cluster.wait_until(lambda: lease_of(emu) is not None, within=10), "re-created"
    assert cluster.lease_state().halted == reason
    assert "n1" in cluster.lease_state().holders, "the marked node is copied back in"


async def test_a_lease_recreated_twice_never_seats_more_holders_than_the_limit(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """Failure 8: A takes the slot; the Lease is deleted before A marks its node; B re-creates it
    (no mark: no A) and takes the slot; A marks; the Lease is deleted again and re-created from
    both marks. Before, A's confirming read found itself listed and went on beside B. Now A's
    grant was written to the first Lease, not this one: A backs out."""
    emu = await emulator_factory()
    for name in ("a", "b", "c"):
        emu.add_node(name=name, zone="z")
    kubes = [
        await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / f"k{i}"), retry=FAST_RETRY)
        for i in range(3)
    ]
    try:
        a, b, c = (
            LeaseLock(kube=k, config=_config(n), clock=SystemClock())
            for k, n in zip(kubes, "abc", strict=True)
        )
        await a.refresh()
        assert (await a.try_acquire(phase="draining")).allowed
        mine = a.mine
        assert mine is not None
        delete_lease(emu, force=True)
        await b.refresh()  # re-created, without a (not marked yet)
        assert (await b.try_acquire(phase="draining")).allowed
        await set_annotations(
            kubes[0],
            node="a",
            annotations={NODE_MARK_ANNOTATION: Mark(holder=mine, evidence={"bootID": "x"}).encode()},
        )
        delete_lease(emu, force=True)
        state = await c.refresh()  # re-created from the marks: a only (b never marked)
        assert "a" in state.holders
        with pytest.raises(LostSlot, match="re-created"):
            await a.confirm()
    finally:
        for k in kubes:
            await k.close()


async def test_a_rebuild_over_the_limits_halts_nothing_and_the_unconfirmed_holder_backs_out(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """Two marked nodes at concurrency 1, each granted in a Lease since deleted: the rebuilt Lease
    lists both (a slot is never dropped while its node may be disrupted), is not halted (the
    rollout needs no operator), and a holder confirming its grant there backs out."""
    emu = await emulator_factory()
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "k"), retry=FAST_RETRY)
    try:
        for name in ("a", "b"):
            emu.add_node(name=name, zone="z")
            holder = Holder(
                node=name, zone="z", phase="draining", grant=f"g-{name}", lease=f"lease-of-{name}"
            )
            await set_annotations(
                kube, node=name, annotations={NODE_MARK_ANNOTATION: Mark(holder=holder).encode()}
            )
        lock = LeaseLock(kube=kube, config=_config("c"), clock=SystemClock())
        state = await lock.refresh()
        assert set(state.holders) == {"a", "b"}
        assert state.halted is None
        a = LeaseLock(kube=kube, config=_config("a"), clock=SystemClock())
        a.grant = "g-a"
        with pytest.raises(LostSlot, match="re-created"):
            await a.confirm()
    finally:
        await kube.close()


def _config(node: str, *, pod: str = "") -> LockConfig:
    return LockConfig(
        namespace=NS,
        name=NAME,
        node=node,
        zone="z",
        limits=Limits(concurrency=1),
        ttl=2.0,
        renew_interval=0.3,
        boot_allowance=5.0,
        pod=pod,
    )


# --- 9. resume clears what it showed ---------------------------------------------------------


@pytest.fixture
async def operator(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[LeaseStore]:
    emu = await emulator_factory()
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "op"), retry=FAST_RETRY)
    try:
        lock = admin.operator_lock(kube=kube, namespace=NS, name=NAME, clock=SystemClock())
        await lock.refresh()
        yield lock
    finally:
        await kube.close()


async def test_resume_clears_only_the_halt_it_was_shown(operator: LeaseStore) -> None:
    """Failure 9: resume re-decided after a conflict and cleared a halt nobody had seen."""
    await operator.halt(reason="first", node="n1")
    shown = (await operator.refresh()).halted
    assert shown is not None
    await operator.update(
        lambda s: s.__class__(**{**s.__dict__, "halted": {**dict(shown), "reason": "second"}}),
        event="another halt",
    )
    with pytest.raises(admin.Refused, match="changed since it was read"):
        await admin.resume(lock=operator, halt=shown, pause=None)
    assert (await operator.refresh()).halted is not None


async def test_a_stale_holders_halt_is_dropped_when_its_record_changed_since_it_was_judged(
    operator: LeaseStore,
) -> None:
    """Chaos seed 113: an observer judged a holder dead on a fresh read (phase draining, not
    renewed), then read its Node; meanwhile the holder came back, wrote `rebooting` and rebooted,
    so the Node was NotReady, and the halt was recorded against a record that no longer
    existed. The halt is now conditional on the record judged."""
    judged = Holder(node="n1", zone="z", phase=Phase.DRAINING, seq=3, grant="g1")
    await operator.update(lambda s: s.with_holder(judged), event="seed a holder")
    renewed = replace(judged, phase=Phase.REBOOTING, seq=4)
    await operator.update(lambda s: s.with_holder(renewed), event="the holder renews")
    assert not await operator.halt(reason="n1 is not Ready", node="n1", expect=judged)
    assert (await operator.refresh()).halted is None
    assert await operator.halt(reason="n1 is not Ready", node="n1", expect=renewed)
    assert (await operator.refresh()).halted is not None


async def test_clearing_a_halt_leaves_a_pause_and_the_other_way_round(operator: LeaseStore) -> None:
    await admin.pause(lock=operator, reason="freeze", clock=SystemClock())
    await operator.halt(reason="broken", node="n1")
    state = await operator.refresh()
    await admin.resume(lock=operator, halt=state.halted, pause=None)
    state = await operator.refresh()
    assert state.halted is None
    assert state.paused is not None
    await admin.resume(lock=operator, halt=None, pause=state.paused)
    assert (await operator.refresh()).paused is None


# --- 7. the window gates the reboot itself ----------------------------------------------------


async def test_no_reboot_starts_after_the_window_closed_during_the_drain(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """Failure 7: the window was checked only before taking a slot; a drain running past its end
    was followed by a reboot outside it. Now the reboot request is behind the gate: put back."""
    emu = await emulator_factory(tokens={"token-n1": ("rebootd@n1", ("rebootd",))})
    emu.add_node(name="n1", zone="z1")
    slow_pods(emu, "n1", grace=300)  # about 3 s to drain
    today = datetime.now(UTC).date()
    clock = OffsetClock(start_at=datetime(today.year, today.month, today.day, 5, 59, 59, 500000, tzinfo=UTC))
    env = {**FAST_ENV, "REBOOTD_START_TIME": "05:00", "REBOOTD_END_TIME": "06:00", "REBOOTD_TIME_ZONE": "UTC"}
    cluster = SimCluster(emulator=emu, workdir=tmp_path / "c", env=env, zones={"n1": "z1"}, clock=clock)
    await cluster.start()
    try:
        cluster.nodes["n1"].require_reboot()
        await wait_phase(cluster, "n1", {"draining"})
        assert await cluster.wait_until(
            lambda: "window" in str(node_of(emu, "n1")["metadata"].get("annotations", {})), within=15
        )
        assert clock.now() - clock.start_at > timedelta(seconds=1.5)  # type: ignore[operator]
        assert cluster.nodes["n1"].reboot_requests == 0
        assert not node_of(emu, "n1")["spec"].get("unschedulable")
        assert not cluster.lease_state().holders
    finally:
        await cluster.stop()


# --- 10. a duplicate daemon -------------------------------------------------------------------


async def test_a_second_daemon_for_the_same_node_stands_by_and_the_node_reboots_once(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """Failure 10: a DaemonSet surge runs two daemons for one node; identified by node name only,
    both acted on the one record. Each grant now carries its Pod uid: the second stands by."""
    cluster = await make_cluster(zones={"n1": "z1"}, workloads=False)
    emu = cluster.emulator
    first = cluster.nodes["n1"]
    twin = SimNode(
        emulator=emu, name="n1", workdir=first.workdir, env=cluster.env, pod_uid=sim_pod_uid("n1", instance=1)
    )
    await twin.start()
    try:
        first.require_reboot()
        assert await cluster.wait_until(lambda: reboot_counts(emu.history).get("n1", 0) >= 1, within=20)
        assert await cluster.wait_until(lambda: not cluster.lease_state().holders, within=20)
        await asyncio.sleep(1.0)
        assert reboot_counts(emu.history) == {"n1": 1}
        assert first.reboot_requests + twin.reboot_requests == 1
        assert not node_of(emu, "n1")["spec"].get("unschedulable")
    finally:
        await twin.stop()


# --- 11. evidence off the Lease ---------------------------------------------------------------


async def test_the_lease_carries_no_evidence_the_node_mark_does(make_cluster: ClusterFactory) -> None:
    """Failure 11: baselines and evicted pods in the Lease annotation (about 40 KB per dense node)
    would pass the apiserver's 256 KiB annotation limit at concurrency ~6."""
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z2"})
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(
        lambda: getattr(cluster.lease_state().holders.get("n1"), "phase", "") == "rebooting", within=20
    )
    raw = (lease_of(cluster.emulator) or {})["metadata"]["annotations"][STATE_ANNOTATION]
    assert "evicted" not in raw
    assert "baseline" not in raw
    assert len(raw) < 1024
    mark = node_of(cluster.emulator, "n1")["metadata"]["annotations"][NODE_MARK_ANNOTATION]
    assert '"evicted"' in mark
    assert '"baseline"' in mark
    assert '"bootID"' in mark


async def test_a_lock_of_format_1_is_taken_over_by_its_nodes_daemon_and_finished(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """Upgrading mid-rollout: a Lease written by a daemon of lock format 1 (no grants, evidence
    inline) is migrated, its holder finished by the new daemon of that node, not guessed around."""
    cluster = await make_cluster(zones={"n1": "z1", "n2": "z2"}, workloads=False)
    emu = cluster.emulator
    for node in cluster.nodes.values():
        await node.stop()
    boot = node_of(emu, "n1")["status"]["nodeInfo"]["bootID"]
    v1 = json.dumps(
        {
            "version": 1,
            "holders": {
                "n1": {
                    "zone": "z1",
                    "phase": "draining",
                    "seq": 2,
                    "acquired": "t",
                    "evidence": {"bootID": boot, "wasUnschedulable": False},
                }
            },
            "waiters": {},
            "nextTicket": 1,
            "paused": None,
            "halted": None,
        }
    )
    v1_mark = json.dumps(
        {
            "node": "n1",
            "zone": "z1",
            "phase": "draining",
            "seq": 2,
            "acquired": "t",
            "evidence": {"bootID": boot, "wasUnschedulable": False},
        }
    )
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "op"), retry=FAST_RETRY)
    try:
        await admin.operator_lock(kube=kube, namespace=NS, name=NAME, clock=SystemClock()).refresh()
        lease = await kube.get_lease(namespace=NS, name=NAME)
        lease["metadata"]["annotations"][STATE_ANNOTATION] = v1
        await kube.replace_lease(namespace=NS, name=NAME, body=lease)
        await kube.patch_node(
            name="n1",
            patch={
                "spec": {"unschedulable": True},
                "metadata": {"annotations": {NODE_MARK_ANNOTATION: v1_mark}},
            },
            patch_type="strategic",
        )
    finally:
        await kube.close()
    fresh = SimCluster(emulator=emu, workdir=tmp_path / "new", env=cluster.env, zones=cluster.zones)
    await fresh.start()
    try:
        fresh.nodes["n1"].require_reboot()
        assert await fresh.wait_until(lambda: all_done(fresh, {"n1"}), within=30)
    finally:
        await fresh.stop()
    raw = (lease_of(emu) or {})["metadata"]["annotations"][STATE_ANNOTATION]
    assert json.loads(raw)["version"] == 3
    assert not node_of(emu, "n1")["spec"].get("unschedulable")


# --- the gate between taking a slot and the cordon --------------------------------------------


class HaltsAfterTheMark(Kube):
    """A daemon's client that, once its node's mark is written, sees a halt recorded (another node's
    reboot failed) before it gets on: the race between taking a slot and cordoning."""

    halted = False

    async def patch_node(self, *, name: str, patch: Any, patch_type: Any) -> dict[str, Any]:
        written = await super().patch_node(name=name, patch=patch, patch_type=patch_type)
        annotations = (
            ((patch.get("metadata") or {}).get("annotations") or {}) if isinstance(patch, dict) else {}
        )
        if annotations.get(NODE_MARK_ANNOTATION) and not self.halted:
            self.halted = True
            lease = await self.get_lease(namespace=NS, name=NAME)
            state = LockState.from_annotation(lease["metadata"]["annotations"][STATE_ANNOTATION])
            halted = replace(state, halted={"reason": "another node failed", "node": "elsewhere", "at": ""})
            lease["metadata"]["annotations"][STATE_ANNOTATION] = halted.to_annotation()
            await self.replace_lease(namespace=NS, name=NAME, body=lease)
        return written


async def test_a_halt_between_taking_the_slot_and_the_cordon_disrupts_nothing(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """The holder's confirming read finds the rollout halted since it took its slot: it puts its
    node back and releases without ever cordoning it (a cordon after the halt is a disruption
    after the halt, even if the slot guard undid it a moment later)."""
    emu = await emulator_factory(tokens={"token-n1": ("rebootd@n1", ("rebootd",))})
    emu.add_node(name="n1", zone="z1")
    node = SimNode(
        emulator=emu,
        name="n1",
        workdir=tmp_path / "n1",
        env=FAST_ENV,
        seams=DaemonSeams(connect=HaltsAfterTheMark.connect),
    )
    await node.start()
    try:
        node.require_reboot()
        assert await _wait(
            lambda: "halted" in str(node_of(emu, "n1")["metadata"].get("annotations", {})), within=10
        )
        assert await _wait(lambda: not state_of_emu(emu).holders, within=10)
    finally:
        await node.stop()
    cordons = [
        r for r in emu.history if r.kind == "Node" and r.unschedulable_after and not r.unschedulable_before
    ]
    assert not cordons, cordons
    assert node.reboot_requests == 0
    assert NODE_MARK_ANNOTATION not in (node_of(emu, "n1")["metadata"].get("annotations") or {})
