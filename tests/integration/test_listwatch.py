"""The one list+watch loop, through each of its three owners (the followed object, a node's pods,
the recovery gate's cache), against the emulator's watch faults over real HTTP: a server that
refuses every resume with 410 Gone, or ends every watch at once, must not make the loop spin on
the API (before the loop was shared, the recovery cache and the node's pods re-listed after a
410 with no delay, and the cache resumed a watch that ended at once with no delay either)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from rebootd.drain import NodePods
from rebootd.emulator.emulator import Emulator
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.kube import Kube
from rebootd.recovery import Cache
from tests.fixtures.emulator import EmulatorFactory, emulator_factory

__all__ = ["emulator_factory"]

CLIENT = "rebootd-listwatch"
TOKEN = "rebootd-listwatch-token"
TOKENS = {TOKEN: (CLIENT, ["system:nodes"])}
WINDOW = 1.0  # seconds each owner runs under the fault
# Requests in WINDOW: a spinning loop makes hundreds (one per round trip on loopback); a loop that
# backs off from 0.2 s (doubling, full jitter) makes a handful.
AT_MOST = 15
SEE_WITHIN = 10.0

# an owner of the loop, running: yields "does it hold pod default/web-1 now?"
Owner = Callable[[Kube, Emulator], contextlib.AbstractAsyncContextManager[Callable[[], bool]]]


@contextlib.asynccontextmanager
async def recovery_cache(kube: Kube, emu: Emulator) -> AsyncIterator[Callable[[], bool]]:
    async with Cache(kube=kube, kind="pods", namespace="default") as cache:
        yield lambda: "default/web-1" in cache.objects


@contextlib.asynccontextmanager
async def node_pods(kube: Kube, emu: Emulator) -> AsyncIterator[Callable[[], bool]]:
    pods = NodePods(kube=kube, node="n1", retry_delay=0.2, watch_timeout=60)
    task = asyncio.create_task(pods.run(), name="test.node-pods")

    def holds_web_1() -> bool:
        stored = emu.get_object(kind="Pod", namespace="default", name="web-1")
        return stored is not None and pods.get(str(stored["metadata"]["uid"])) is not None

    try:
        yield holds_web_1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def followed_pod(kube: Kube, emu: Emulator) -> AsyncIterator[Callable[[], bool]]:
    async with kube.follow(kind="pods", namespace="default", name="web-1") as follower:
        yield lambda: follower.peek() is not None


OWNERS: dict[str, Owner] = {
    "recovery-cache": recovery_cache,
    "node-pods": node_pods,
    "follower": followed_pod,
}


async def run_under(
    emulator_factory: EmulatorFactory, tmp_path: Path, *, config: FaultConfig
) -> tuple[Kube, Emulator, FaultInjector]:
    faults = FaultInjector(seed=5, config=config)
    emu = await emulator_factory(faults=faults, tokens=TOKENS)
    emu.add_node(name="n1")
    kube = await Kube.connect(kubeconfig=emu.write_kubeconfig(tmp_path / "kubeconfig", token=TOKEN))
    return kube, emu, faults


async def until(predicate: Callable[[], bool], *, within: float) -> bool:
    """Bounded wait for a cache's content, which no event of the test's own announces."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("name", sorted(OWNERS))
async def test_a_watch_refused_with_410_on_every_resume_relists_with_a_backoff_not_in_a_spin(
    emulator_factory: EmulatorFactory, tmp_path: Path, name: str
) -> None:
    config = FaultConfig(watch_expire_on_resume=1.0)  # every watch from a resourceVersion: 410
    kube, emu, faults = await run_under(emulator_factory, tmp_path, config=config)
    try:
        async with OWNERS[name](kube, emu) as sees_web_1:
            await asyncio.sleep(WINDOW)  # the measured window: requests made while nothing changes
            lists, watches = kube.requests["list"], kube.requests["watch"]
            emu.add_pod(name="web-1", node="n1")
            seen = await until(sees_web_1, within=SEE_WITHIN)  # the re-lists still bring changes
    finally:
        await kube.close()
    assert faults.counts["watch_expire_on_resume"] >= 2
    assert lists <= AT_MOST, f"{name}: {lists} lists in {WINDOW} s: re-listing in a spin"
    assert watches <= AT_MOST, f"{name}: {watches} watches in {WINDOW} s"
    assert seen, f"{name} never saw the new pod"


@pytest.mark.parametrize("name", sorted(OWNERS))
async def test_a_watch_that_ends_at_once_is_resumed_after_a_backoff_not_in_a_spin(
    emulator_factory: EmulatorFactory, tmp_path: Path, name: str
) -> None:
    config = FaultConfig(watch_end_at_once=1.0)  # every watch ends cleanly, with no event, at once
    kube, emu, faults = await run_under(emulator_factory, tmp_path, config=config)
    try:
        async with OWNERS[name](kube, emu):
            await asyncio.sleep(WINDOW)  # the measured window
            watches = kube.requests["watch"]
    finally:
        await kube.close()
    assert faults.counts["watch_end_at_once"] >= 2
    assert watches <= AT_MOST, f"{name}: {watches} watches in {WINDOW} s: resuming in a spin"
    assert kube.requests["list"] == 1, "an ended watch resumes from its resourceVersion, no re-list"
