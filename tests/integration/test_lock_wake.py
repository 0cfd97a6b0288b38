"""Wake labels (lock.py rule 7): a write of the Lease is sent to its holders and the head of the
queue only; the write that names a node in the head wakes it at once; a node outside the head
hears nothing of the hand-offs, and still takes the slot an empty head leaves free at its next
look. Against the emulator, whose label-selected watches behave as kube's cacheWatcher does
(ADDED on entering the selection, DELETED on leaving it, nothing while outside)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from rebootd.clock import SystemClock
from rebootd.emulator.emulator import Emulator
from rebootd.kube import Kube, ObjectFollower
from rebootd.lock import LeaseLock, LockConfig
from rebootd.lockstate import WAKE_LABEL_PREFIX, Limits, Waiter, wake_label
from tests.fixtures.emulator import EmulatorFactory

NS, NAME = "kube-system", "rebootd"
NODES = [f"n{i}" for i in range(6)]


def _config(node: str, *, grace: float) -> LockConfig:
    return LockConfig(
        namespace=NS,
        name=NAME,
        node=node,
        zone="z",
        limits=Limits(concurrency=1),
        ttl=60.0,
        renew_interval=10.0,
        boot_allowance=60.0,
        grace=grace,
    )


@contextlib.asynccontextmanager
async def cluster(
    emulator_factory: EmulatorFactory, tmp_path: Path, *, grace: float
) -> AsyncIterator[tuple[Emulator, Kube, dict[str, LeaseLock]]]:
    emu = await emulator_factory()
    for name in NODES:
        emu.add_node(name=name, zone="z")
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        clock = SystemClock()
        yield emu, kube, {n: LeaseLock(kube=kube, config=_config(n, grace=grace), clock=clock) for n in NODES}
    finally:
        await kube.close()


def wake_labels_of(emu: Emulator) -> dict[str, str]:
    lease = emu.get_object(kind="Lease", namespace=NS, name=NAME)
    labels = ((lease or {}).get("metadata") or {}).get("labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(WAKE_LABEL_PREFIX)}


async def test_a_lease_write_is_sent_to_the_holders_and_the_head_only(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    async with cluster(emulator_factory, tmp_path, grace=1.0) as (emu, kube, locks):
        holder = locks["n0"]
        await holder.refresh()
        assert (await holder.try_acquire(phase="draining")).allowed
        await holder.refill_head([Waiter(node=f"n{i}", zone="z", ticket=i) for i in range(1, 6)])
        assert list(holder.state.waiters) == ["n1", "n2"], "concurrency 1: a head of two"
        assert wake_labels_of(emu) == {
            wake_label("n0"): "holder",
            wake_label("n1"): "head",
            wake_label("n2"): "head",
        }
        async with contextlib.AsyncExitStack() as stack:
            followers: dict[str, ObjectFollower] = {}
            for name in NODES:
                selector = wake_label(name)
                follower = kube.follow(kind="leases", namespace=NS, name=NAME, label_selector=selector)
                followers[name] = await stack.enter_async_context(follower)
            await holder.renew()
            await holder.set_phase(phase="rebooting")
            rv = holder.lease["metadata"]["resourceVersion"] if holder.lease else ""
            for name in ("n0", "n1", "n2"):
                got = await followers[name].wait_for(
                    lambda obj: obj["metadata"]["resourceVersion"] == rv, timeout=5.0
                )
                assert got is not None, f"{name} was not sent the write"
            for name in ("n3", "n4", "n5"):
                assert followers[name].peek() is None, f"{name}, outside the head, was sent the Lease"
        # The release drops the holder's label and keeps the others (nothing else is touched).
        await holder.release()
        assert set(wake_labels_of(emu)) == {wake_label("n1"), wake_label("n2")}


async def test_a_node_named_in_the_head_is_woken_by_that_write(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # grace 1 s: a node outside the head reads the Lease every 10 s or so, so a wake-up within a
    # second is the watch's doing, not a look's.
    async with cluster(emulator_factory, tmp_path, grace=1.0) as (_emu, _kube, locks):
        holder, outsider = locks["n0"], locks["n3"]
        await holder.refresh()
        assert (await holder.try_acquire(phase="draining")).allowed
        await outsider.refresh()
        async with outsider.following() as changed:
            assert not await changed(0.3), "no write concerns it yet"
            assert outsider.state.waiters == {}
            await holder.refill_head([Waiter(node="n3", zone="z", ticket=3)])
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await changed(5.0)
            assert loop.time() - started < 1.0
            assert "n3" in outsider.state.waiters
            assert outsider.awake
            # Once in the head it is sent every write: the holder's release is seen at once.
            await holder.release()
            assert await changed(5.0)
            assert not outsider.state.holders
            assert (await outsider.try_acquire(phase="draining", join=False)).allowed


async def test_a_node_outside_the_head_takes_the_slot_an_empty_head_leaves_free_at_its_next_look(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    async with cluster(emulator_factory, tmp_path, grace=0.05) as (emu, _kube, locks):
        holder = locks["n0"]
        outsiders = [locks["n4"], locks["n5"]]
        await holder.refresh()
        assert (await holder.try_acquire(phase="draining")).allowed
        for lock in outsiders:
            await lock.refresh()
        async with contextlib.AsyncExitStack() as stack:
            waits = [await stack.enter_async_context(lock.following()) for lock in outsiders]
            await holder.release()  # not sent to either: neither carries a wake label
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10.0
            taken: list[str] = []
            while not taken and loop.time() < deadline:
                for lock, changed in zip(outsiders, waits, strict=True):
                    await changed(0.1)
                    if (await lock.try_acquire(phase="draining", join=False)).allowed:
                        taken.append(lock.config.node)
                        break
            assert len(taken) == 1, taken
            lease = emu.get_object(kind="Lease", namespace=NS, name=NAME)
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == taken[0]
            assert set(wake_labels_of(emu)) == {wake_label(taken[0])}
