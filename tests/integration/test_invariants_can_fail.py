"""Every invariant can fail: each one judges a history made by a deliberately misbehaving actor
and must say FAIL.

Two kinds of misbehaving actor. Real runs of `rebootd simulate` whose daemons are built with a
broken double (`DaemonSeams`): a drain that deletes the pod when the PDB refuses its eviction and
skips the PDB preflight (issue 21's "done when"), and a daemon that halts at its first fault.
Where a whole broken daemon is impractical, a small misbehaving client makes real requests to the
emulator with a daemon's identity (its bearer token) through the project's API facade, and asks
for reboots through the simulated nodes' reboot method (`EmulatorHost.reboot`); the invariant is
then judged from the emulator's history exactly as `rebootd simulate` judges it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rebootd.daemon import Daemon
from rebootd.emulator.emulator import Emulator
from rebootd.kube import Kube, KubeError, TooManyRequests
from rebootd.lock import state_of
from rebootd.lockstate import STATE_ANNOTATION, Holder, LockState
from rebootd.schedule import Window
from rebootd.sim.harness import DaemonSeams, EmulatorHost, node_token, tokens_for
from rebootd.sim.invariants import (
    check_after_halt,
    check_concurrency,
    check_cordons,
    check_evictions_hold_slot,
    check_no_request_after_halt,
    check_one_reboot_per_need,
    check_pdb_disruptions,
    check_reboots,
    check_reboots_granted,
    check_requests_in_window,
    check_window,
)
from rebootd.sim.scenarios import plan_scenario
from rebootd.sim.simulate import EXIT_FAILED, HALT_CAUSES, SimulationConfig, layout, simulate
from tests.fixtures.emulator import EmulatorFactory

LOCK_NS, LOCK_NAME = "kube-system", "rebootd"
NODES = ("n1", "n2", "n3")
FAST = SimulationConfig(
    drain_seconds=0.3, boot_seconds=0.6, recovery_seconds=0.15, release_delay=0.1, workers=0
)


# --- real runs with a broken daemon --------------------------------------------------------------


class DeletesOn429(Kube):
    """A broken drain's API facade: an eviction the PDB refuses (429) becomes a direct delete."""

    async def evict_pod(
        self,
        *,
        namespace: str,
        name: str,
        grace_period_seconds: int | None = None,
        fence: Callable[[], None] | None = None,
    ) -> None:
        try:
            await super().evict_pod(
                namespace=namespace, name=name, grace_period_seconds=grace_period_seconds, fence=fence
            )
        except TooManyRequests:
            await self.delete_pod(namespace=namespace, name=name, grace_period_seconds=grace_period_seconds)


def without_pdb_preflight(**kwargs: Any) -> Daemon:
    """A daemon with no blockers at all: no PDB preflight before it takes a slot."""
    return Daemon(**{**kwargs, "blockers": []})


async def test_a_drain_that_deletes_on_429_and_skips_the_preflight_fails_invariant_4_in_pdb_blocked(
    tmp_path: Path,
) -> None:
    seams = DaemonSeams(connect=DeletesOn429.connect, daemon=without_pdb_preflight)
    config = replace(FAST, scenario="pdb-blocked", nodes=4, timeout=90)
    outcome = await simulate(config, workdir=tmp_path, seams=seams)
    check = outcome.report.invariants["evictions"]
    assert not check.ok, outcome.render()
    assert "default/ledger-0 deleted by rebootd@node-001" in check.detail
    assert "PDB ledger allowed no disruption (1 healthy, 1 desired)" in check.detail
    assert outcome.exit_code == EXIT_FAILED
    assert "FAIL  (4) no pod covered by a PDB" in outcome.render()


class HaltsAtFirstFault(Kube):
    """A daemon's API facade that records a halt in the Lease the first time a request meets a
    fault (a server error, a throttle, a lost response: the first retry, or an error it raises):
    what a daemon that gives up at its first fault would do."""

    node = ""
    _halted = False

    async def _send(self, **kwargs: Any) -> Any:
        try:
            return await super()._send(**kwargs)
        except KubeError as exc:
            if (exc.status >= 500 or exc.status in (0, 429)) and not self._halted and self.node:
                self._halted = True
                await self._halt(reason=f"gave up at the first fault: {exc.status} {exc.reason}")
            raise

    async def _retry_sleep(self, delay: float) -> None:
        """The facade's back-off before a retry: the first one is the first fault."""
        if not self._halted and self.node:
            self._halted = True
            await self._halt(reason="gave up at the first fault (a retried request)")
        await asyncio.sleep(delay)

    async def _halt(self, *, reason: str) -> None:
        for _ in range(20):  # bounded: conflicts and more injected faults are retried
            with contextlib.suppress(KubeError):
                lease = await self.get_lease(namespace=LOCK_NS, name=LOCK_NAME)
                state = state_of(lease)
                if state.halted:
                    return
                halted = replace(state, halted={"reason": reason, "node": self.node, "at": ""})
                meta = lease["metadata"]
                meta["annotations"] = {
                    **(meta.get("annotations") or {}),
                    STATE_ANNOTATION: halted.to_annotation(),
                }
                await self.replace_lease(namespace=LOCK_NS, name=LOCK_NAME, body=lease)
                return
            await asyncio.sleep(0.05)


def halting_daemon(**kwargs: Any) -> Daemon:
    kube = kwargs["kube"]
    assert isinstance(kube, HaltsAtFirstFault)
    kube.node = kwargs["settings"].node_id
    kube._sleep = kube._retry_sleep  # the double's own hook on its back-off
    return Daemon(**kwargs)


def fault_only_chaos_seed(*, nodes: int) -> int:
    """The first chaos seed whose plan injects nothing that justifies a halt, and no operator
    `resume` (which would clear the double's halt and let the run complete)."""
    zones = layout(SimulationConfig(nodes=nodes, zones=2))
    for seed in range(50):
        plan = plan_scenario("chaos", zones=zones, concurrency=1, seed=seed, lock_ttl=3.5, per_node=1.15)
        if not any(a.kind in {*HALT_CAUSES, "resume"} for a in plan.actions):
            return seed
    raise AssertionError("no chaos seed without a node that fails to boot among the first 50")


async def test_a_daemon_that_halts_at_its_first_fault_fails_a_chaos_run(tmp_path: Path) -> None:
    seed = fault_only_chaos_seed(nodes=4)
    seams = DaemonSeams(connect=HaltsAtFirstFault.connect, daemon=halting_daemon)
    config = replace(FAST, scenario="chaos", seed=seed, nodes=4, zones=2, timeout=120)
    outcome = await simulate(config, workdir=tmp_path, seams=seams)
    assert outcome.status in ("halted", "stuck"), outcome.render()
    assert outcome.halt_justified is None
    assert outcome.exit_code == EXIT_FAILED, outcome.render()
    failed = [text for ok, text in outcome.checks if not ok]
    assert any("the scenario injected no cause for it" in text for text in failed), outcome.checks
    assert outcome.to_json()["halt_justified"] is None


class TrustsStaleReady(Kube):
    """A reclaimer's API facade that takes a Ready Node as alive: every read of a kubelet's
    heartbeat Lease looks freshly renewed (what the reclaimer did before it read heartbeats)."""

    _beats = 0

    async def get_lease(self, *, namespace: str, name: str) -> dict[str, Any]:
        lease = await super().get_lease(namespace=namespace, name=name)
        if namespace == "kube-node-lease":
            self._beats += 1
            lease["spec"]["renewTime"] = f"seems-alive-{self._beats}"
        return lease


async def test_a_reclaimer_that_trusts_a_stale_ready_fails_concurrency_in_stale_ready(tmp_path: Path) -> None:
    seams = DaemonSeams(connect=TrustsStaleReady.connect)
    config = replace(FAST, scenario="stale-ready", nodes=4, timeout=90)
    outcome = await simulate(config, workdir=tmp_path, seams=seams)
    check = outcome.report.invariants["concurrency"]
    assert not check.ok, outcome.render()
    assert "2 disrupted at once (limit 1)" in check.detail
    assert outcome.exit_code == EXIT_FAILED


# --- a small misbehaving client against the emulator --------------------------------------------


@pytest.fixture
async def emu(emulator_factory: EmulatorFactory) -> Emulator:
    tokens = {**tokens_for(NODES), "token-admin": ("admin", ("system:masters",))}
    emulator = await emulator_factory(tokens=tokens)
    for i, name in enumerate(NODES):
        emulator.add_node(name=name, zone=f"z{i}")
    return emulator


Connect = Callable[[str], Awaitable[Kube]]


@pytest.fixture
async def as_daemon(emu: Emulator, tmp_path: Path) -> AsyncIterator[Connect]:
    """The API facade with node NAME's daemon identity (`rebootd@NAME`)."""
    opened: list[Kube] = []

    async def connect(node: str) -> Kube:
        config = emu.write_kubeconfig(tmp_path / f"{node}.kubeconfig", token=node_token(node))
        kube = await Kube.connect(kubeconfig=config)
        opened.append(kube)
        return kube

    try:
        yield connect
    finally:
        for kube in opened:
            await kube.close()


def lock_body(state: LockState) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": LOCK_NAME,
            "namespace": LOCK_NS,
            "annotations": {STATE_ANNOTATION: state.to_annotation()},
        },
        "spec": {},
    }


def holding(*nodes: str, halted_by: str | None = None) -> LockState:
    holders = {n: Holder(node=n, zone="z", phase="draining") for n in nodes}
    halted = {"reason": "did not boot", "node": halted_by, "at": ""} if halted_by else None
    return LockState(holders=holders, halted=halted)


async def write_lock(kube: Kube, state: LockState) -> None:
    try:
        lease = await kube.get_lease(namespace=LOCK_NS, name=LOCK_NAME)
    except KubeError:
        await kube.create_lease(namespace=LOCK_NS, body=lock_body(state))
        return
    lease["metadata"]["annotations"] = {STATE_ANNOTATION: state.to_annotation()}
    await kube.replace_lease(namespace=LOCK_NS, name=LOCK_NAME, body=lease)


async def cordon(kube: Kube, node: str, *, on: bool = True) -> None:
    await kube.patch_node(
        name=node, patch={"spec": {"unschedulable": True if on else None}}, patch_type="strategic"
    )


async def reboot_and_wait(emu: Emulator, node: str) -> None:
    """The simulated nodes' reboot method (as `EmulatedReboot` calls it), then until Ready again."""
    host = EmulatorHost(emu, poll=0.05)
    await host.reboot(node)
    await asyncio.wait_for(host.wait_ready(node), timeout=10)


def need(emu: Emulator, *nodes: str) -> None:
    for node in nodes:
        emu.note(event="reboot_needed", client="simulator", name=node)


def pods_of(emu: Emulator, app: str) -> list[Mapping[str, Any]]:
    return [
        p for p in emu.list_objects(kind="Pod", namespace="default") if p["metadata"]["name"].startswith(app)
    ]


async def test_1_two_daemons_cordoning_at_once_fail_concurrency(emu: Emulator, as_daemon: Connect) -> None:
    await cordon(await as_daemon("n1"), "n1")
    await cordon(await as_daemon("n2"), "n2")
    check = check_concurrency(emu.history, zones={n: n for n in NODES}, concurrency=1, zone_concurrency=0)
    assert not check.ok
    assert "at most 2 disrupted at once (limit 1)" in check.detail


async def test_2_and_11_a_node_rebooted_twice_for_one_need_fails_reboots_and_one_reboot_per_need(
    emu: Emulator,
) -> None:
    need(emu, "n1")
    await reboot_and_wait(emu, "n1")
    assert check_one_reboot_per_need(emu.history).ok
    await reboot_and_wait(emu, "n1")
    assert not check_reboots(emu.history, needed=["n1"]).ok
    check = check_one_reboot_per_need(emu.history)
    assert not check.ok
    assert "n1 rebooted a second time" in check.detail
    need(emu, "n1")
    await reboot_and_wait(emu, "n2")  # and one that never needed it
    assert "n2 rebooted at" in check_one_reboot_per_need(emu.history).detail


async def test_3_a_daemon_that_never_uncordons_fails_cordons(emu: Emulator, as_daemon: Connect) -> None:
    await cordon(await as_daemon("n1"), "n1")
    check = check_cordons(emu.history, nodes=emu.list_objects(kind="Node"), admin_cordoned=[])
    assert not check.ok
    assert "n1 left cordoned by rebootd" in check.detail


async def test_4_a_daemon_deleting_the_only_ready_pod_of_a_budget_fails_and_its_refused_eviction_is_recorded(
    emu: Emulator, as_daemon: Connect
) -> None:
    emu.add_workload(kind="StatefulSet", name="ledger", replicas=1, nodes=["n1"], pdb_min_available=1)
    await emu.wait_until(lambda: budget_settled(emu, "ledger"), within=5)
    kube = await as_daemon("n1")
    with pytest.raises(TooManyRequests):
        await kube.evict_pod(namespace="default", name="ledger-0")
    refused = [r for r in emu.history if r.event == "eviction_refused"]
    assert [(r.client, r.code, r.name) for r in refused] == [("rebootd@n1", 429, "ledger-0")]
    budget = refused[0].budgets[0]
    assert (budget.name, budget.disruptions_allowed, budget.current_healthy, budget.desired_healthy) == (
        "ledger",
        0,
        1,
        1,
    )
    assert check_pdb_disruptions(emu.history).ok  # refused: nothing was taken down
    await kube.delete_pod(namespace="default", name="ledger-0")
    check = check_pdb_disruptions(emu.history)
    assert not check.ok
    assert "default/ledger-0 deleted by rebootd@n1" in check.detail


def budget_settled(emu: Emulator, name: str) -> bool:
    """The disruption controller has seen the PDB and its one Ready pod."""
    pdb = emu.get_object(kind="PodDisruptionBudget", namespace="default", name=name) or {}
    status = pdb.get("status") or {}
    generation = (pdb.get("metadata") or {}).get("generation", 1)
    return status.get("observedGeneration") == generation and status.get("currentHealthy") == 1


async def test_5_and_9_a_reboot_outside_the_window_fails_window_and_requests_in_window(emu: Emulator) -> None:
    now = datetime.now(UTC)
    closed = Window(
        days=frozenset(range(7)),
        start=(now + timedelta(hours=2)).time().replace(microsecond=0),
        end=(now + timedelta(hours=3)).time().replace(microsecond=0),
        tz=UTC,
    )
    need(emu, "n1")
    await reboot_and_wait(emu, "n1")
    assert not check_window(emu.history, window=closed).ok
    check = check_requests_in_window(emu.history, window=closed)
    assert not check.ok
    assert "rebootd@n1 asked to reboot n1" in check.detail
    opened = Window(
        days=frozenset(range(7)),
        start=(now - timedelta(hours=1)).time().replace(microsecond=0),
        end=(now + timedelta(hours=1)).time().replace(microsecond=0),
        tz=UTC,
    )
    assert check_requests_in_window(emu.history, window=opened).ok


async def test_6_and_8_a_daemon_that_goes_on_after_writing_a_halt_fails_after_halt_and_requests_after_halt(
    emu: Emulator, as_daemon: Connect
) -> None:
    n1, n2 = await as_daemon("n1"), await as_daemon("n2")
    await write_lock(n1, holding("n1", "n2"))
    await reboot_and_wait(emu, "n1")
    await write_lock(n1, holding("n1", "n2", halted_by="n1"))
    assert check_no_request_after_halt(emu.history).ok  # n1's request came before its halt
    await cordon(n2, "n2")
    await reboot_and_wait(emu, "n2")
    after = check_after_halt(emu.history)
    assert not after.ok
    assert "n2" in after.detail
    check = check_no_request_after_halt(emu.history)
    assert not check.ok
    assert "rebootd@n2 asked to reboot n2" in check.detail


async def test_7_an_eviction_without_a_slot_fails_evictions_need_slot(
    emu: Emulator, as_daemon: Connect
) -> None:
    emu.add_workload(kind="Deployment", name="web", replicas=2, nodes=["n1", "n2"])
    n1 = await as_daemon("n1")
    await write_lock(n1, holding("n2"))
    victim = next(p for p in pods_of(emu, "web") if p["spec"]["nodeName"] == "n1")
    await n1.evict_pod(namespace="default", name=victim["metadata"]["name"])
    check = check_evictions_hold_slot(emu.history)
    assert not check.ok
    assert "while n1 held no slot (slot holders were n2)" in check.detail


async def test_10_a_reboot_without_a_grant_fails_reboots_granted(emu: Emulator, as_daemon: Connect) -> None:
    await write_lock(await as_daemon("n2"), holding("n2"))
    await reboot_and_wait(emu, "n2")
    assert check_reboots_granted(emu.history).ok
    await reboot_and_wait(emu, "n1")
    check = check_reboots_granted(emu.history)
    assert not check.ok
    assert "rebootd@n1 asked to reboot n1" in check.detail
