"""The per-node reboot cycle: the only place that sequences steps.

IDLE --sentinel--> REQUIRED --window+unblocked--> ACQUIRING --slot--> DRAINING --drained-->
REBOOTING ==(node restarts, daemon restarts)==> VERIFYING --bootID changed, Ready--> UNCORDONING
--> RECOVERING --workloads healthy--> RELEASING --release delay--> IDLE

Rule: the phase and its evidence live in this node's holder record in the Lease (and, for the
Lease-deleted case, in the node's `rebootd.io/holder` mark). Each pass of the loop re-derives
where we are from that record, so a daemon restarted at any point, or recovering from an API
error, resumes correctly; nothing important lives only in memory. Every escalation (cordon,
drain, reboot) is preceded by a CAS that records the next phase: a holder that lost its slot never
escalates. Every wait is event-driven (the sentinel, Lease and Node followers) with a timeout.
Failures: a failed drain -> uncordon (only if we cordoned), free the slot, back off, Warning
Event; node not back after boot-timeout, or workloads not healthy after recovery-timeout -> the
rollout halts. The cycle never leaves the node cordoned by us while we no longer hold a slot,
and never frees the slot while our node is still disrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiohttp

from rebootd.blockers import Blocker, BlockReason, NodeBudget
from rebootd.clock import Clock
from rebootd.drain import DrainError, DrainOptions, DrainStopped, drain_node
from rebootd.kube import Kube, KubeError
from rebootd.lock import NODE_MARK_ANNOTATION, LeaseLock, LostSlot, holder_mark, mark_of, put_back_node
from rebootd.lockstate import BOOTING_PHASES, RECLAIMING, Holder, decide_acquire, next_in_line
from rebootd.logs import get_logger
from rebootd.metrics import Metrics
from rebootd.node import (
    NodeChanged,
    add_taint,
    boot_id,
    cordon,
    is_ready,
    record_event,
    remove_taint,
    set_annotations,
    set_labels,
    uncordon,
)
from rebootd.reboot import Rebooter, RebootFailed
from rebootd.schedule import Window

PRE_REBOOT_PHASES = frozenset({"acquiring", "draining"})
LAST_REBOOT_ANNOTATION = "rebootd.io/last-reboot"
REQUIRED_ANNOTATION = "rebootd.io/reboot-required"
WAITING_ANNOTATION = "rebootd.io/waiting-for"
PHASE_ANNOTATION = "rebootd.io/phase"
TRANSIENT = (KubeError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class CycleOptions:
    node: str
    window: Window
    period: float
    renew_interval: float
    boot_timeout: float
    recovery_timeout: float
    release_delay: float
    drain: DrainOptions
    drain_delay: float = 0.0
    reboot_delay: float = 0.0
    force_reboot: bool = False
    min_reboot_interval: float = 0.0
    prefer_no_schedule_taint: str = ""
    annotate_nodes: bool = False
    pre_reboot_labels: Mapping[str, str] = field(default_factory=dict)
    post_reboot_labels: Mapping[str, str] = field(default_factory=dict)
    backoff_max: float = 3600.0


class SentinelView(Protocol):
    """What the cycle needs from the sentinel task: the latest answer and a change signal."""

    @property
    def required(self) -> bool: ...

    @property
    def changed(self) -> asyncio.Event: ...


class RecoveryGate(Protocol):
    """Records what healthy means before the drain; after the reboot waits until the workloads
    disrupted by it are healthy again, returning None or why not."""

    async def record(self, *, node: str) -> dict[str, Any]: ...

    async def wait_healthy(
        self, *, node: str, evidence: Mapping[str, Any], within: float, stop: asyncio.Event
    ) -> str | None: ...


Notify = Callable[[str, Mapping[str, str]], Awaitable[None]]
Flush = Callable[[], Awaitable[None]]
# Waiting reasons that are the ordinary course of a rollout: no "blocked" notification for them.
QUIET_REASONS = frozenset({"window", "queued", "concurrency", "zone_concurrency", "paused", "halted"})


SLOT_REASONS = frozenset({"queued", "concurrency", "zone_concurrency"})


def published_reason(reason: BlockReason | None) -> str | None:
    """The node annotation for a waiting reason. Waiting for a slot is one condition, however the
    queue moves (full, or free but another node first): a text that changed with every hand-off
    would cost every waiter a write per hand-off."""
    if reason is None:
        return None
    if reason.kind in SLOT_REASONS:
        return "slot: waiting for a free slot in the reboot lock"
    return f"{reason.kind}: {reason.detail}"[:250]


class Cycle:
    """One node's reboot cycle."""

    def __init__(
        self,
        *,
        kube: Kube,
        lock: LeaseLock,
        options: CycleOptions,
        sentinel: SentinelView,
        rebooter: Rebooter,
        blockers: Sequence[Blocker],
        clock: Clock,
        metrics: Metrics,
        recovery: RecoveryGate | None = None,
        notify: Notify | None = None,
        budget: NodeBudget | None = None,
        flush_notifications: Flush | None = None,
    ) -> None:
        self.kube = kube
        self.lock = lock
        self.opt = options
        self.sentinel = sentinel
        self.rebooter = rebooter
        self.blockers = list(blockers)
        self.clock = clock
        self.metrics = metrics
        self.recovery = recovery
        self.budget = budget
        self._notify = notify
        self._flush = flush_notifications
        self.phase = "idle"
        self.waiting_for: BlockReason | None = None
        self._failures = 0
        self._node_uid = ""
        self._published: dict[str, str | None] = {}
        self._events: set[asyncio.Task[None]] = set()
        self._log = get_logger(node=options.node)

    # --- small helpers ------------------------------------------------------------------------
    def _set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self._log.info("rebootd.cycle.phase", phase=phase, previous=self.phase)
        self.phase = phase
        self.metrics.set_phase(node=self.opt.node, phase=phase)

    async def _event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Post an Event in the background (best effort, off the cycle's critical path); the
        pending ones are awaited, bounded, before a reboot and when the cycle stops."""
        task = asyncio.create_task(
            record_event(
                self.kube,
                node=self.opt.node,
                node_uid=self._node_uid,
                reason=reason,
                message=message,
                type="Warning" if warning else "Normal",
                clock=self.clock,
            ),
            name=f"event-{reason}",
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _flush_events(self, *, within: float) -> None:
        if self._events:
            await asyncio.wait(set(self._events), timeout=within)

    async def _tell(self, what: str, **values: str) -> None:
        if self._notify is not None:
            await self._notify(what, {"node": self.opt.node, **values})

    async def _publish(self, **annotations: str | None) -> None:
        """Write node annotations that changed since we last wrote them (none when unchanged)."""
        changed = {k: v for k, v in annotations.items() if self._published.get(k, "\0") != v}
        if not changed:
            return
        await set_annotations(self.kube, node=self.opt.node, annotations=changed)
        self._published.update(changed)

    async def _block(self, reason: BlockReason | None, *, publish: bool = True) -> None:
        previous = self.waiting_for
        if previous is not None and (reason is None or previous.kind != reason.kind):
            self.metrics.blocked.labels(node=self.opt.node, reason=previous.kind).set(0)
        if reason is not None:
            self.metrics.blocked.labels(node=self.opt.node, reason=reason.kind).set(1)
            if previous != reason:
                self._log.info("rebootd.cycle.waiting", reason=reason.kind, detail=reason.detail)
            if (previous is None or previous.kind != reason.kind) and reason.kind not in QUIET_REASONS:
                await self._tell("block", reason=reason.detail)
        self.waiting_for = reason
        if publish:
            await self._publish(**{WAITING_ANNOTATION: published_reason(reason)})

    async def _get_node(self) -> dict[str, Any]:
        node = await self.kube.get_node(name=self.opt.node)
        self._node_uid = node["metadata"].get("uid", "")
        return node

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> bool:
        """Interruptible sleep; True when `stop` was set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
        return stop.is_set()

    async def _wait_sentinel_or_stop(self, stop: asyncio.Event, *, seconds: float | None) -> None:
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(self.sentinel.changed.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
        self.sentinel.changed.clear()

    # --- the loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run cycles until `stop`. API trouble backs off and re-derives the phase from the Lease."""
        self._set_phase("idle")
        first = True
        errors = 0
        while not stop.is_set():
            try:
                await self._step(stop, first=first)
                first = False
                errors = 0
            except TRANSIENT as exc:
                first = True  # after an outage, check again for a mark we left behind
                errors += 1
                delay = min(30.0, 0.5 * 2 ** min(errors, 6)) * random.uniform(0.5, 1.0)  # noqa: S311
                self._log.warning("rebootd.cycle.api_error", error=str(exc)[:300], retry_in=round(delay, 2))
                await self._sleep(stop, delay)
        await self._flush_events(within=2.0)  # a clean stop (SIGTERM); a killed process posts nothing more

    async def _step(self, stop: asyncio.Event, *, first: bool) -> None:
        state = await self.lock.refresh()
        self.metrics.rollout_halted.set(1 if state.halted else 0)
        holder = state.holders.get(self.opt.node)
        if holder is not None and holder.phase == RECLAIMING:
            # Judged dead while we were away: the reclaimer puts our node back and frees the slot.
            # If the reclaimer died half-way, we finish its work on our own record.
            self._log.warning("rebootd.cycle.slot_reclaimed", by=holder.evidence.get("reclaimedBy"))
            await self._put_back(holder)
            await self.lock.remove_holder(node=self.opt.node, expect=holder)
            self.metrics.lock_held.labels(node=self.opt.node).set(0)
            return
        if holder is not None:
            self._log.info("rebootd.cycle.resume", phase=holder.phase)
            if holder.phase in PRE_REBOOT_PHASES:
                await self._disrupt(stop, holder=holder)
            else:
                await self._after_reboot(stop, holder=holder)
            return
        if first:
            await self._clean_up_orphaned_mark()
        if not self.sentinel.required:
            self._set_phase("idle")
            await self._block(None)
            await self._publish(**{REQUIRED_ANNOTATION: None})
            if self.opt.prefer_no_schedule_taint and self._published.get("taint") == "on":
                await remove_taint(self.kube, node=self.opt.node, key=self.opt.prefer_no_schedule_taint)
                self._published["taint"] = "off"
            await self._wait_sentinel_or_stop(stop, seconds=None)
            return
        self._set_phase("required")
        await self._publish(**{REQUIRED_ANNOTATION: "true"})
        if self.opt.prefer_no_schedule_taint and self._published.get("taint") != "on":
            await add_taint(self.kube, node=self.opt.node, key=self.opt.prefer_no_schedule_taint)
            self._published["taint"] = "on"
        async with self.lock.following():  # one watch from queueing through the drain
            if await self._wait_for_slot(stop):
                await self._disrupt(stop, holder=self.lock.state.holders[self.opt.node])

    async def _clean_up_orphaned_mark(self) -> None:
        """We disrupted this node but the Lease no longer lists us (reclaimed, unlocked, or the
        Lease recreated): put the node back."""
        node = await self._get_node()
        mark = mark_of(node)
        if mark is None:
            return
        self._log.warning("rebootd.cycle.orphaned_mark", phase=mark.phase)
        await self._put_back(mark)

    async def _put_back(self, holder: Holder) -> None:
        """Undo our cordon and remove our mark. Only a marked node can have been cordoned by us
        (the cordon requires the mark), and the mark carries whether an admin had cordoned it
        before."""
        await put_back_node(self.kube, node=self.opt.node, evidence=holder.evidence)

    # --- waiting for a slot -------------------------------------------------------------------
    async def _blocked_reason(self) -> BlockReason | None:
        """The first reason to wait among the window, reboot-loop protection and the blockers
        asked every period (not the at-slot ones: see `_wait_for_slot`)."""
        now = self.clock.now()
        if not self.opt.window.contains(now):
            opens = self.opt.window.next_open(now)
            return BlockReason(kind="window", detail=f"maintenance window opens at {opens.isoformat()}")
        last = self._published.get(LAST_REBOOT_ANNOTATION)
        if self.opt.min_reboot_interval and last:
            with contextlib.suppress(ValueError):
                next_allowed = datetime.fromisoformat(last) + timedelta(seconds=self.opt.min_reboot_interval)
                if now < next_allowed:
                    return BlockReason(
                        kind="reboot_loop",
                        detail=f"rebooted at {last}; next reboot allowed after {next_allowed.isoformat()}",
                    )
        return await self._ask([b for b in self.blockers if not b.at_slot])

    @staticmethod
    async def _ask(blockers: Sequence[Blocker]) -> BlockReason | None:
        for blocker in blockers:
            try:
                reason = await blocker.check()
            except Exception as exc:  # noqa: BLE001 - a broken blocker blocks (fail safe)
                reason = BlockReason(
                    kind="blocker_error", detail=f"{blocker.name}: {type(exc).__name__}: {exc}"
                )
            if reason is not None:
                return reason
        return None

    async def _wait_for_slot(self, stop: asyncio.Event) -> bool:
        """Queue for a slot while the window is open and nothing blocks; True once we hold one.

        The periodic blockers are asked every period. The at-slot ones (PDB preflight: two lists)
        are asked once at the start, then every period only while they block or while this node
        is next in line, and again right before taking a slot when their answer is older than a
        period: N waiting nodes do not list every pod and PDB every period."""
        if LAST_REBOOT_ANNOTATION not in self._published:
            node = await self._get_node()
            annotations = node["metadata"].get("annotations") or {}
            self._published[LAST_REBOOT_ANNOTATION] = annotations.get(LAST_REBOOT_ANNOTATION)
        check_every = max(0.05, min(self.opt.period, self.lock.config.grace))
        at_slot = [b for b in self.blockers if b.at_slot]
        next_block_check = 0.0
        blocked: BlockReason | None = None
        slot_blocked: BlockReason | None = None
        slot_checked: float | None = None  # monotonic time of the last at-slot answer

        async def ask_at_slot() -> BlockReason | None:
            nonlocal slot_blocked, slot_checked
            slot_blocked, slot_checked = await self._ask(at_slot), self.clock.monotonic()
            return slot_blocked

        def slot_answer_stale() -> bool:
            return slot_checked is None or self.clock.monotonic() - slot_checked >= self.opt.period

        async with self.lock.following() as changed:
            while not stop.is_set() and self.sentinel.required:
                mono = self.clock.monotonic()
                if mono >= next_block_check:
                    blocked = await self._blocked_reason()
                    if (
                        blocked is None
                        and at_slot
                        and (slot_checked is None or slot_blocked is not None or self._next_in_line())
                    ):
                        await ask_at_slot()
                    blocked = blocked or slot_blocked
                    next_block_check = mono + self.opt.period
                if blocked is None and at_slot and slot_answer_stale() and self._would_be_served():
                    blocked = await ask_at_slot()  # about to take a slot on an old answer: ask now
                if blocked is not None:
                    # Stays in force until a fresh check (every period) clears it.
                    await self._block(blocked)
                    if self.opt.node in self.lock.state.waiters:
                        await self.lock.leave_queue()
                    await self._wait_sentinel_or_stop(
                        stop, seconds=max(0.01, next_block_check - self.clock.monotonic())
                    )
                    continue
                await self._handle_stale_holders()
                verdict = await self.lock.try_acquire(
                    phase="draining",  # marking and cordoning follow at once
                    evidence={},
                    unavailable=self.budget.unavailable if self.budget is not None else None,
                )
                self.metrics.rollout_halted.set(1 if self.lock.state.halted else 0)
                if verdict.allowed:
                    await self._block(None, publish=False)  # cleared in the node-mark patch
                    return True
                await self._block(BlockReason(kind=verdict.reason, detail=self._slot_detail(verdict.reason)))
                await changed(min(check_every, max(0.05, next_block_check - self.clock.monotonic())))
        if self.opt.node in self.lock.state.waiters:
            await self.lock.leave_queue()
        return False

    def _next_in_line(self) -> bool:
        cfg = self.lock.config
        return next_in_line(self.lock.state, node=cfg.node, zone=cfg.zone, limits=cfg.limits)

    def _would_be_served(self) -> bool:
        """Would a try to take a slot on the state seen now succeed (pure: no request)?"""
        cfg = self.lock.config
        stalled = self.lock.observer.stalled_waiters(now=self.clock.monotonic()) - {cfg.node}
        verdict = decide_acquire(
            self.lock.state,
            node=cfg.node,
            zone=cfg.zone,
            limits=cfg.limits,
            stalled=stalled,
            unavailable=self.budget.unavailable if self.budget is not None else None,
        )
        return verdict.allowed

    def _slot_detail(self, reason: str) -> str:
        state = self.lock.state
        if reason == "halted" and state.halted:
            return f"rollout halted at {state.halted.get('node')}: {state.halted.get('reason')}"
        if reason == "paused" and state.paused:
            return f"paused by {state.paused.get('by')}: {state.paused.get('reason')}"
        # Static text: a detail that changed with every hand-off would cost each waiter a write.
        return f"waiting for a slot ({reason})"

    async def _halt(self, *, reason: str, node: str) -> None:
        """Halt the rollout; the Event and notification go out only from whoever recorded it."""
        if await self.lock.halt(reason=reason, node=node):
            await self._event("RebootdHalted", reason[:1000], warning=True)
            await self._tell("halt", reason=reason)
            self.metrics.rollout_halted.set(1)

    async def _handle_stale_holders(self) -> None:
        """Reclaim dead holders whose node is up and not yet rebooted; halt on failed reboots.

        Judged on a fresh read (a watch can lag), and reclaimed in two CAS steps: mark the record
        `reclaiming` (the slot stays taken), put the node back, then remove the record. A holder
        that renews in between makes the first CAS a no-op; one that comes back later finds its
        slot lost and puts its own node back."""
        if self.lock.state.halted or not self.lock.observer.stale_holders(
            self.lock.state, now=self.clock.monotonic()
        ):
            return
        state = await self.lock.refresh()
        for holder in self.lock.observer.stale_holders(state, now=self.clock.monotonic()):
            try:
                node: dict[str, Any] | None = await self.kube.get_node(name=holder.node)
            except KubeError:
                node = None
            if node is not None and is_ready(node) and holder.phase in {*PRE_REBOOT_PHASES, RECLAIMING}:
                claimed = (
                    holder
                    if holder.phase == RECLAIMING
                    else await self.lock.mark_reclaiming(node=holder.node, expect=holder)
                )
                if claimed is None:
                    continue  # it renewed, or another observer is reclaiming it
                # Read after the claim, written in one guarded step: a cordon racing us is
                # undone, or refused because it requires the mark we remove.
                await put_back_node(self.kube, node=holder.node, evidence=claimed.evidence)
                if await self.lock.remove_holder(node=holder.node, expect=claimed):
                    self._log.warning("rebootd.lock.reclaimed", stale_node=holder.node, phase=holder.phase)
                continue
            if node is None:
                why = f"node {holder.node} is gone while holding a slot (phase {holder.phase})"
            elif not is_ready(node):
                why = (
                    f"node {holder.node} is not Ready and its rebootd stopped renewing (phase {holder.phase})"
                )
            else:
                why = f"node {holder.node} is up but its rebootd stopped renewing (phase {holder.phase})"
            await self._halt(reason=why, node=holder.node)

    # --- disruption: mark, cordon, drain, reboot ----------------------------------------------
    @contextlib.asynccontextmanager
    async def _renewing(self) -> Any:
        async def renew() -> None:
            # Any write of our record (a phase change) renews it too: renew only when none came
            # within the interval.
            interval = self.opt.renew_interval
            next_at = self.clock.monotonic() + interval
            while True:
                await asyncio.sleep(max(0.0, next_at - self.clock.monotonic()))
                next_at = self.lock.record_written_at + interval
                if next_at > self.clock.monotonic():
                    continue
                with contextlib.suppress(*TRANSIENT):
                    await self.lock.renew()
                next_at = self.clock.monotonic() + interval

        # Holders follow the Lease (the watch the waiting loop opened, if any), so their writes
        # start from the newest version instead of meeting a 409.
        async with self.lock.following():
            task = asyncio.create_task(renew(), name=f"renew-{self.opt.node}")
            self.metrics.lock_held.labels(node=self.opt.node).set(1)
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LostSlot, *TRANSIENT):
                    await task

    async def _disrupt(self, stop: asyncio.Event, *, holder: Holder) -> None:
        async with self._renewing():
            try:
                await self._disrupt_steps(stop, holder=holder)
            except (LostSlot, NodeChanged) as exc:  # NodeChanged: a reclaimer removed our mark
                self._log.warning("rebootd.cycle.lost_slot", error=str(exc))
                await self._put_back(holder)
                self.metrics.lock_held.labels(node=self.opt.node).set(0)

    async def _disrupt_steps(self, stop: asyncio.Event, *, holder: Holder) -> None:
        # The recovery baseline is read alongside the node: a fresh slot needs both at once (a
        # resumed pass whose node is already marked discards it).
        baseline: asyncio.Task[dict[str, Any]] | None = None
        if self.recovery is not None:
            baseline = asyncio.create_task(self.recovery.record(node=self.opt.node), name="baseline")
        try:
            await self._disrupt_marked(stop, holder=holder, baseline=baseline)
        finally:
            if baseline is not None and not baseline.done():
                baseline.cancel()
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await baseline

    async def _disrupt_marked(
        self, stop: asyncio.Event, *, holder: Holder, baseline: asyncio.Task[dict[str, Any]] | None
    ) -> None:
        node = await self._get_node()
        mark = mark_of(node)
        if mark is not None and mark.phase in BOOTING_PHASES:
            # Our mark says the reboot was requested, but our record says it was not: the Lease
            # was recreated from the mark written before (between our "rebooting" write and the
            # mark's update). The mark is the newer: never drain and reboot a second time.
            # Bring the record up to the mark first: the booting phase gets its boot allowance
            # from observers, and the write proves we still hold the slot.
            self._log.warning("rebootd.cycle.record_behind_mark", record=holder.phase, mark=mark.phase)
            holder = await self.lock.set_phase(phase=mark.phase, evidence=mark.evidence)
            await self._after_reboot_steps(stop, holder=holder)
            return
        if mark is None and not self.sentinel.required:
            # The need went away between taking the slot and touching the node: give it back.
            await self.lock.release()
            self.metrics.lock_held.labels(node=self.opt.node).set(0)
            self._log.info("rebootd.cycle.no_longer_required")
            return
        fresh = mark is None
        mark_value = (node["metadata"].get("annotations") or {}).get(NODE_MARK_ANNOTATION)
        if mark is None:
            evidence: dict[str, Any] = {
                "bootID": boot_id(node),
                "wasUnschedulable": bool(node["spec"].get("unschedulable", False)),
            }
            if baseline is not None:  # what "healthy again" means: read before anything moves
                evidence["baseline"] = await baseline
            # Safety rule 5 of lock.py: mark the node (the evidence travels in the mark until the
            # next write of our record), then confirm on a fresh read that the Lease still lists us.
            mark = replace(holder, phase="draining", evidence={**holder.evidence, **evidence})
            mark_value = holder_mark(mark)
            await set_annotations(
                self.kube,
                node=self.opt.node,
                annotations={NODE_MARK_ANNOTATION: mark_value, WAITING_ANNOTATION: None},
            )
            self._published[WAITING_ANNOTATION] = None
            holder = await self.lock.confirm()
            if self.lock.state.halted:  # halted since we took the slot: disrupt nothing more
                self._log.warning("rebootd.cycle.halted_before_cordon")
                await self._put_back(holder)
                await self.lock.release()
                self.metrics.lock_held.labels(node=self.opt.node).set(0)
                return
        # The record's own evidence wins (an admin cordon found later is recorded there).
        holder = replace(holder, phase="draining", evidence={**mark.evidence, **holder.evidence})
        self._set_phase("draining")
        # Only while our mark is there: a reclaimer that judged us dead removes it in the same
        # guarded step as its uncordon, so our cordon cannot land after it unseen.
        already = await cordon(self.kube, node=self.opt.node, only_if=(NODE_MARK_ANNOTATION, str(mark_value)))
        if fresh and already and not holder.evidence.get("wasUnschedulable", False):
            # An admin cordoned between our read and our write: it is theirs, never ours to undo.
            # (On a resumed pass the node is cordoned by our own earlier attempt: not evidence.)
            holder = await self.lock.set_phase(phase="draining", evidence={"wasUnschedulable": True})
        if self.opt.pre_reboot_labels:
            await set_labels(self.kube, node=self.opt.node, labels=dict(self.opt.pre_reboot_labels))
        if self.opt.annotate_nodes:
            await self._publish(**{PHASE_ANNOTATION: f"draining since {self.clock.now().isoformat()}"})
        await self._event("RebootdDrain", "cordoned by rebootd; draining before reboot")
        await self._tell("drain")
        if self.opt.drain_delay and await self._sleep(stop, self.opt.drain_delay):
            return
        if self.recovery is not None and "baseline" not in holder.evidence:  # a mark of an earlier version
            recorded = await self.recovery.record(node=self.opt.node)
            holder = await self.lock.set_phase(phase="draining", evidence={"baseline": recorded})
        started = self.clock.monotonic()
        try:
            result = await drain_node(
                self.kube, node=self.opt.node, options=self.opt.drain, stop=stop, clock=self.clock
            )
        except DrainStopped:
            return  # shutting down: the next daemon resumes from the record (phase draining)
        except DrainError as exc:
            await self._event("RebootdDrainFailed", str(exc)[:1000], warning=True)
            if not self.opt.force_reboot:
                await self._give_up(stop, holder=holder, reason=f"drain failed: {exc}")
                return
            self._log.warning("rebootd.cycle.forced_reboot", error=str(exc)[:300])
            result = None
        self.metrics.drain_seconds.labels(node=self.opt.node).observe(self.clock.monotonic() - started)
        evicted = [] if result is None else [p.to_json() for p in result.evicted]
        requested = self.clock.now().isoformat()
        holder = await self.lock.set_phase(  # from here on the record carries all the evidence
            phase="rebooting",
            evidence={**holder.evidence, "evicted": evicted, "rebootRequested": requested},
        )
        self._set_phase("rebooting")
        if self.opt.reboot_delay and await self._sleep(stop, self.opt.reboot_delay):
            return
        await self._reboot(stop, holder=holder)

    async def _reboot(self, stop: asyncio.Event, *, holder: Holder) -> None:
        # The node's mark must say "rebooting" before the reboot is requested: a Lease recreated
        # from a stale "draining" mark would have the node drained and rebooted a second time.
        # (A failed write here ends this pass; the resumed pass comes back through this line.)
        await set_annotations(
            self.kube, node=self.opt.node, annotations={NODE_MARK_ANNOTATION: holder_mark(holder)}
        )
        if self.opt.annotate_nodes:
            await self._publish(**{PHASE_ANNOTATION: f"rebooting since {self.clock.now().isoformat()}"})
        await self._event("RebootdReboot", "rebooting the node")
        await self._tell("reboot")
        await self._flush_events(within=1.0)  # bounded: the reboot ends this process
        if self._flush is not None:
            await self._flush()  # bounded too
        try:
            await self.rebooter.reboot()
        except RebootFailed as exc:
            reason = f"reboot of {self.opt.node} failed: {exc}"
            await self._event("RebootdRebootFailed", reason[:1000], warning=True)
            await self._halt(reason=reason, node=self.opt.node)
            return
        # A real reboot ends this process. Still here after boot-timeout: it did not happen.
        if await self._sleep(stop, self.opt.boot_timeout):
            return
        node = await self._get_node()
        if boot_id(node) == holder.evidence.get("bootID"):
            reason = f"node {self.opt.node} did not reboot within {self.opt.boot_timeout:g}s of the request"
            await self._event("RebootdRebootFailed", reason, warning=True)
            await self._halt(reason=reason, node=self.opt.node)
            await self._sleep(stop, self.opt.boot_timeout)

    async def _give_up(self, stop: asyncio.Event, *, holder: Holder, reason: str) -> None:
        """Drain failed: uncordon (only if we cordoned), free the slot, back off."""
        await self._put_back(holder)
        await self.lock.release()
        self.metrics.lock_held.labels(node=self.opt.node).set(0)
        self.metrics.reboots.labels(node=self.opt.node, result="drain_failed").inc()
        self._failures += 1
        backoff = min(self.opt.backoff_max, self.opt.period * 2 ** min(self._failures, 12))
        backoff *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
        await self._block(BlockReason(kind="backoff", detail=f"{reason}; retrying in {backoff:.0f}s"))
        self._log.warning("rebootd.cycle.gave_up", reason=reason[:300], backoff=round(backoff, 3))
        await self._sleep(stop, backoff)

    # --- after the reboot ---------------------------------------------------------------------
    async def _after_reboot(self, stop: asyncio.Event, *, holder: Holder) -> None:
        async with self._renewing():
            try:
                await self._after_reboot_steps(stop, holder=holder)
            except LostSlot as exc:
                self._log.error("rebootd.cycle.lost_slot_after_reboot", error=str(exc))

    async def _after_reboot_steps(self, stop: asyncio.Event, *, holder: Holder) -> None:
        if holder.phase in BOOTING_PHASES:
            node = await self._get_node()
            if boot_id(node) == holder.evidence.get("bootID") and is_ready(node):
                # Recorded "rebooting" but this node never went down (we died before or right
                # after the request): request it (again; a pending reboot ignores a second one).
                # The node's mark must say "rebooting" first (its update may be what failed), or a
                # Lease recreated from the mark after the reboot would resume draining: a 2nd reboot.
                self._set_phase("rebooting")
                await set_annotations(
                    self.kube, node=self.opt.node, annotations={NODE_MARK_ANNOTATION: holder_mark(holder)}
                )
                await self._reboot(stop, holder=holder)
                return
            self._set_phase("verifying")
            if not await self._verify_reboot(stop, holder=holder):
                return
            # No Lease write for this step: putting the node back is idempotent, and a pass
            # resumed from "rebooting" verifies the boot again and gets here.
            holder = replace(holder, phase="uncordoning")
        if holder.phase == "uncordoning":  # (also the record of a daemon of an earlier version)
            self._set_phase("uncordoning")
            if not holder.evidence.get("wasUnschedulable", False):
                await uncordon(self.kube, node=self.opt.node)
            if self.opt.prefer_no_schedule_taint:
                await remove_taint(self.kube, node=self.opt.node, key=self.opt.prefer_no_schedule_taint)
                self._published["taint"] = "off"
            if self.opt.post_reboot_labels:
                await set_labels(self.kube, node=self.opt.node, labels=dict(self.opt.post_reboot_labels))
            await self._event("RebootdUncordon", "rebooted, verified and back in service")
            await self._tell("uncordon")
            holder = await self.lock.set_phase(phase="recovering")
        if holder.phase == "recovering":
            self._set_phase("recovering")
            if self.recovery is not None:
                problem = await self.recovery.wait_healthy(
                    node=self.opt.node, evidence=holder.evidence, within=self.opt.recovery_timeout, stop=stop
                )
                if stop.is_set():
                    return
                if problem is not None:
                    reason = (
                        f"workloads disrupted by the reboot of {self.opt.node} are not healthy: {problem}"
                    )
                    await self._event("RebootdRecoveryFailed", reason[:1000], warning=True)
                    await self._halt(reason=reason, node=self.opt.node)
                    self.metrics.reboots.labels(node=self.opt.node, result="recovery_failed").inc()
                    # Keep the slot: the rollout is halted until an operator resumes it.
                    await self._wait_for_resume(stop)
                    return
        # No Lease write for "releasing": a pass resumed during the release delay re-checks the
        # recovery (healthy at once) and waits the delay again.
        self._set_phase("releasing")
        if self.opt.release_delay and await self._sleep(stop, self.opt.release_delay):
            return
        finished = self.clock.now().isoformat()
        await set_annotations(  # before the release: a node that keeps a mark is put back at start
            self.kube,
            node=self.opt.node,
            annotations={
                NODE_MARK_ANNOTATION: None,
                LAST_REBOOT_ANNOTATION: finished,
                REQUIRED_ANNOTATION: None,
                WAITING_ANNOTATION: None,
            },
        )
        self._published.update(
            {LAST_REBOOT_ANNOTATION: finished, REQUIRED_ANNOTATION: None, WAITING_ANNOTATION: None}
        )
        if self.opt.annotate_nodes:
            await self._publish(**{PHASE_ANNOTATION: f"rebooted at {finished}"})
        await self.lock.release()
        self.metrics.lock_held.labels(node=self.opt.node).set(0)
        self.metrics.reboots.labels(node=self.opt.node, result="success").inc()
        self._failures = 0
        self._log.info("rebootd.cycle.done")
        self._set_phase("idle")

    async def _wait_for_resume(self, stop: asyncio.Event) -> None:
        """Halted by us: hold the slot until an operator clears the halt, then re-check recovery."""
        async with self.lock.following() as changed:
            while not stop.is_set() and self.lock.state.halted:
                await changed(self.opt.renew_interval)

    async def _verify_reboot(self, stop: asyncio.Event, *, holder: Holder) -> bool:
        """bootID changed and Ready; halts when that is not so within boot-timeout."""
        before = holder.evidence.get("bootID")
        deadline = self.clock.monotonic() + self.opt.boot_timeout
        async with self.kube.follow(kind="nodes", namespace=None, name=self.opt.node) as follower:
            while not stop.is_set():
                node = follower.latest
                if node is not None and boot_id(node) != before and is_ready(node):
                    self._node_uid = node["metadata"].get("uid", self._node_uid)
                    self.metrics.reboot_seconds.labels(node=self.opt.node).observe(
                        self._since(holder.evidence.get("rebootRequested"))
                    )
                    return True
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    break
                await follower.changed(timeout=min(remaining, 5.0))
        if stop.is_set():
            return False
        reason = (
            f"node {self.opt.node}: no new bootID and Ready within {self.opt.boot_timeout:g}s of its reboot"
        )
        await self._event("RebootdRebootNotProven", reason, warning=True)
        await self._halt(reason=reason, node=self.opt.node)
        self.metrics.reboots.labels(node=self.opt.node, result="not_proven").inc()
        return False

    def _since(self, iso: object) -> float:
        try:
            return max(0.0, (self.clock.now() - datetime.fromisoformat(str(iso))).total_seconds())
        except ValueError:
            return 0.0
