"""Writes applied but answered never (reset) or by a 504, seeded and scripted; a late kubelet; the
machine's own boot id ahead of its Node."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp

from rebootd.emulator.emulator import Emulator
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.emulator.scripted import NodeWriteRule, ScriptedWrites
from tests.fixtures.emulator import FAST_TIMING, EmulatorFactory
from tests.integration.emulator.http import LEASES, NODES, RawApi, lease

MERGE = "application/merge-patch+json"
CORDON = {"spec": {"unschedulable": True}}


async def test_a_lost_reset_applies_the_write_and_cuts_the_connection(
    emulator_factory: EmulatorFactory,
) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig(lost_reset=1.0))
    emu = await emulator_factory(faults=faults, tokens={"t-1": ("daemon-1", [])})
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-1"}) as session:
        try:
            await RawApi(session, emu.url).post(LEASES, lease("applied"))
        except aiohttp.ClientError:
            pass
        else:
            raise AssertionError("the client got the answer of a write whose response was lost")
        assert emu.get_object(kind="Lease", namespace="default", name="applied") is not None
        assert (await RawApi(session, emu.url).get(LEASES)).status == 200  # reads are never lost
    assert faults.counts["lost_reset"] == 1


async def test_a_lost_504_applies_the_write_and_answers_gateway_timeout(
    emulator_factory: EmulatorFactory,
) -> None:
    faults = FaultInjector(seed=1, config=FaultConfig(lost_504=1.0))
    emu = await emulator_factory(faults=faults, tokens={"t-1": ("daemon-1", [])})
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-1"}) as session:
        api = RawApi(session, emu.url)
        first = await api.post(LEASES, lease("twice"))
        assert first.status == 504
        assert emu.get_object(kind="Lease", namespace="default", name="twice") is not None
        retried = await api.post(LEASES, lease("twice"))  # the retry meets its own earlier write
        assert retried.status == 409
        assert retried.reason == "AlreadyExists"


async def test_a_scripted_loss_hits_the_first_daemon_cordon_only(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(tokens={"t-d": ("rebootd@node-a", []), "t-o": ("operator", [])})
    for name in ("node-a", "node-b"):
        emu.add_node(name=name)
    scripted = ScriptedWrites(
        is_daemon=lambda client: client.startswith("rebootd"),
        rules=[NodeWriteRule(what="cordon", nth=1, lose="lost_504")],
    )
    emu.api.write_hook = scripted
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer t-d"}) as daemon,
        aiohttp.ClientSession(headers={"Authorization": "Bearer t-o"}) as operator,
    ):
        labelled = await RawApi(daemon, emu.url).patch(
            f"{NODES}/node-a", {"metadata": {"labels": {"x": "y"}}}, content_type=MERGE
        )
        assert labelled.status == 200  # not a cordon
        by_operator = await RawApi(operator, emu.url).patch(f"{NODES}/node-b", CORDON, content_type=MERGE)
        assert by_operator.status == 200  # not a daemon
        lost = await RawApi(daemon, emu.url).patch(f"{NODES}/node-a", CORDON, content_type=MERGE)
        assert lost.status == 504
        node = emu.get_object(kind="Node", name="node-a")
        assert node is not None
        assert node["spec"]["unschedulable"] is True
        again = await RawApi(daemon, emu.url).patch(
            f"{NODES}/node-a", {"spec": {"unschedulable": False}}, content_type=MERGE
        )
        assert again.status == 200
        second = await RawApi(daemon, emu.url).patch(f"{NODES}/node-a", CORDON, content_type=MERGE)
        assert second.status == 200  # the rule fired once
    assert len(scripted.events) == 1
    assert "node-a" in scripted.events[0]


async def test_a_held_mark_waits_for_its_action_before_it_is_applied(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(tokens={"t-d": ("rebootd@node-a", [])})
    emu.add_node(name="node-a")
    seen: list[object] = []

    async def hold(node: str) -> None:
        stored = emu.get_object(kind="Node", name=node)
        assert stored is not None
        seen.append((stored["metadata"].get("annotations") or {}).get("rebootd.io/holder"))

    emu.api.write_hook = ScriptedWrites(
        is_daemon=lambda client: client.startswith("rebootd"),
        rules=[NodeWriteRule(what="mark", nth=1, hold=hold)],
    )
    mark = {"metadata": {"annotations": {"rebootd.io/holder": '{"node": "node-a"}'}}}
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t-d"}) as daemon:
        reply = await RawApi(daemon, emu.url).patch(f"{NODES}/node-a", mark, content_type=MERGE)
    assert reply.status == 200
    assert seen == [None]  # the action ran while the mark was not yet applied


async def test_a_late_kubelet_shows_the_old_boot_until_it_posts(emulator_factory: EmulatorFactory) -> None:
    timing = replace(FAST_TIMING, boot_seconds=0.1, kubelet_post_delay=0.3, node_monitor_grace=1.0)
    emu: Emulator = await emulator_factory(timing=timing)
    emu.add_node(name="node-a")

    def node_boot() -> str:
        node = emu.get_object(kind="Node", name="node-a")
        assert node is not None
        return str(node["status"]["nodeInfo"]["bootID"])

    old = node_boot()
    assert emu.machine_boot_id(name="node-a") == old
    emu.reboot_node(name="node-a")
    assert not emu.machine_up(name="node-a")
    await emu.wait_until(lambda: emu.machine_up(name="node-a"), within=2.0)
    new = emu.machine_boot_id(name="node-a")
    assert new != old
    assert node_boot() == old  # the kubelet has not posted yet: the old boot, a stale Ready
    await emu.wait_until(lambda: node_boot() == new, within=2.0)
    events = [r.event for r in emu.history if r.name == "node-a" and r.event != "write"]
    # faster than the grace period: never NotReady, yet the history closes the reboot
    assert events == ["reboot_started", "node_ready"]


async def test_a_dead_node_stays_ready_for_the_grace_period(emulator_factory: EmulatorFactory) -> None:
    timing = replace(FAST_TIMING, boot_seconds=5.0, node_monitor_grace=0.3)
    emu: Emulator = await emulator_factory(timing=timing)
    emu.add_node(name="node-a")
    emu.set_boot_failure(name="node-a")
    emu.reboot_node(name="node-a")

    def ready() -> bool:
        node = emu.get_object(kind="Node", name="node-a")
        assert node is not None
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])

    assert ready()
    started = asyncio.get_running_loop().time()
    await emu.wait_until(lambda: not ready(), within=3.0)
    assert asyncio.get_running_loop().time() - started >= 0.25
