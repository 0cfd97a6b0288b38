"""The lock protocol as a Hypothesis state machine: 3-5 lock participants and an operator against
the in-process emulator, every interleaving Hypothesis finds, the limits and the cordon rules
asserted after every step.

Each participant is a `LeaseLock` driven as `cycle.py` drives it, through the lock's own steps:
take a slot (`try_acquire`), mark the node (`mark`), confirm on a fresh read, pass the gate,
cordon (`cordon`, scoped to the grant), renew, finish (`uncordoning` -> uncordon ->
`recovering`), give the slot back (`back_out`), reclaim stale holders (`reclaim`: mark the record
`reclaiming`, put the node back, remove the record; the kubelet taken for alive), halt, or
crash (its daemon replaced by one with a new Pod uid that knows nothing). The operator
runs `rebootd pause`, `resume` and `unlock [--force]` (`rebootd.admin`) and deletes the Lease
(its finalizer kept, or stripped by force). Lost responses come from the emulator's fault
injection (`FaultInjector.lose_next`: the write is applied, its answer lost). Time (the lock's
injected clock) moves only when a rule says so, past the TTL, so that holders go stale. Two
participants' operations may also run concurrently on the loop (`race`).

After every step, read from the emulator's store (never from what a participant believes):

1. A Lease that seated a holder itself (a record carrying its uid) holds at most `concurrency`
   records, at most `zone_concurrency` per zone. (A Lease re-created from the Nodes' marks may
   list more, copied from earlier Leases: lock.py rule 4; none of those may go on, rule 2.)
2. Nodes cordoned by rebootd: at most `concurrency`, at most `zone_concurrency` per zone.
3. A node cordoned by rebootd carries the mark of the grant that cordoned it, and the Lease (when
   there is one) lists that grant for that node: never cordoned by us without a slot. The one
   exception is `unlock --force`, after which the operator owns the cordon.
4. No new cordon while the gate is closed (halted, paused or the Lease being deleted) from the
   step before to the step after.
5. A daemon reclaims (marks `reclaiming`) only a record whose heartbeat is stale: a version of it
   first written at least the TTL before, on the lock's clock (from the emulator's history of
   Lease writes; lock.py rule 5). The operator's `unlock` is not judged by it.

`test_the_machine_fails_when_the_concurrency_check_is_off_by_one` proves the machine can fail:
participants whose lock admits one holder more than the limit the invariants check. (lockstate
counts the holders against the concurrency twice, in `Limits.fits` and in `eligible_waiters`: made
off by one in one place only, the other still refuses, and the machine passes; made off by one in
both, it fails within the first examples, shrunk to one `progress_together(i=0, j=1)`.)
`test_the_machine_fails_when_a_reclaimer_skips_the_heartbeat_check` does the same for rule 5:
participants that reclaim live holders too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rebootd import admin
from rebootd.emulator.emulator import Emulator
from rebootd.emulator.faults import FaultConfig, FaultInjector
from rebootd.emulator.registry import DeleteOptions
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.kube import Kube, RetryPolicy
from rebootd.lock import Gated, LeaseLock, LeaseStore, LockConfig, LostSlot, state_of
from rebootd.lockstate import RECLAIMING, Holder, Limits, LockState
from rebootd.marks import cordon_owner, mark_of
from rebootd.node import NodeChanged, uncordon
from tests.fixtures.emulator import FAST_TIMING
from tests.fixtures.tasks import leaked_tasks

NS, NAME = "kube-system", "rebootd"
LEASES = BY_GROUP_RESOURCE[("coordination.k8s.io", "leases")]
TTL = 5.0
BOOT_ALLOWANCE = 5.0
RETRY = RetryPolicy(attempts=3, base=0.005, cap=0.02)
STEP_SECONDS = 30.0  # one rule's operations; a step that takes longer is a hang, and fails
OPERATOR_TOKEN = "operator"
# Phases a stale holder is reclaimed in (its node not yet rebooted); in any other it halts
# (cycle.py's PRE_REBOOT_PHASES and `reclaiming`).
RECLAIMABLE = frozenset({"acquiring", "draining", RECLAIMING})
OPERATIONS = ("acquire", "disrupt", "renew", "finish", "release", "reclaim")


@dataclass
class ManualClock:
    """The lock's clock: it moves only when a rule says so."""

    mono: float = 10_000.0

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.mono)

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds


@dataclass
class Participant:
    """One node's daemon: its own API client (own token, own faults) and its lock."""

    node: str
    zone: str
    token: str
    kube: Kube
    lock: LeaseLock
    stage: str = "idle"  # idle | granted | cordoned | recovering: what this daemon did last


@dataclass
class Gate:
    closed: bool
    cordons: frozenset[tuple[str, str]] = field(default_factory=frozenset)


class LockMachine(RuleBasedStateMachine):
    """Participants and an operator on one emulator; see the module docstring."""

    # How much more the participants' lock admits than the limits the invariants check (0: the
    # real lock; 1: the off-by-one double of the test that proves the machine can fail).
    SLACK: ClassVar[int] = 0
    # Whether the participants reclaim live holders too (True: the double of the test that proves
    # invariant 5 can fail: a reclaimer that skips the heartbeat check).
    RECLAIM_LIVE: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = TemporaryDirectory(prefix="rebootd-lock-machine-")
        self.clock = ManualClock()
        self.faults = FaultInjector(seed=0, config=FaultConfig(), clock=self.clock)
        self.emu = Emulator(timing=FAST_TIMING, faults=self.faults)
        self.participants: list[Participant] = []
        self.operator_lock: LeaseStore | None = None
        self.operator_kube: Kube | None = None
        self.limits = Limits()
        self.operator_cordons: set[str] = set()  # grants whose cordon `unlock --force` handed over
        self.gate = Gate(closed=False)
        self.started = False
        # Invariant 5: when each version (node, grant, seq) of a record was first written, on the
        # lock's clock, from the emulator's history of Lease writes read up to `history_read`.
        self.record_written: dict[tuple[str, str, int], float] = {}
        self.reclaims_judged: set[tuple[str, str, int]] = set()
        self.history_read = 0

    # --- plumbing ---------------------------------------------------------------------------

    def run(self, coro: Awaitable[Any]) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(STEP_SECONDS):
                return await coro

        return self.loop.run_until_complete(bounded())

    async def _kube(self, token: str) -> Kube:
        path = self.emu.write_kubeconfig(Path(self.tmp.name) / token, token=token)
        return await Kube.connect(kubeconfig=path, retry=RETRY)

    def _lock(self, *, kube: Kube, node: str, zone: str) -> LeaseLock:
        lock_limits = replace(self.limits, concurrency=self.limits.concurrency + self.SLACK)
        if self.limits.zone_concurrency:
            lock_limits = replace(lock_limits, zone_concurrency=self.limits.zone_concurrency + self.SLACK)
        config = LockConfig(
            namespace=NS,
            name=NAME,
            node=node,
            zone=zone,
            limits=lock_limits,
            ttl=TTL,
            renew_interval=TTL / 4,
            boot_allowance=BOOT_ALLOWANCE,
            grace=0.005,  # the jitter before a write many waiters want: kept short here
            pod=f"pod-{node}-{secrets.token_hex(3)}",
        )
        return LeaseLock(kube=kube, config=config, clock=self.clock)

    def teardown(self) -> None:
        async def close() -> None:
            for p in self.participants:
                await p.kube.close()
            if self.operator_kube is not None:
                await self.operator_kube.close()
            await self.emu.close()
            # the machine's own loop gets the check every test's loop gets (tests/conftest.py)
            leaked = await leaked_tasks(before=set(), grace=1.0)
            assert not leaked, f"the machine leaked asyncio tasks: {leaked}"

        try:
            if self.started:
                self.loop.run_until_complete(close())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.tmp.cleanup()

    # --- set-up -----------------------------------------------------------------------------

    @initialize(
        nodes=st.integers(min_value=3, max_value=5),
        zones=st.integers(min_value=1, max_value=3),
        concurrency=st.integers(min_value=1, max_value=2),
        zone_concurrency=st.integers(min_value=0, max_value=1),
    )
    def start(self, nodes: int, zones: int, concurrency: int, zone_concurrency: int) -> None:
        self.limits = Limits(concurrency=concurrency, zone_concurrency=zone_concurrency)

        async def start() -> None:
            await self.emu.start(host="127.0.0.1", port=0)
            self.started = True
            for i in range(nodes):
                node, zone = f"n{i}", f"z{i % zones}"
                self.emu.add_node(name=node, zone=zone)
                kube = await self._kube(f"daemon-{node}")
                lock = self._lock(kube=kube, node=node, zone=zone)
                self.participants.append(
                    Participant(node=node, zone=zone, token=f"daemon-{node}", kube=kube, lock=lock)
                )
            self.operator_kube = await self._kube(OPERATOR_TOKEN)
            self.operator_lock = admin.operator_lock(
                kube=self.operator_kube, namespace=NS, name=NAME, clock=self.clock
            )

        self.run(start())

    def _p(self, index: int) -> Participant:
        return self.participants[index % len(self.participants)]

    # --- what a daemon does (as cycle.py does it) ---------------------------------------------

    async def _acquire(self, p: Participant, *, fresh: bool = True) -> None:
        if p.lock.grant:
            return  # holding: the cycle takes no second slot
        if fresh:  # the daemon's watch delivered the newest Lease; else it acts on its old copy
            await p.lock.refresh()
        verdict = await p.lock.try_acquire(phase="draining")
        if _grant_of(p.lock):  # taken (or written and its answer lost: the re-read shows our grant)
            p.stage = "granted"
            event("slot taken" if verdict.allowed else "slot taken, its answer lost")
        else:
            event(f"no slot: {verdict.reason}")
            if verdict.reason == "lock_deleting":
                await p.lock.finish_deletion()

    async def _disrupt(self, p: Participant) -> None:
        """Mark the node, confirm on a fresh read (lock.py rule 2), pass the gate, cordon."""
        holder = p.lock.mine
        if p.stage != "granted" or holder is None:
            return
        try:
            node = await p.kube.get_node(name=p.node)
            await p.lock.put_back_earlier(node, holder=holder)  # a predecessor's leftovers
            await p.lock.mark(holder=holder, evidence={"bootID": f"boot-{p.node}"})
            held = await p.lock.confirm()
            gated = p.lock.gate()
            if gated is not None:
                raise gated
            event(f"cordon: {await p.lock.cordon(holder=held)}")
            p.stage = "cordoned"
        except (LostSlot, Gated, NodeChanged) as exc:
            event(f"disrupt refused: {type(exc).__name__}")
            await self._back_out(p)

    async def _renew(self, p: Participant) -> None:
        if not p.lock.grant:
            return
        try:
            await p.lock.renew()
        except LostSlot:
            event("renew: slot lost")
            await self._back_out(p)

    async def _finish(self, p: Participant) -> None:
        """After the (not simulated) reboot: `uncordoning`, the uncordon, `recovering`."""
        if p.stage != "cordoned":
            return
        try:
            await p.lock.set_phase(phase="uncordoning")
            await uncordon(p.kube, node=p.node, grant=p.lock.grant)
            await p.lock.set_phase(phase="recovering")
            p.stage = "recovering"
        except LostSlot:
            await self._back_out(p)

    async def _back_out(self, p: Participant) -> None:
        """Put the node back (mark and, if ours, cordon) and give the slot back."""
        await p.lock.back_out(why="the state machine's participant backs out")
        p.stage = "idle"

    async def _reclaim(self, p: Participant) -> None:
        """Reclaim stale holders as cycle.py does (the kubelet taken for alive): mark the record
        `reclaiming`, put its node back, remove it; a stale holder past its reboot halts."""
        state = await p.lock.refresh()
        if state.halted:
            return
        now = self.clock.monotonic()
        stale = (
            list(state.holders.values())
            if self.RECLAIM_LIVE
            else p.lock.observer.stale_holders(state, now=now)
        )
        for holder in stale:
            if holder.node == p.node:
                continue
            if holder.phase not in RECLAIMABLE:
                await p.lock.halt(
                    reason=f"{holder.node} stopped renewing in {holder.phase}", node=holder.node
                )
                continue
            if await p.lock.reclaim(node=holder.node, expect=holder):
                event(f"reclaimed a stale holder in {holder.phase}")

    def _operation(self, name: str) -> Callable[[Participant], Awaitable[None]]:
        return {
            "acquire": self._acquire,
            "disrupt": self._disrupt,
            "renew": self._renew,
            "finish": self._finish,
            "release": self._back_out,
            "reclaim": self._reclaim,
        }[name]

    # --- rules: participants ------------------------------------------------------------------

    def _next_step(self, p: Participant, *, fresh: bool = True) -> Awaitable[None]:
        if p.stage == "idle":
            return self._acquire(p, fresh=fresh)
        step = {"granted": self._disrupt, "cordoned": self._finish}
        return step.get(p.stage, self._back_out)(p)

    @rule(i=st.integers(0, 4), fresh=st.booleans())
    def progress(self, i: int, fresh: bool) -> None:
        """The next step of this daemon's cycle: take a slot (`fresh`: from the newest Lease, else
        from its own last copy), disrupt, finish, give it back."""
        self.run(self._next_step(self._p(i), fresh=fresh))

    @rule(i=st.integers(0, 4), j=st.integers(0, 4))
    def progress_together(self, i: int, j: int) -> None:
        """Two daemons' next steps at once, their requests interleaved on the loop."""
        a, b = self._p(i), self._p(j)
        if a is not b:
            self.run(_gather(self._next_step(a), self._next_step(b)))

    @rule(
        i=st.integers(0, 4),
        j=st.integers(0, 4),
        first=st.sampled_from(OPERATIONS),
        second=st.sampled_from(OPERATIONS),
    )
    def race(self, i: int, j: int, first: str, second: str) -> None:
        """Any two daemons' operations at once, whatever their stage."""
        a, b = self._p(i), self._p(j)
        if a is not b:
            self.run(_gather(self._operation(first)(a), self._operation(second)(b)))

    @rule(i=st.integers(0, 4))
    def renew(self, i: int) -> None:
        self.run(self._renew(self._p(i)))

    @rule(i=st.integers(0, 4))
    def reclaim(self, i: int) -> None:
        self.run(self._reclaim(self._p(i)))

    @rule(i=st.integers(0, 4), what=st.sampled_from(("give_up", "crash", "halt")))
    def mishap(self, i: int, what: str) -> None:
        """`give_up`: the daemon gives its slot back whatever its stage (a failed drain, the need
        gone). `crash`: it dies and a new one (a new Pod uid) starts knowing nothing of its grant;
        the record, the mark and the cordon stay until the record is reclaimed. `halt`: a cordoned
        holder's reboot request failed for good."""
        p = self._p(i)
        if what == "give_up":
            self.run(self._back_out(p))
        elif what == "crash":
            p.lock = self._lock(kube=p.kube, node=p.node, zone=p.zone)
            p.stage = "idle"
        else:
            holders = [q for q in self.participants if q.stage == "cordoned"]
            if holders:
                h = holders[i % len(holders)]
                self.run(h.lock.halt(reason="reboot request failed (injected)", node=h.node))

    @rule(data=st.data())
    def time_passes(self, data: st.DataObject) -> None:
        """Every daemon looks at the Lease, then the clock jumps past the TTL (and the boot
        allowance): a record nobody renews from here on is stale to all of them."""

        async def look() -> None:
            for p in self.participants:
                await p.lock.refresh()

        self.run(look())
        self._judge_lease_writes()  # writes of this step happened before the clock moves
        self.clock.advance(TTL + BOOT_ALLOWANCE + data.draw(st.floats(0.5, 5.0), label="extra"))

    @rule(i=st.integers(0, 5), kind=st.sampled_from(("lost_reset", "lost_504")))
    def lose_next_response(self, i: int, kind: str) -> None:
        """The next write of a daemon (or, for i == 5, the operator) is applied, its answer lost."""
        client = OPERATOR_TOKEN if i == 5 else self._p(i).token
        self.faults.lose_next(client=client, kind="lost_504" if kind == "lost_504" else "lost_reset")

    # --- rules: the operator ------------------------------------------------------------------

    @rule(
        what=st.sampled_from(("pause", "resume", "unlock", "unlock --force", "delete", "delete --force")),
        i=st.integers(0, 4),
    )
    def operator(self, what: str, i: int) -> None:
        """`rebootd pause` / `resume` (the halt or the pause it was shown) / `unlock NODE
        [--force]` (of one of the holders) and `kubectl delete lease` (the finalizer keeps it,
        being deleted; `--force` strips the finalizer too, as a GitOps prune might: the Lease is
        gone until a daemon re-creates it)."""
        op = self.operator_lock
        assert op is not None
        if what == "pause":
            self.run(admin.pause(lock=op, reason="change freeze", clock=self.clock))
        elif what == "resume":
            self.run(self._resume(op, halt_first=i % 2 == 0))
        elif what.startswith("unlock"):
            self.run(self._unlock(op, i=i, force=what.endswith("--force")))
        else:
            self._delete_lease(force=what.endswith("--force"))

    async def _resume(self, op: LeaseStore, *, halt_first: bool) -> None:
        state = await op.refresh()
        halt = state.halted if halt_first or not state.paused else None
        pause = None if halt is not None else state.paused
        try:
            await admin.resume(lock=op, halt=halt, pause=pause)
        except admin.Refused:
            event("resume refused")  # what it was shown changed under it (its answer lost, say)

    async def _unlock(self, op: LeaseStore, *, i: int, force: bool) -> None:
        held = sorted((await op.refresh()).holders)
        node = held[i % len(held)] if held else self._p(i).node
        holder = op.state.holders.get(node)
        try:
            freed = await admin.unlock(lock=op, node=node, force=force)
        except admin.Refused:
            event("unlock refused")
            return
        event(f"unlock{' --force' if force else ''}: {'freed' if freed else 'no slot'}")
        if force and holder is not None:
            # `--force` hands the cordon, if any, to the operator (also when its answer was lost)
            self.operator_cordons.add(holder.grant)

    def _delete_lease(self, *, force: bool) -> None:
        if self.emu.get_object(kind="Lease", namespace=NS, name=NAME) is None:
            return
        self.emu.registry.delete(LEASES, NS, NAME, DeleteOptions(), client="admin")
        event("lease deleted")
        if force and self.emu.get_object(kind="Lease", namespace=NS, name=NAME) is not None:
            self.emu.registry.patch(
                LEASES,
                NS,
                NAME,
                content_type="application/merge-patch+json",
                raw=json.dumps({"metadata": {"finalizers": None}}).encode(),
                client="admin",
            )
            event("lease deleted by force")

    # --- invariants -----------------------------------------------------------------------------

    def _observed(self) -> tuple[dict[str, Any] | None, LockState, list[dict[str, Any]]]:
        lease = self.emu.get_object(kind="Lease", namespace=NS, name=NAME)
        return lease, state_of(lease), self.emu.list_objects(kind="Node")

    def _within(self, zones: Counter[str], total: int, what: str) -> None:
        limits = self.limits
        assert total <= limits.concurrency, f"{what}: {total} > concurrency {limits.concurrency} ({zones})"
        if limits.zone_concurrency:
            over = {z: n for z, n in zones.items() if n > limits.zone_concurrency}
            assert not over, f"{what}: zones over zone_concurrency {limits.zone_concurrency}: {over}"

    @invariant()
    def lease_holders_within_limits(self) -> None:
        if not self.started:
            return
        lease, state, _nodes = self._observed()
        if lease is None:
            return
        uid = lease["metadata"]["uid"]
        holders = list(state.holders.values())
        if any(h.lease == uid for h in holders):  # this Lease seated somebody itself
            self._within(Counter(h.zone for h in holders), len(holders), f"holders {sorted(state.holders)}")

    @invariant()
    def cordons_within_limits_and_each_held_by_its_grant(self) -> None:
        if not self.started:
            return
        lease, state, nodes = self._observed()
        ours = _cordoned_by_rebootd(nodes, exclude=self.operator_cordons)
        zones = Counter(zone for _name, _grant, zone in ours)
        self._within(zones, len(ours), f"cordoned by rebootd {[name for name, _g, _z in ours]}")
        by_name = {n["metadata"]["name"]: n for n in nodes}
        for name, grant, _zone in ours:
            mark = mark_of(by_name[name])
            assert mark is not None, f"{name} cordoned by grant {grant} without its mark"
            assert mark.grant == grant, f"{name} cordoned by grant {grant} under the mark of {mark.grant}"
            if lease is not None:
                holder: Holder | None = state.holders.get(name)
                assert holder is not None, f"{name} cordoned by grant {grant}, no slot in the Lease"
                assert holder.grant == grant, f"{name} cordoned by grant {grant}, the slot is {holder.grant}"

    @invariant()
    def reclaims_only_of_records_unrenewed_for_the_ttl(self) -> None:
        """5. A daemon marks a record `reclaiming` only when that record went unrenewed (no new
        write of it: its heartbeat) for the TTL on the lock's clock. Judged from every Lease write
        in the emulator's history; the operator's `unlock` is not a reclaim by staleness."""
        if self.started:
            self._judge_lease_writes()

    def _judge_lease_writes(self) -> None:
        """Invariant 5 on the Lease writes since the last look (before the clock moves on)."""
        now = self.clock.monotonic()
        writes = self.emu.history[self.history_read :]
        self.history_read += len(writes)
        for write in writes:
            if write.kind != "Lease" or write.event != "write" or not write.detail:
                continue
            for h in LockState.from_annotation(write.detail).holders.values():
                version = (h.node, h.grant, h.seq)
                if h.phase != RECLAIMING or version in self.reclaims_judged:
                    self.record_written.setdefault(version, now)
                    continue
                self.reclaims_judged.add(version)
                if h.evidence.get("reclaimedBy") == admin.OPERATOR:
                    continue
                written = self.record_written.get((h.node, h.grant, h.seq - 1), now)
                assert now - written >= TTL, (
                    f"{h.evidence.get('reclaimedBy')} reclaimed {h.node} (grant {h.grant}) whose record "
                    f"was written {now - written:g}s before, within the TTL {TTL:g}s: a fresh heartbeat"
                )

    @invariant()
    def no_new_cordon_while_the_gate_is_closed(self) -> None:
        if not self.started:
            return
        lease, state, nodes = self._observed()
        deleting = bool(((lease or {}).get("metadata") or {}).get("deletionTimestamp"))
        closed = lease is not None and bool(state.halted or state.paused or deleting)
        cordons = frozenset(
            (name, grant) for name, grant, _zone in _cordoned_by_rebootd(nodes, exclude=set())
        )
        if self.gate.closed and closed:
            new = cordons - self.gate.cordons
            assert not new, f"cordoned while halted, paused or deleting: {sorted(new)}"
        self.gate = Gate(closed=closed, cordons=cordons)


def _grant_of(lock: LeaseLock) -> str:
    return lock.grant


async def _gather(*steps: Awaitable[None]) -> None:
    await asyncio.gather(*steps)


def _cordoned_by_rebootd(nodes: list[dict[str, Any]], *, exclude: set[str]) -> list[tuple[str, str, str]]:
    """(name, grant, zone) of the unschedulable nodes whose cordon names a grant not in `exclude`."""
    found = []
    for node in nodes:
        grant = cordon_owner(node)
        if (node.get("spec") or {}).get("unschedulable") and grant and grant not in exclude:
            labels = node["metadata"].get("labels") or {}
            found.append(
                (node["metadata"]["name"], grant, str(labels.get("topology.kubernetes.io/zone", "")))
            )
    return found


MACHINE_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_the_lock_keeps_its_limits_and_cordon_rules_under_every_interleaving() -> None:
    run_state_machine_as_test(LockMachine, settings=MACHINE_SETTINGS)


class OffByOne(LockMachine):
    """The double: the participants' lock admits one holder more than the limits checked."""

    SLACK = 1


def test_the_machine_fails_when_the_concurrency_check_is_off_by_one() -> None:
    fast = settings(MACHINE_SETTINGS, max_examples=50, phases=[Phase.generate], database=None)
    with pytest.raises(AssertionError, match="concurrency"):
        run_state_machine_as_test(OffByOne, settings=fast)


class ReclaimsLive(LockMachine):
    """The double: participants that reclaim every other holder, its heartbeat fresh or not."""

    RECLAIM_LIVE = True


def test_the_machine_fails_when_a_reclaimer_skips_the_heartbeat_check() -> None:
    # Derandomized: the same examples every run, so the proof never depends on the draw.
    fast = settings(
        MACHINE_SETTINGS, max_examples=50, phases=[Phase.generate], database=None, derandomize=True
    )
    with pytest.raises(AssertionError, match="a fresh heartbeat"):
        run_state_machine_as_test(ReclaimsLive, settings=fast)


def test_a_lost_answer_to_a_lock_write_is_injected_once() -> None:
    """The fault the machine leans on: `lose_next` loses exactly the next write's answer."""
    injector = FaultInjector(seed=0, config=FaultConfig(), clock=ManualClock())
    injector.lose_next(client="a", kind="lost_504")
    assert injector.decide(client="a", verb="get", write=False) is None
    fault = injector.decide(client="a", verb="update", write=True)
    assert fault is not None
    assert fault.lost
    assert injector.decide(client="a", verb="update", write=True) is None
    assert injector.counts["lost_504"] == 1
    with pytest.raises(ValueError, match="lost-response"):
        injector.lose_next(client="a", kind="error500")
