"""The per-node reboot cycle: the only place that sequences steps.

IDLE --sentinel--> REQUIRED --window+unblocked, queued--> (slot) DRAINING --drained-->
REBOOTING ==(node restarts, daemon restarts)==> VERIFYING --host boot id changed, the Node
reports it and Ready--> UNCORDONING --> RECOVERING --workloads healthy--> RELEASING --release
delay--> IDLE

Rule: the phase lives in this node's holder record in the Lease and its evidence (boot id before
the reboot, recovery baseline, evicted pods) in the node's `rebootd.io/holder` mark (docs/design.md).
Each pass of the loop re-derives where we are from the record and the mark, so a daemon restarted
at any point, or recovering from an API error, resumes correctly; nothing important lives only in
memory. Every escalation (cordon, drain, reboot) passes the lock's gate, and the writes that take
the slot and record `rebooting` are CASes that come first: a holder that lost its slot never
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
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp

from rebootd.blockers import Blocker, BlockReason, NodeBudget
from rebootd.clock import Clock
from rebootd.drain import DrainError, DrainOptions, DrainStopped, drain_node
from rebootd.heartbeat import (
    HEARTBEAT_NAMESPACE,
    RENEW_FRACTION,
    HeartbeatJudge,
    Liveness,
    lease_seconds,
    lease_version,
)
from rebootd.kube import Kube, KubeError, NotFound
from rebootd.lock import Gated, LeaseLock, LostSlot, put_back_node
from rebootd.lockstate import BOOTING_PHASES, RECLAIMING, Holder, decide_acquire, next_in_line
from rebootd.logs import get_logger
from rebootd.marks import (
    CORDON_ANNOTATION,
    NODE_MARK_ANNOTATION,
    QUEUE_ANNOTATION,
    REQUIRED_LABEL,
    Mark,
    cordoned_by,
    encode_queue_record,
    mark_of,
    queue_of,
    ticket_of,
)
from rebootd.metrics import Metrics
from rebootd.node import (
    NodeChanged,
    boot_id,
    cordon,
    guarded_patch,
    is_ready,
    record_event,
    set_annotations,
    uncordon,
)
from rebootd.reboot import Rebooter, RebootFailed
from rebootd.recovery import read_boot_id
from rebootd.schedule import Window
from rebootd.signs import NodeSigns

PRE_REBOOT_PHASES = frozenset({"acquiring", "draining"})
LAST_REBOOT_ANNOTATION = "rebootd.io/last-reboot"
REQUIRED_ANNOTATION = "rebootd.io/reboot-required"
WAITING_ANNOTATION = "rebootd.io/waiting-for"
PHASE_ANNOTATION = "rebootd.io/phase"
TRANSIENT = (KubeError, aiohttp.ClientError, TimeoutError)
T = TypeVar("T")


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
    kured_annotations: bool = False  # kured's weave.works/kured-* annotations (annotate + compat)
    pre_reboot_labels: Mapping[str, str] = field(default_factory=dict)
    post_reboot_labels: Mapping[str, str] = field(default_factory=dict)
    backoff_max: float = 3600.0
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")
    reboot_attempts: int = 3  # failed reboot requests before the rollout halts


class _DrainFailed(Exception):
    """The drain failed (not forced): put the node back, free the slot, back off."""


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
        # Annotations to write with the next Node write (joining the queue costs no write of its own).
        self._deferred: dict[str, str | None] = {}
        self._seen_annotations: Mapping[str, Any] = {}  # this Node's annotations as last read
        self._events: set[asyncio.Task[None]] = set()
        self._mark: Mark | None = None  # our node's mark as we last wrote it (the evidence)
        self._renew_lost: LostSlot | None = None
        self._slot_changed = asyncio.Event()
        self._requested = False  # a reboot was requested in this pass: no backing out any more
        self._heartbeats = HeartbeatJudge()  # our looks at stale holders' kubelet heartbeats
        self._heartbeat_poll: float | None = None  # look again this soon: a liveness is unknown
        self._log = get_logger(node=options.node)
        self.signs = NodeSigns(
            kube=kube,
            node=options.node,
            taint=options.prefer_no_schedule_taint,
            pre_reboot_labels=options.pre_reboot_labels,
            post_reboot_labels=options.post_reboot_labels,
            kured_annotations=options.kured_annotations,
        )

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
        """Write node annotations that changed since we last wrote them (none when unchanged),
        with the deferred ones; `reboot-required` goes with its label (the queue's selector)."""
        changed = self._take_deferred()
        changed.update({k: v for k, v in annotations.items() if self._published.get(k, "\0") != v})
        if not changed:
            return
        labels = {REQUIRED_LABEL: changed[REQUIRED_ANNOTATION]} if REQUIRED_ANNOTATION in changed else None
        await set_annotations(self.kube, node=self.opt.node, annotations=changed, labels=labels)
        self._published.update(changed)

    def _defer(self, **annotations: str | None) -> None:
        """Annotations for the next Node write (`_publish` or the mark), if they changed."""
        for key, value in annotations.items():
            if self._published.get(key, "\0") != value:
                self._deferred[key] = value
            else:
                self._deferred.pop(key, None)

    def _take_deferred(self) -> dict[str, str | None]:
        deferred, self._deferred = self._deferred, {}
        return deferred

    def _queue_record(self) -> str:
        """Our queue record: kept across restarts (the time we first needed this reboot)."""
        if QUEUE_ANNOTATION in self._published:  # ours (None: removed at our last release)
            known = self._published[QUEUE_ANNOTATION]
        else:  # a new process: what an earlier one wrote (read by our first pass at start-up)
            known = self._seen_annotations.get(QUEUE_ANNOTATION)
        if isinstance(known, str) and known:
            return known
        return encode_queue_record(since=self.clock.now(), zone=self.lock.config.zone)

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
        await self._show_waiting(reason)

    async def _show_waiting(self, reason: BlockReason | None) -> None:
        """kured's signs of a waiting node (signs.py): the PreferNoSchedule taint while another
        node holds the slot, kured's annotations once a needed reboot is in its window."""
        required = self.sentinel.required
        await self.signs.waiting(required=required, waiting_for=reason.kind if reason else None)
        if required and self.signs.kured_annotations:
            now = self.clock.now()
            await self.signs.annotate(
                required=True, in_window=self.opt.window.contains(now), rebooted=False, now=now
            )

    async def _get_node(self) -> dict[str, Any]:
        node = await self.kube.get_node(name=self.opt.node)
        self._node_uid = node["metadata"].get("uid", "")
        self._seen_annotations = node["metadata"].get("annotations") or {}
        return node

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> bool:
        """Interruptible sleep; True when `stop` was set. (`asyncio.timeout`: on Python 3.11
        `wait_for` can swallow a cancellation racing the wake-up, and the slot guard cancels.)"""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await stop.wait()
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

    async def take_down_signs(self, *, within: float) -> None:
        """A daemon that stops gracefully leaves no PreferNoSchedule taint behind: called by the
        daemon once the cycle's task has ended (bounded; a failure is left to the next daemon's
        first decision, which finds the taint on the Node)."""
        try:
            async with asyncio.timeout(within):
                await self.signs.set_taint(on=False, verify=True)
        except (*TRANSIENT, NodeChanged) as exc:
            self._log.warning("rebootd.signs.taint_left", error=str(exc)[:200])

    async def _step(self, stop: asyncio.Event, *, first: bool) -> None:
        state = await self.lock.refresh()
        self.metrics.rollout_halted.set(1 if state.halted else 0)
        record = state.holders.get(self.opt.node)
        if record is not None and record.phase == RECLAIMING:
            # Judged dead while we were away: the reclaimer puts our node back and frees the slot.
            # If the reclaimer died half-way, we finish its work on that grant's record.
            self._log.warning("rebootd.cycle.slot_reclaimed", by=record.evidence.get("reclaimedBy"))
            await put_back_node(self.kube, node=self.opt.node, grant=record.grant)
            await self.lock.remove_holder(node=self.opt.node, expect=record)
            if record.owned_by(self.lock.grant):
                self.lock.grant = ""
            self.metrics.lock_held.labels(node=self.opt.node).set(0)
            return
        if record is not None:
            holder = await self._own_record(stop, record)
            if holder is None:
                return
            self._log.info("rebootd.cycle.resume", phase=holder.phase, grant=holder.grant)
            if holder.phase in PRE_REBOOT_PHASES:
                await self._disrupt(stop, holder=holder)
            else:
                await self._after_reboot(stop, holder=holder)
            return
        if first:
            await self._clean_up_orphaned_mark()
        if not self.sentinel.required:
            self._set_phase("idle")
            self._deferred.clear()
            await self._block(None)
            await self._publish(**{REQUIRED_ANNOTATION: None, QUEUE_ANNOTATION: None})
            await self._wait_sentinel_or_stop(stop, seconds=None)
            return
        self._set_phase("required")
        # Written with the next Node write (the waiting reason, or the mark): one write to join.
        self._defer(**{REQUIRED_ANNOTATION: "true", QUEUE_ANNOTATION: self._queue_record()})
        async with self.lock.following():  # one watch from queueing through the drain
            if await self._wait_for_slot(stop):
                holder = self.lock.mine
                if holder is not None:
                    await self._disrupt(stop, holder=holder)

    async def _own_record(self, stop: asyncio.Event, record: Holder) -> Holder | None:
        """This node's record in the Lease: ours (this process's grant, or our container's before a
        restart: same Pod uid), or another daemon's. Another daemon's grant is taken over only once
        it has gone stale (a dead duplicate, an old Pod of a DaemonSet update) or was written by a
        daemon of lock format 1; a live one is left alone: we stand by. Returns our record, or None."""
        if record.owned_by(self.lock.grant):
            return record
        if record.pod == self.lock.config.pod and not record.legacy:
            self.lock.adopt_grant(record)
            return record
        # Another Pod's grant for this node: ours to take once silent for a TTL. Observers give a
        # post-reboot record the boot allowance before they halt; this node's own daemon takes it
        # over first (a surge Pod gone with the reboot, a DaemonSet update mid-rollout).
        stale = self.lock.observer.silent_for(record.node, now=self.clock.monotonic()) >= self.lock.config.ttl
        if not (record.legacy or stale):
            await self._block(
                BlockReason(
                    kind="other_daemon",
                    detail=f"another rebootd (pod {record.pod}) holds this node's slot; standing by",
                )
            )
            async with self.lock.following() as changed:
                await changed(self.opt.renew_interval)
            return None
        try:
            holder = await self.lock.take_over(expect=record)
            await self._carry_mark(previous=record, holder=holder)
        except (LostSlot, NodeChanged) as exc:
            self._log.warning("rebootd.cycle.take_over_failed", error=str(exc))
            if self.lock.mine is not None:
                await self.lock.release()
            return None
        return holder

    async def _carry_mark(self, *, previous: Holder, holder: Holder) -> None:
        """After a take-over: the node's mark and cordon ownership move to our grant (one guarded
        write); a mark of a third grant means someone else acted: NodeChanged."""

        def plan(obj: dict[str, Any]) -> dict[str, Any] | None:
            mark = mark_of(obj)
            if mark is None:
                return None
            if mark.grant != previous.grant:
                raise NodeChanged(f"node {self.opt.node}: mark of grant {mark.grant}, not {previous.grant}")
            carried = Mark(holder=holder, evidence={**previous.evidence, **mark.evidence})
            annotations: dict[str, Any] = {NODE_MARK_ANNOTATION: carried.encode()}
            if cordoned_by(obj, previous.grant):
                annotations[CORDON_ANNOTATION] = holder.grant
            return {"metadata": {"annotations": annotations}}

        await guarded_patch(self.kube, node=self.opt.node, plan=plan, what="take-over")

    async def _clean_up_orphaned_mark(self) -> None:
        """We disrupted this node but the Lease no longer lists it (reclaimed, unlocked, or the
        Lease recreated): put the node back."""
        node = await self._get_node()
        mark = mark_of(node)
        if mark is None:
            return
        self._log.warning("rebootd.cycle.orphaned_mark", phase=mark.phase, grant=mark.grant)
        await put_back_node(self.kube, node=self.opt.node, grant=mark.grant)

    def _host_boot_id(self, node: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """(boot id, source): the host's own boot id, else (unreadable file) the Node's reported one."""
        host = read_boot_id(self.opt.boot_id_file)
        if host:
            return host, "host"
        if node is not None:
            return boot_id(node), "node"
        return "", "node"

    def _check_window(self) -> None:
        """The window's part of the escalation gate."""
        now = self.clock.now()
        if not self.opt.window.contains(now):
            opens = self.opt.window.next_open(now)
            raise Gated("window", f"maintenance window closed; opens at {opens.isoformat()}")

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
        if not read_boot_id(self.opt.boot_id_file) and not boot_id(await self._get_node()):
            # Nothing could prove a reboot of this node: do not take a slot for it (checked again
            # right before the mark, which refuses the same way).
            return BlockReason(
                kind="no_boot_id",
                detail=f"no boot id to prove a reboot ({self.opt.boot_id_file} unreadable, none on the Node)",
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

        joined = False  # joining the head is tried once per entry into the queue (lock.py rule 8)
        await self.lock.resolve_limits()  # a share of the nodes ("10%"): against today's count
        ticket = ticket_of(self._queue_record())
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
                    joined = False
                    await self._wait_sentinel_or_stop(
                        stop, seconds=max(0.01, next_block_check - self.clock.monotonic())
                    )
                    continue
                await self._handle_stale_holders()
                verdict = await self.lock.try_acquire(
                    phase="draining",  # marking and cordoning follow at once
                    unavailable=self.budget.unavailable if self.budget is not None else None,
                    ticket=ticket,
                    join=not joined,
                )
                joined = True
                self.metrics.rollout_halted.set(1 if self.lock.state.halted else 0)
                if verdict.allowed:
                    await self._block(None, publish=False)  # cleared in the node-mark patch
                    return True
                if verdict.reason == "own_record":  # this node's record appeared: see `_step`
                    return False
                if verdict.reason == "lock_deleting" and await self.lock.finish_deletion():
                    continue  # the deleted Lease is gone now: the next try re-creates it
                await self._block(BlockReason(kind=verdict.reason, detail=self._slot_detail(verdict.reason)))
                await changed(
                    min(
                        check_every,
                        self._heartbeat_poll or check_every,
                        max(0.05, next_block_check - self.clock.monotonic()),
                    )
                )
        if self.opt.node in self.lock.state.waiters:
            await self.lock.leave_queue()
        return False

    async def _refill_queue_head(self) -> None:
        """Our slot taken (and our node cordoned): name the next nodes in line in the Lease's head
        (lock.py rule 8), from one list of the Nodes that need a reboot. Best effort: without it
        the nodes outside the head take the next free slot by contention, in no particular order."""
        try:
            nodes = await self.kube.list_nodes(label_selector=f"{REQUIRED_LABEL}=true", metadata_only=True)
            await self.lock.refill_head(queue_of(nodes))
        except TRANSIENT as exc:
            self._log.warning("rebootd.lock.refill_failed", error=str(exc)[:200])

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
        if reason == "lock_deleting":
            return (
                "the lock Lease is being deleted: it goes once no node holds a slot and the rollout "
                "is neither paused nor halted; it is then re-created"
            )
        # Static text: a detail that changed with every hand-off would cost each waiter a write.
        return f"waiting for a slot ({reason})"

    async def _halt(self, *, reason: str, node: str) -> None:
        """Halt the rollout; the Event and notification go out only from whoever recorded it."""
        if await self.lock.halt(reason=reason, node=node):
            await self._event("RebootdHalted", reason[:1000], warning=True)
            await self._tell("halt", reason=reason)
            self.metrics.rollout_halted.set(1)

    async def _handle_stale_holders(self) -> None:
        """Reclaim dead holders whose node is up and not yet rebooted; free the slot of a holder
        whose Node is gone; halt on failed reboots and on nodes that are down.

        Judged on a fresh read (a watch can lag), and reclaimed in two CAS steps scoped to the
        stale grant: mark the record `reclaiming` (the slot stays taken), put the node back, then
        remove the record. A holder that renews in between makes the first CAS a no-op; one that
        comes back later finds its slot lost and puts its own node back. A Ready Node is not
        enough to reclaim: Ready stays True for the node monitor's grace after a machine died,
        and freeing the slot of a dead node lets a second node go down. The kubelet's heartbeat
        Lease must be seen moving on our own clock (rebootd.heartbeat); one that stood still for
        its lease duration means the node is down: halt, as for a NotReady node."""
        self._heartbeat_poll = None
        if self.lock.state.halted or not self.lock.observer.stale_holders(
            self.lock.state, now=self.clock.monotonic()
        ):
            self._heartbeats.keep_only(())
            return
        state = await self.lock.refresh()
        stale = self.lock.observer.stale_holders(state, now=self.clock.monotonic())
        self._heartbeats.keep_only(h.node for h in stale)
        for holder in stale:
            try:
                node: dict[str, Any] | None = await self.kube.get_node(name=holder.node)
            except NotFound:
                node = None
            except KubeError:
                continue  # cannot tell now: judge again on the next pass
            if node is None:
                # A Node that no longer exists disrupts nothing: free its slot (no halt).
                if await self.lock.remove_holder(node=holder.node, expect=holder):
                    self._log.warning(
                        "rebootd.lock.holder_node_gone", gone_node=holder.node, phase=holder.phase
                    )
                continue
            if is_ready(node) and holder.phase in {*PRE_REBOOT_PHASES, RECLAIMING}:
                liveness, why = await self._kubelet_liveness(holder)
                if liveness == "unknown":
                    continue  # look again on the next pass
                if liveness == "dead":
                    await self._halt(reason=why, node=holder.node)
                    continue
                claimed = (
                    holder
                    if holder.phase == RECLAIMING
                    else await self.lock.mark_reclaiming(node=holder.node, expect=holder)
                )
                if claimed is None:
                    continue  # it renewed, or another observer is reclaiming it
                # Read after the claim, written in one guarded step: a cordon racing us is
                # undone, or refused because it requires the mark we remove.
                await put_back_node(self.kube, node=holder.node, grant=claimed.grant)
                if await self.lock.remove_holder(node=holder.node, expect=claimed):
                    self._log.warning("rebootd.lock.reclaimed", stale_node=holder.node, phase=holder.phase)
                continue
            if not is_ready(node):
                why = (
                    f"node {holder.node} is not Ready and its rebootd stopped renewing (phase {holder.phase})"
                )
            else:
                why = f"node {holder.node} is up but its rebootd stopped renewing (phase {holder.phase})"
            await self._halt(reason=why, node=holder.node)

    async def _kubelet_liveness(self, holder: Holder) -> tuple[Liveness, str]:
        """Look at the stale holder's kubelet heartbeat Lease: alive, dead (with the halt's
        reason) or unknown. A daemon not allowed to read it cannot prove a node alive, ever: that
        halts at once, naming the missing permission, rather than stalling the rollout silently."""
        try:
            lease: dict[str, Any] | None = await self.kube.get_lease(
                namespace=HEARTBEAT_NAMESPACE, name=holder.node
            )
        except NotFound:
            lease = None
        except KubeError as exc:
            if exc.status == 403:
                return "dead", (
                    f"cannot tell whether node {holder.node} is up (its rebootd stopped renewing in phase "
                    f"{holder.phase}): reading its heartbeat Lease {HEARTBEAT_NAMESPACE}/{holder.node} "
                    f"was refused ({exc.message[:200]}); rebootd needs `get` on leases in "
                    f"{HEARTBEAT_NAMESPACE}"
                )
            return "unknown", ""
        now = self.clock.monotonic()
        duration = lease_seconds(lease)
        liveness = self._heartbeats.judge(
            node=holder.node, version=lease_version(lease), duration=duration, now=now
        )
        still = self._heartbeats.still_for(holder.node, now=now)
        beat = "has no heartbeat Lease" if lease is None else "renewed no heartbeat"
        why = (
            f"node {holder.node} still shows Ready but its kubelet {beat} for {still:.0f}s "
            f"(lease duration {duration:g}s) and its rebootd stopped renewing (phase {holder.phase}): "
            "the node is taken to be down"
        )
        if liveness != "unknown":
            self._log.info("rebootd.lock.heartbeat", stale_node=holder.node, liveness=liveness, still=still)
        else:  # the next look must come within a renew interval of this one to prove anything
            poll = max(0.05, duration * RENEW_FRACTION / 4)
            self._heartbeat_poll = min(poll, self._heartbeat_poll or poll)
        return liveness, why

    # --- disruption: mark, cordon, drain, reboot ----------------------------------------------
    @contextlib.asynccontextmanager
    async def _renewing(self) -> Any:
        """Renew our record while the body runs; a lost record is kept in `_renew_lost` for the
        slot guard (failed renewals are not fatal: the deadline in the lock fences time)."""
        self._renew_lost = None

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
                try:
                    await self.lock.renew()
                except LostSlot as exc:
                    self._renew_lost = exc
                    self._slot_changed.set()
                    return
                except TRANSIENT as exc:
                    self._log.warning("rebootd.cycle.renew_failed", error=str(exc)[:200])
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

    async def _watch_slot(self) -> None:
        """Raise as soon as the slot is lost (our record gone or changed grant), gated (halted,
        paused, the Lease being deleted) or past its deadline; never returns otherwise."""
        async with self.lock.following() as changed:
            while True:
                if self._renew_lost is not None:
                    raise self._renew_lost
                if self.lock.mine is None:
                    raise LostSlot(f"{self.opt.node}: our grant is no longer in the Lease")
                gated = self.lock.gate()
                if gated is not None:
                    raise gated
                remaining = self.lock.valid_until - self.clock.monotonic()
                if remaining <= 0:
                    self.lock.fence()  # raises SlotExpired
                self._slot_changed.clear()
                await changed(max(0.01, min(remaining, self.opt.renew_interval)))

    async def _guarded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` beside the slot guard: losing the slot, a halt, a pause, a deleted Lease or a
        passed deadline cancels `work` at once (its drain stops evicting) and is raised here."""
        task = asyncio.create_task(work, name=f"guarded-{self.opt.node}")
        guard = asyncio.create_task(self._watch_slot(), name=f"slot-guard-{self.opt.node}")
        try:
            await asyncio.wait({task, guard}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            error = guard.exception()
            assert error is not None
            self._log.warning("rebootd.cycle.slot_guard", error=str(error)[:300])
            raise error
        finally:
            for pending in (task, guard):
                if not pending.done():
                    pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

    async def _back_out(self, *, why: str) -> None:
        """Disrupt nothing more: put our node back (mark and, if ours, cordon) and free the slot."""
        grant = self.lock.grant
        self._log.warning("rebootd.cycle.back_out", reason=why[:300], grant=grant)
        if grant:
            await put_back_node(self.kube, node=self.opt.node, grant=grant)
        await self.signs.after_put_back()
        await self.lock.release()
        self.metrics.lock_held.labels(node=self.opt.node).set(0)

    async def _disrupt(self, stop: asyncio.Event, *, holder: Holder) -> None:
        self._requested = False
        async with self._renewing():
            try:
                if self.clock.monotonic() >= self.lock.valid_until:
                    await self.lock.renew()  # a resumed pass: no eviction before a fresh write
                node = await self._get_node()
                mark = mark_of(node)
                if mark is not None and mark.grant == holder.grant and mark.phase in BOOTING_PHASES:
                    # Our mark says the reboot was requested, but our record says it was not: the
                    # Lease was recreated from the mark written before. The mark is the newer:
                    # never drain and reboot a second time. The write proves we hold the slot.
                    self._log.warning(
                        "rebootd.cycle.record_behind_mark", record=holder.phase, mark=mark.phase
                    )
                    holder = await self.lock.set_phase(phase=mark.phase)
                    await self._after_reboot_steps(stop, holder=holder, mark=mark)
                    return
                try:
                    prepared = await self._guarded(self._prepare(stop, holder=holder, node=node))
                except _DrainFailed as exc:  # backed off outside the guard: the slot is given back
                    await self._give_up(stop, reason=str(exc))
                    return
                if prepared is not None:
                    await self._reboot(stop, holder=prepared)
            except Gated as exc:
                if self._requested:  # the reboot was requested: nothing left to back out of
                    self._log.warning("rebootd.cycle.gated_after_request", reason=exc.reason)
                    return
                await self._back_out(why=exc.detail)
                await self._block(BlockReason(kind=exc.reason, detail=exc.detail))
            except (LostSlot, NodeChanged) as exc:  # NodeChanged: a reclaimer removed our mark
                if self._requested:
                    self._log.error("rebootd.cycle.lost_slot_after_request", error=str(exc))
                    return
                await self._back_out(why=str(exc))

    async def _prepare(self, stop: asyncio.Event, *, holder: Holder, node: dict[str, Any]) -> Holder | None:
        """Mark, confirm, cordon and drain; returns our record when the node is ready to reboot
        (None: nothing more to do in this pass). Runs under the slot guard."""
        # The recovery baseline is read alongside the mark: a fresh slot needs both at once.
        baseline: asyncio.Task[dict[str, Any]] | None = None
        try:
            mark = mark_of(node)
            if mark is not None and mark.grant != holder.grant:
                # A mark of an earlier grant of ours (its daemon died before cleaning up).
                await put_back_node(self.kube, node=self.opt.node, grant=mark.grant)
                node, mark = await self._get_node(), None
            if mark is None and not self.sentinel.required:
                # The need went away between taking the slot and touching the node: give it back.
                await self.lock.release()
                self.metrics.lock_held.labels(node=self.opt.node).set(0)
                self._log.info("rebootd.cycle.no_longer_required")
                return None
            if mark is None:
                self._check_window()
                if self.recovery is not None:
                    baseline = asyncio.create_task(self.recovery.record(node=self.opt.node), name="baseline")
                boot, source = self._host_boot_id(node)
                if not boot:
                    raise Gated("no_boot_id", f"no boot id to prove a reboot with ({self.opt.boot_id_file})")
                evidence: dict[str, Any] = {
                    "bootID": boot,
                    "bootSource": source,
                    "wasUnschedulable": bool((node.get("spec") or {}).get("unschedulable", False)),
                }
                if baseline is not None:  # what "healthy again" means: read before anything moves
                    evidence["baseline"] = await baseline
                # Rule 2 of lock.py: mark the node (the evidence lives in the mark), then confirm
                # on a fresh read that the Lease that took our grant still lists it.
                mark = Mark(holder=replace(holder, phase="draining"), evidence=evidence)
                deferred = self._take_deferred()
                await set_annotations(
                    self.kube,
                    node=self.opt.node,
                    annotations={**deferred, NODE_MARK_ANNOTATION: mark.encode(), WAITING_ANNOTATION: None},
                    labels={REQUIRED_LABEL: deferred[REQUIRED_ANNOTATION]}
                    if REQUIRED_ANNOTATION in deferred
                    else None,
                )
                self._published.update({**deferred, WAITING_ANNOTATION: None})
                holder = await self.lock.confirm()
            gated = self.lock.gate()
            if gated is not None:  # halted or paused since we took the slot: disrupt nothing
                raise gated
            self._check_window()
            self._mark = mark
            self._set_phase("draining")
            # kured's drain(): pre-reboot labels, the drain delay, the "drain" notification, then
            # the cordon and the drain; the gate and the window are asked again after the delay.
            await self.signs.before_cordon()
            if self.opt.drain_delay:
                if await self._sleep(stop, self.opt.drain_delay):
                    return None
                gated = self.lock.gate()
                if gated is not None:
                    raise gated
                self._check_window()
            await self._tell("drain")
            # Only while our grant's mark is there: a reclaimer that judged us dead removes it in
            # the same guarded step as its uncordon, so our cordon cannot land after it unseen.
            await cordon(self.kube, node=self.opt.node, grant=holder.grant)
            await self._refill_queue_head()
            if self.opt.annotate_nodes:
                await self._publish(**{PHASE_ANNOTATION: f"draining since {self.clock.now().isoformat()}"})
            await self._event("RebootdDrain", "cordoned by rebootd; draining before reboot")
            if self.recovery is not None and "baseline" not in mark.evidence:  # a mark of an earlier version
                mark = Mark(
                    holder=mark.holder,
                    evidence={**mark.evidence, "baseline": await self.recovery.record(node=self.opt.node)},
                )
                await self._write_mark(mark)
            gated = self.lock.gate()
            if gated is not None:
                raise gated
            self._check_window()
            started = self.clock.monotonic()
            try:
                result = await drain_node(
                    self.kube,
                    node=self.opt.node,
                    options=self.opt.drain,
                    stop=stop,
                    clock=self.clock,
                    fence=self.lock.fence,
                )
            except DrainStopped:
                return None  # shutting down: the next daemon resumes from the record (phase draining)
            except DrainError as exc:
                await self._event("RebootdDrainFailed", str(exc)[:1000], warning=True)
                if not self.opt.force_reboot:
                    raise _DrainFailed(f"drain failed: {exc}") from exc
                self._log.warning("rebootd.cycle.forced_reboot", error=str(exc)[:300])
                result = None
            self.metrics.drain_seconds.labels(node=self.opt.node).observe(self.clock.monotonic() - started)
            evicted = [] if result is None else [p.to_json() for p in result.evicted]
            self._mark = Mark(
                holder=mark.holder,
                evidence={
                    **mark.evidence,
                    "evicted": evicted,
                    "rebootRequested": self.clock.now().isoformat(),
                },
            )
            return holder
        finally:
            if baseline is not None and not baseline.done():
                baseline.cancel()
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await baseline

    async def _write_mark(self, mark: Mark) -> None:
        """Rewrite our mark, only while the Node carries our grant's mark (NodeChanged otherwise):
        a mark removed by a reclaimer or an unlock is never brought back."""
        grant = mark.grant

        def plan(obj: dict[str, Any]) -> dict[str, Any] | None:
            current = mark_of(obj)
            if current is None or current.grant != grant:
                raise NodeChanged(f"node {self.opt.node}: the mark of grant {grant} is gone")
            return {"metadata": {"annotations": {NODE_MARK_ANNOTATION: mark.encode()}}}

        await guarded_patch(self.kube, node=self.opt.node, plan=plan, what="mark")
        self._mark = mark

    async def _reboot(self, stop: asyncio.Event, *, holder: Holder) -> None:
        """Request the reboot behind the last gate: the window, then the `rebooting` CAS that
        refuses while halted or paused and counts the attempt, then the deadline. A retry (the
        record counts earlier attempts) waits a back-off first."""
        self._set_phase("rebooting")
        if self.opt.reboot_delay and await self._sleep(stop, self.opt.reboot_delay):
            return
        if holder.attempts:
            delay = min(self.opt.backoff_max, self.opt.period * 2 ** min(holder.attempts - 1, 12))
            await self._block(
                BlockReason(
                    kind="reboot_retry",
                    detail=f"retrying the reboot (attempt {holder.attempts + 1}) in {delay:.0f}s",
                )
            )
            if await self._sleep(stop, delay):
                return
        self._check_window()
        gated = self.lock.gate()
        if gated is not None:
            raise gated
        # The node's mark must say "rebooting" before the reboot is requested: a Lease recreated
        # from a stale "draining" mark would have the node drained and rebooted a second time.
        mark = self._mark or Mark(holder=holder)
        await self._write_mark(Mark(holder=replace(holder, phase="rebooting"), evidence=mark.evidence))
        if self.opt.annotate_nodes:
            await self._publish(**{PHASE_ANNOTATION: f"rebooting since {self.clock.now().isoformat()}"})
        await self._event("RebootdReboot", "rebooting the node")
        await self._tell("reboot")
        await self._flush_events(within=1.0)  # bounded: the reboot ends this process
        if self._flush is not None:
            await self._flush()  # bounded too
        holder = await self.lock.set_phase(phase="rebooting", gated=True, attempts=holder.attempts + 1)
        self._check_window()
        self.lock.fence()
        self._requested = True
        try:
            await self.rebooter.reboot()
        except RebootFailed as exc:
            await self._reboot_failed(stop, holder=holder, reason=f"reboot of {self.opt.node} failed: {exc}")
            return
        # A real reboot ends this process. Still here after boot-timeout: it did not happen.
        if await self._sleep(stop, self.opt.boot_timeout):
            return
        now_boot, _ = self._host_boot_id(await self._get_node())
        if now_boot == (self._mark.evidence if self._mark else {}).get("bootID"):
            reason = f"node {self.opt.node} did not reboot within {self.opt.boot_timeout:g}s of the request"
            await self._reboot_failed(stop, holder=holder, reason=reason)

    async def _reboot_failed(self, stop: asyncio.Event, *, holder: Holder, reason: str) -> None:
        """A reboot request that did not reboot the node: retried (the next pass, after a back-off)
        up to `reboot_attempts` times, then the rollout halts and this node waits, holding its
        slot, for `rebootd resume` (each resume allows that many attempts again)."""
        self._log.warning("rebootd.cycle.reboot_failed", reason=reason[:300], attempts=holder.attempts)
        await self._event("RebootdRebootFailed", reason[:1000], warning=True)
        if holder.attempts % max(1, self.opt.reboot_attempts) == 0:
            await self._halt(reason=f"{reason} ({holder.attempts} attempts)", node=self.opt.node)
            self.metrics.reboots.labels(node=self.opt.node, result="reboot_failed").inc()
            await self._wait_for_resume(stop)

    async def _give_up(self, stop: asyncio.Event, *, reason: str) -> None:
        """Drain failed: put the node back (our cordon only), free the slot, back off."""
        await self._back_out(why=reason)
        self.metrics.reboots.labels(node=self.opt.node, result="drain_failed").inc()
        self._failures += 1
        backoff = min(self.opt.backoff_max, self.opt.period * 2 ** min(self._failures, 12))
        backoff *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
        await self._block(BlockReason(kind="backoff", detail=f"{reason}; retrying in {backoff:.0f}s"))
        self._log.warning("rebootd.cycle.gave_up", reason=reason[:300], backoff=round(backoff, 3))
        await self._sleep(stop, backoff)

    # --- after the reboot ---------------------------------------------------------------------
    async def _after_reboot(self, stop: asyncio.Event, *, holder: Holder) -> None:
        self._requested = False
        async with self._renewing():
            node = await self._get_node()
            mark = mark_of(node)
            if mark is None or mark.grant != holder.grant:
                mark = Mark(holder=holder, evidence=dict(holder.evidence))  # no mark: no evidence
            try:
                await self._after_reboot_steps(stop, holder=holder, mark=mark)
            except Gated as exc:  # a resumed pass whose reboot never happened met the gate
                if self._requested:
                    self._log.warning("rebootd.cycle.gated_after_request", reason=exc.reason)
                    return
                if exc.reason == "halted" and (self.lock.state.halted or {}).get("node") == self.opt.node:
                    await self._wait_for_resume(stop)  # our own failed reboot: hold the slot
                    return
                await self._back_out(why=exc.detail)
                await self._block(BlockReason(kind=exc.reason, detail=exc.detail))
            except (LostSlot, NodeChanged) as exc:
                self._log.error("rebootd.cycle.lost_slot_after_reboot", error=str(exc))

    async def _after_reboot_steps(self, stop: asyncio.Event, *, holder: Holder, mark: Mark) -> None:
        self._mark = mark
        if holder.phase in BOOTING_PHASES:
            before = str(mark.evidence.get("bootID") or "")
            node = await self._get_node()
            if mark.evidence.get("bootSource") == "node":
                now_boot = boot_id(node)
            else:
                now_boot, _ = self._host_boot_id(node)
            if not before or not now_boot:
                reason = (
                    f"node {self.opt.node}: no boot id to prove its reboot "
                    f"(recorded {before!r}, now {now_boot!r})"
                )
                await self._halt(reason=reason, node=self.opt.node)
                await self._wait_for_resume(stop)
                return
            if now_boot == before:
                # Recorded "rebooting" but this machine never went down (we died before or right
                # after the request, or the request failed): request it again, behind the gate.
                await self._reboot(stop, holder=holder)
                return
            self._set_phase("verifying")
            if not await self._verify_reboot(stop, holder=holder, boot=now_boot):
                return
            # No Lease write for this step: putting the node back is idempotent, and a pass
            # resumed from "rebooting" verifies the boot again and gets here.
            holder = replace(holder, phase="uncordoning")
        if holder.phase == "uncordoning":  # (also the record of a daemon of an earlier version)
            self._set_phase("uncordoning")
            await uncordon(self.kube, node=self.opt.node, grant=holder.grant)
            await self.signs.set_taint(on=False)
            await self.signs.after_uncordon()  # kured: the post-reboot labels after the uncordon
            await self._event("RebootdUncordon", "rebooted, verified and back in service")
            await self._tell("uncordon")
            holder = await self.lock.set_phase(phase="recovering")
        if holder.phase == "recovering":
            self._set_phase("recovering")
            if self.recovery is not None:
                problem = await self.recovery.wait_healthy(
                    node=self.opt.node, evidence=mark.evidence, within=self.opt.recovery_timeout, stop=stop
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
                QUEUE_ANNOTATION: None,
            },
            labels={REQUIRED_LABEL: None},
        )
        self._published.update(
            {
                LAST_REBOOT_ANNOTATION: finished,
                REQUIRED_ANNOTATION: None,
                WAITING_ANNOTATION: None,
                QUEUE_ANNOTATION: None,
            }
        )
        if self.opt.annotate_nodes:
            await self._publish(**{PHASE_ANNOTATION: f"rebooted at {finished}"})
        await self.signs.annotate(  # kured: in-progress goes before the lock, once none is needed
            required=self.sentinel.required, in_window=True, rebooted=True, now=self.clock.now()
        )
        await self.lock.release()
        self._mark = None
        self.metrics.lock_held.labels(node=self.opt.node).set(0)
        self.metrics.reboots.labels(node=self.opt.node, result="success").inc()
        self._failures = 0
        self._log.info("rebootd.cycle.done")
        self._set_phase("idle")

    async def _wait_for_resume(self, stop: asyncio.Event) -> None:
        """Halted by us: hold the slot until an operator clears the halt."""
        async with self.lock.following() as changed:
            while not stop.is_set() and self.lock.state.halted:
                await changed(self.opt.renew_interval)

    async def _verify_reboot(self, stop: asyncio.Event, *, holder: Holder, boot: str) -> bool:
        """The machine booted again (its boot id changed); now the Node must say so too: the
        kubelet's status with this boot's id, and Ready. A Node that still shows the old bootID
        and a stale Ready is not proof. Halts when that is not so within boot-timeout."""
        deadline = self.clock.monotonic() + self.opt.boot_timeout
        async with self.kube.follow(kind="nodes", namespace=None, name=self.opt.node) as follower:
            while not stop.is_set():
                node = follower.latest
                if node is not None and boot_id(node) == boot and is_ready(node):
                    self._node_uid = node["metadata"].get("uid", self._node_uid)
                    self.metrics.reboot_seconds.labels(node=self.opt.node).observe(
                        self._since((self._mark.evidence if self._mark else {}).get("rebootRequested"))
                    )
                    return True
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    break
                await follower.changed(timeout=min(remaining, 5.0))
        if stop.is_set():
            return False
        reason = (
            f"node {self.opt.node}: its kubelet did not report the new boot ({boot}) and Ready "
            f"within {self.opt.boot_timeout:g}s of the reboot"
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
