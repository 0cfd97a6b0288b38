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
The lock protocol (records, marks, cordon, put-back, reclaim) is lock.py's; what the node
publishes about itself (annotations, Events, gauges, notifications) is nodestatus.py's, kured's
labels and taint signs.py's: this module only sequences them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import aiohttp

from rebootd.backoff import Backoff
from rebootd.blockers import Blocker, BlockReason, NodeBudget
from rebootd.clock import Clock
from rebootd.drain import DrainError, DrainOptions, DrainStopped, drain_node
from rebootd.kube import Kube, KubeError
from rebootd.lock import Gated, LeaseLock, LostSlot
from rebootd.lockstate import BOOTING_PHASES, RECLAIMING, STAND_BY, Holder, decide_acquire, next_in_line
from rebootd.logs import get_logger
from rebootd.marks import (
    QUEUE_ANNOTATION,
    REQUIRED_LABEL,
    Mark,
    encode_queue_record,
    mark_of,
    queue_of,
    ticket_of,
)
from rebootd.metrics import Metrics
from rebootd.node import (
    NodeChanged,
    boot_id,
    is_ready,
    uncordon,
)
from rebootd.nodestatus import Flush, NodeStatus
from rebootd.nodestatus import Notify as Notify  # re-exported (daemon.py)
from rebootd.phases import PRE_REBOOT_PHASES, Baseline, Evidence, Phase
from rebootd.reboot import Rebooter, RebootFailed
from rebootd.recovery import read_boot_id
from rebootd.schedule import Window
from rebootd.signs import NodeSigns
from rebootd.waits import sleep_or_stop, wait_any

LAST_REBOOT_ANNOTATION = "rebootd.io/last-reboot"
REQUIRED_ANNOTATION = "rebootd.io/reboot-required"
WAITING_ANNOTATION = "rebootd.io/waiting-for"
PHASE_ANNOTATION = "rebootd.io/phase"
TRANSIENT = (KubeError, aiohttp.ClientError, TimeoutError)
T = TypeVar("T")
# the cycle's retry after an API error: 1 s doubling to 30 s, each delay in its upper half
API_ERROR_BACKOFF = Backoff(base=1.0, cap=30.0, jitter="scaled", low=0.5, high=1.0)


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


@dataclass
class _BlockerChecks:
    """The blockers' answers while a node queues for a slot. The periodic ones (`periodic`) are
    asked every `period`; the at-slot ones (`at_slot`, None when there are none) with them only
    when never asked yet, while they block, or while this node is next in line, and again right
    before a slot would be taken when their answer is older than a period. An answer stays in
    force until a fresh check (every period) clears it."""

    periodic: Callable[[], Awaitable[BlockReason | None]]
    at_slot: Callable[[], Awaitable[BlockReason | None]] | None
    next_in_line: Callable[[], bool]
    would_be_served: Callable[[], bool]
    clock: Clock
    period: float
    next_check: float = 0.0  # monotonic time of the next periodic check
    blocked: BlockReason | None = None
    slot_blocked: BlockReason | None = None
    slot_checked: float | None = None  # monotonic time of the last at-slot answer

    async def answer(self) -> BlockReason | None:
        """Why to wait now (None: try for a slot), asking the blockers that are due."""
        mono = self.clock.monotonic()
        if mono >= self.next_check:
            self.blocked = await self.periodic()
            if self.blocked is None and self.at_slot is not None and self._at_slot_due():
                await self._ask_at_slot()
            self.blocked = self.blocked or self.slot_blocked
            self.next_check = mono + self.period
        if self.blocked is None and self.at_slot is not None and self._stale() and self.would_be_served():
            self.blocked = await self._ask_at_slot()  # about to take a slot on an old answer: ask now
        return self.blocked

    def _at_slot_due(self) -> bool:
        return self.slot_checked is None or self.slot_blocked is not None or self.next_in_line()

    def _stale(self) -> bool:
        return self.slot_checked is None or self.clock.monotonic() - self.slot_checked >= self.period

    async def _ask_at_slot(self) -> BlockReason | None:
        assert self.at_slot is not None
        self.slot_blocked, self.slot_checked = await self.at_slot(), self.clock.monotonic()
        return self.slot_blocked


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
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.sentinel = sentinel
        self.rebooter = rebooter
        self.blockers = list(blockers)
        self.clock = clock
        self.metrics = metrics
        self.recovery = recovery
        self.budget = budget
        self.status = NodeStatus(
            kube=kube,
            node=options.node,
            clock=clock,
            metrics=metrics,
            notify=notify,
            flush_notifications=flush_notifications,
        )
        self._failures = 0
        self._mark: Mark | None = None  # our node's mark as we last wrote it (the evidence)
        self._renew_lost: LostSlot | None = None
        self._slot_changed = asyncio.Event()
        self._requested = False  # a reboot was requested in this pass: no backing out any more
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
    @property
    def phase(self) -> str:
        return self.status.phase

    @property
    def waiting_for(self) -> BlockReason | None:
        return self.status.waiting_for

    def _queue_record(self) -> str:
        return self.status.queue_record(
            new=lambda: encode_queue_record(since=self.clock.now(), zone=self.lock.config.zone)
        )

    async def _block(self, reason: BlockReason | None, *, publish: bool = True) -> None:
        """The node waits for `reason` (None: nothing): its status, then kured's signs."""
        await self.status.wait_for(reason, publish=publish)
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
        self.status.seen(node)
        return node

    async def _wait_sentinel_or_stop(self, stop: asyncio.Event, *, seconds: float | None) -> None:
        await wait_any(events=[stop, self.sentinel.changed], seconds=seconds)
        self.sentinel.changed.clear()

    # --- the loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run cycles until `stop`. API trouble backs off and re-derives the phase from the Lease."""
        self.status.set_phase(Phase.IDLE)
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
                delay = API_ERROR_BACKOFF.delay(attempt=errors, rng=self._rng)
                self._log.warning("rebootd.cycle.api_error", error=str(exc)[:300], retry_in=round(delay, 2))
                await sleep_or_stop(seconds=delay, stop=stop)
        await self.status.flush_events(
            within=2.0
        )  # a clean stop (SIGTERM); a killed process posts nothing more

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
        """One pass: re-derive where we are from the Lease (our record) and the Node (our mark),
        and go on from there."""
        state = await self.lock.refresh()
        self.status.rollout_halted(bool(state.halted))
        record = state.holders.get(self.opt.node)
        if record is not None:
            await self._resume(stop, record=record)
            return
        if first or self.lock.check_orphans:
            await self._clean_up_orphaned_mark()
        if not self.sentinel.required:
            await self._idle(stop)
            return
        self.status.set_phase(Phase.REQUIRED)
        # Written with the next Node write (the waiting reason, or the mark): one write to join.
        self.status.defer(**{REQUIRED_ANNOTATION: "true", QUEUE_ANNOTATION: self._queue_record()})
        async with self.lock.following():  # one watch from queueing through the drain
            if await self._wait_for_slot(stop):
                holder = self.lock.mine
                if holder is not None:
                    await self._disrupt(stop, holder=holder)

    async def _resume(self, stop: asyncio.Event, *, record: Holder) -> None:
        """This node has a record in the Lease: judged dead while we were away (the reclaim is
        finished), another daemon's, or ours to go on with from its phase."""
        if record.phase == RECLAIMING:
            await self.lock.finish_reclaim(record)
            self.status.holding(False)
            return
        holder = await self._own_record(stop, record)
        if holder is None:
            return
        if holder.taken_from and not await self.lock.finish_take_over(holder):
            return
        self._log.info("rebootd.cycle.resume", phase=holder.phase, grant=holder.grant)
        if holder.phase in PRE_REBOOT_PHASES:
            await self._disrupt(stop, holder=holder)
        else:
            await self._after_reboot(stop, holder=holder)

    async def _idle(self, stop: asyncio.Event) -> None:
        """No reboot needed: nothing published about one, wait for the sentinel."""
        self.status.set_phase(Phase.IDLE)
        self.status.deferred.clear()
        await self._block(None)
        await self.status.publish(**{REQUIRED_ANNOTATION: None, QUEUE_ANNOTATION: None})
        await self._wait_sentinel_or_stop(stop, seconds=None)

    async def _own_record(self, stop: asyncio.Event, record: Holder) -> Holder | None:
        """This node's record in the Lease: ours (this process's grant, or our container's before a
        restart), taken over (another daemon's gone stale, or of lock format 1), or another live
        daemon's: we stand by (`lockstate.claim_own_record`). Returns our record, or None."""
        action = self.lock.claim_of(record)
        if action == STAND_BY:
            await self._block(
                BlockReason(
                    kind="other_daemon",
                    detail=f"another rebootd (pod {record.pod}) holds this node's slot; standing by",
                )
            )
            async with self.lock.following() as changed:
                await changed(self.opt.renew_interval)
            return None
        return await self.lock.claim(record, action)

    async def _clean_up_orphaned_mark(self) -> None:
        """We disrupted this node but the Lease no longer lists it (reclaimed, unlocked, or the
        Lease recreated): put the node back, and take down the pre-reboot labels of that pass."""
        node = await self._get_node()
        await self.lock.put_back_orphan(node)
        await self.signs.after_put_back(node=node)

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
        last = self.status.published.get(LAST_REBOOT_ANNOTATION)
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
        period: N waiting nodes do not list every pod and PDB every period (`_BlockerChecks`)."""
        await self._read_last_reboot()
        at_slot = [b for b in self.blockers if b.at_slot]
        checks = _BlockerChecks(
            periodic=self._blocked_reason,
            at_slot=(lambda: self._ask(at_slot)) if at_slot else None,
            next_in_line=self._next_in_line,
            would_be_served=self._would_be_served,
            clock=self.clock,
            period=self.opt.period,
        )
        joined = False  # joining the head is tried once per entry into the queue (lock.py rule 8)
        await self.lock.resolve_limits()  # a share of the nodes ("10%"): against today's count
        ticket = ticket_of(self._queue_record())
        async with self.lock.following() as changed:
            while not stop.is_set() and self.sentinel.required:
                blocked = await checks.answer()
                if blocked is not None:  # in force until a fresh check (every period) clears it
                    await self._wait_blocked(stop, blocked, until=checks.next_check)
                    joined = False
                    continue
                outcome = await self._try_slot(ticket=ticket, join=not joined)
                joined = True
                if outcome == "retry":
                    continue
                if outcome != "wait":
                    return outcome == "taken"
                await changed(self._slot_wait(until=checks.next_check))
        await self._leave_queue()
        return False

    async def _read_last_reboot(self) -> None:
        """When this node last rebooted (reboot-loop protection), read once per process."""
        if LAST_REBOOT_ANNOTATION not in self.status.published:
            node = await self._get_node()
            annotations = node["metadata"].get("annotations") or {}
            self.status.published[LAST_REBOOT_ANNOTATION] = annotations.get(LAST_REBOOT_ANNOTATION)

    async def _wait_blocked(self, stop: asyncio.Event, blocked: BlockReason, *, until: float) -> None:
        """Something blocks: say so, leave the queue's head, wait for the next check (or a
        change of the sentinel)."""
        await self._block(blocked)
        await self._leave_queue()
        await self._wait_sentinel_or_stop(stop, seconds=max(0.01, until - self.clock.monotonic()))

    async def _leave_queue(self) -> None:
        if self.opt.node in self.lock.state.waiters:
            await self.lock.leave_queue()

    async def _try_slot(self, *, ticket: int | None, join: bool) -> str:
        """Reclaim dead holders, then try to take a slot: "taken", "own_record" (this node's
        record appeared: see `_step`), "retry" (a deleted Lease just went: try again at once),
        or "wait" (the reason is published)."""
        for _, reason in await self.lock.reclaim_stale_holders():
            await self.status.halted(reason=reason)
        verdict = await self.lock.try_acquire(
            phase=Phase.DRAINING,  # marking and cordoning follow at once
            unavailable=self.budget.unavailable if self.budget is not None else None,
            ticket=ticket,
            join=join,
        )
        self.status.rollout_halted(bool(self.lock.state.halted))
        if verdict.allowed:
            await self._block(None, publish=False)  # cleared in the node-mark patch
            return "taken"
        if verdict.reason == "own_record":
            return "own_record"
        if verdict.reason == "lock_deleting" and await self.lock.finish_deletion():
            return "retry"  # the deleted Lease is gone now: the next try re-creates it
        await self._block(BlockReason(kind=verdict.reason, detail=self._slot_detail(verdict.reason)))
        return "wait"

    def _slot_wait(self, *, until: float) -> float:
        """How long to follow the Lease before trying again: at most the grace, sooner when a
        kubelet's liveness is unknown or the blockers are due."""
        check_every = max(0.05, min(self.opt.period, self.lock.config.grace))
        return min(
            check_every,
            self.lock.heartbeat_poll or check_every,
            max(0.05, until - self.clock.monotonic()),
        )

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
            await self.status.halted(reason=reason)

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
                await sleep_or_stop(seconds=next_at - self.clock.monotonic(), stop=None)
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
            self.status.holding(True)
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
        await self.lock.back_out(why=why, then=self.signs.after_put_back)
        self.status.holding(False)

    async def _disrupt(self, stop: asyncio.Event, *, holder: Holder) -> None:
        self._requested = False
        async with self._renewing():
            try:
                if self.clock.monotonic() >= self.lock.valid_until:
                    await self.lock.renew()  # a resumed pass: no eviction before a fresh write
                node = await self._get_node()
                mark = mark_of(node)
                if mark is not None and self.lock.mark_ahead_of_record(mark, holder=holder):
                    # The mark is the newer: never drain and reboot a second time. The write
                    # proves we hold the slot.
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
        if await self.lock.put_back_earlier(node, holder=holder):  # an earlier grant's mark
            node = await self._get_node()
        mark = mark_of(node)
        if mark is None and not self.sentinel.required:
            # The need went away between taking the slot and touching the node: give it back.
            await self.lock.release()
            self.status.holding(False)
            self._log.info("rebootd.cycle.no_longer_required")
            return None
        if mark is None:
            holder, mark = await self._mark_node(holder=holder, node=node)
        self._pass_gate()  # halted or paused since we took the slot: disrupt nothing
        self._mark = mark
        self.status.set_phase(Phase.DRAINING)
        if not await self._cordon(stop, holder=holder):
            return None
        mark = await self._baseline_of_earlier_mark(mark)
        self._pass_gate()
        if not await self._drain(stop, mark=mark):
            return None
        return holder

    async def _mark_node(self, *, holder: Holder, node: dict[str, Any]) -> tuple[Holder, Mark]:
        """Rule 2 of lock.py: mark the node with the evidence (the boot id, whether an admin had
        cordoned it, the recovery baseline read alongside), with the annotations deferred to
        this write, then confirm on a fresh read that the Lease that took our grant still lists it."""
        self._check_window()
        baseline: asyncio.Task[dict[str, Any]] | None = None
        if self.recovery is not None:
            baseline = asyncio.create_task(self.recovery.record(node=self.opt.node), name="baseline")
        try:
            boot, source = self._host_boot_id(node)
            if not boot:
                raise Gated("no_boot_id", f"no boot id to prove a reboot with ({self.opt.boot_id_file})")
            evidence: Evidence = {
                "bootID": boot,
                "bootSource": source,
                "wasUnschedulable": bool((node.get("spec") or {}).get("unschedulable", False)),
            }
            if baseline is not None:  # what "healthy again" means: read before anything moves
                evidence["baseline"] = cast(Baseline, await baseline)
        finally:
            if baseline is not None and not baseline.done():
                baseline.cancel()
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await baseline
        deferred = self.status.take_deferred()
        try:
            mark = await self.lock.mark(
                holder=holder,
                evidence=evidence,
                annotations={**deferred, WAITING_ANNOTATION: None},
                labels={REQUIRED_LABEL: deferred[REQUIRED_ANNOTATION]}
                if REQUIRED_ANNOTATION in deferred
                else None,
            )
        except BaseException:
            self.status.restore_deferred(deferred)
            raise
        self.status.published.update({**deferred, WAITING_ANNOTATION: None})
        return await self.lock.confirm(), mark

    def _pass_gate(self) -> None:
        """The escalation gate (lock.py rule 1): raise Gated when halted, paused, the Lease being
        deleted or outside the window."""
        gated = self.lock.gate()
        if gated is not None:
            raise gated
        self._check_window()

    async def _cordon(self, stop: asyncio.Event, *, holder: Holder) -> bool:
        """kured's drain(): pre-reboot labels, the drain delay, the "drain" notification, then the
        cordon (only while our grant's mark is there); the gate and the window are asked again
        after the delay. False when stopped during the delay."""
        await self.signs.before_cordon()
        if self.opt.drain_delay:
            if await sleep_or_stop(seconds=self.opt.drain_delay, stop=stop):
                return False
            self._pass_gate()
        await self.status.tell("drain")
        await self.lock.cordon(holder=holder)
        await self._refill_queue_head()
        if self.opt.annotate_nodes:
            await self.status.publish(**{PHASE_ANNOTATION: f"draining since {self.clock.now().isoformat()}"})
        await self.status.event("RebootdDrain", "cordoned by rebootd; draining before reboot")
        return True

    async def _baseline_of_earlier_mark(self, mark: Mark) -> Mark:
        """A mark of an earlier version lacks the recovery baseline: read it now, and keep it."""
        if self.recovery is None or "baseline" in mark.evidence:
            return mark
        mark = Mark(
            holder=mark.holder,
            evidence={
                **mark.evidence,
                "baseline": cast(Baseline, await self.recovery.record(node=self.opt.node)),
            },
        )
        await self._write_mark(mark)
        return mark

    async def _drain(self, stop: asyncio.Event, *, mark: Mark) -> bool:
        """Drain the node, fenced by the slot's deadline; the evicted pods and the time of the
        reboot request go into the mark kept for the `rebooting` write. False when stopped (the
        next daemon resumes from the record, phase draining); _DrainFailed unless forced."""
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
            return False
        except DrainError as exc:
            await self.status.event("RebootdDrainFailed", str(exc)[:1000], warning=True)
            if not self.opt.force_reboot:
                raise _DrainFailed(f"drain failed: {exc}") from exc
            self._log.warning("rebootd.cycle.forced_reboot", error=str(exc)[:300])
            result = None
        self.status.drained_in(self.clock.monotonic() - started)
        evicted = [] if result is None else [p.to_json() for p in result.evicted]
        self._mark = Mark(
            holder=mark.holder,
            evidence={**mark.evidence, "evicted": evicted, "rebootRequested": self.clock.now().isoformat()},
        )
        return True

    async def _write_mark(self, mark: Mark) -> None:
        await self.lock.write_mark(mark)
        self._mark = mark

    async def _reboot(self, stop: asyncio.Event, *, holder: Holder) -> None:
        """Request the reboot behind the last gate: the window, then the `rebooting` CAS that
        refuses while halted or paused and counts the attempt, then the deadline. A retry (the
        record counts earlier attempts) waits a back-off first."""
        self.status.set_phase(Phase.REBOOTING)
        if self.opt.reboot_delay and await sleep_or_stop(seconds=self.opt.reboot_delay, stop=stop):
            return
        if holder.attempts:
            delay = Backoff(base=self.opt.period, cap=self.opt.backoff_max, jitter="none").delay(
                attempt=holder.attempts
            )
            await self._block(
                BlockReason(
                    kind="reboot_retry",
                    detail=f"retrying the reboot (attempt {holder.attempts + 1}) in {delay:.0f}s",
                )
            )
            if await sleep_or_stop(seconds=delay, stop=stop):
                return
        self._check_window()
        gated = self.lock.gate()
        if gated is not None:
            raise gated
        # The node's mark must say "rebooting" before the reboot is requested: a Lease recreated
        # from a stale "draining" mark would have the node drained and rebooted a second time.
        mark = self._mark or Mark(holder=holder)
        await self._write_mark(Mark(holder=replace(holder, phase=Phase.REBOOTING), evidence=mark.evidence))
        if self.opt.annotate_nodes:
            await self.status.publish(**{PHASE_ANNOTATION: f"rebooting since {self.clock.now().isoformat()}"})
        await self.status.event("RebootdReboot", "rebooting the node")
        await self.status.tell("reboot")
        await self.status.flush_events(within=1.0)  # bounded: the reboot ends this process
        await self.status.flush_notifications()  # bounded too
        holder = await self.lock.set_phase(phase=Phase.REBOOTING, gated=True, attempts=holder.attempts + 1)
        self._check_window()
        self.lock.fence()
        self._requested = True
        try:
            await self.rebooter.reboot()
        except RebootFailed as exc:
            await self._reboot_failed(stop, holder=holder, reason=f"reboot of {self.opt.node} failed: {exc}")
            return
        # A real reboot ends this process. Still here after boot-timeout: it did not happen.
        if await sleep_or_stop(seconds=self.opt.boot_timeout, stop=stop):
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
        await self.status.event("RebootdRebootFailed", reason[:1000], warning=True)
        if holder.attempts % max(1, self.opt.reboot_attempts) == 0:
            await self._halt(reason=f"{reason} ({holder.attempts} attempts)", node=self.opt.node)
            self.status.outcome("reboot_failed")
            await self._wait_for_resume(stop)

    async def _give_up(self, stop: asyncio.Event, *, reason: str) -> None:
        """Drain failed: put the node back (our cordon only), free the slot, back off."""
        await self._back_out(why=reason)
        self.status.outcome("drain_failed")
        self._failures += 1
        backoff = Backoff(
            base=self.opt.period, cap=self.opt.backoff_max, jitter="scaled", low=0.8, high=1.2
        ).delay(attempt=self._failures + 1, rng=self._rng)
        await self._block(BlockReason(kind="backoff", detail=f"{reason}; retrying in {backoff:.0f}s"))
        self._log.warning("rebootd.cycle.gave_up", reason=reason[:300], backoff=round(backoff, 3))
        await sleep_or_stop(seconds=backoff, stop=stop)

    # --- after the reboot ---------------------------------------------------------------------
    async def _after_reboot(self, stop: asyncio.Event, *, holder: Holder) -> None:
        self._requested = False
        async with self._renewing():
            node = await self._get_node()
            mark = mark_of(node)
            if mark is None or mark.grant != holder.grant:
                mark = Mark(holder=holder, evidence=cast(Evidence, dict(holder.evidence)))  # no mark: none
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
            if not await self._prove_reboot(stop, holder=holder, mark=mark):
                return
            # No Lease write for this step: putting the node back is idempotent, and a pass
            # resumed from "rebooting" verifies the boot again and gets here.
            holder = replace(holder, phase=Phase.UNCORDONING)
        if holder.phase == Phase.UNCORDONING:  # (also the record of a daemon of an earlier version)
            holder = await self._uncordon(holder)
        if holder.phase == Phase.RECOVERING and not await self._recover(stop, mark=mark):
            return
        # No Lease write for "releasing": a pass resumed during the release delay re-checks the
        # recovery (healthy at once) and waits the delay again.
        self.status.set_phase(Phase.RELEASING)
        if self.opt.release_delay and await sleep_or_stop(seconds=self.opt.release_delay, stop=stop):
            return
        await self._release()

    async def _prove_reboot(self, stop: asyncio.Event, *, holder: Holder, mark: Mark) -> bool:
        """Recorded `rebooting`: did this machine reboot? True once proven (a new boot id, then the
        Node's own proof: `_verify_reboot`). No boot id to compare halts; the same boot id means
        the request never took effect: it is made again, behind the gate."""
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
            return False
        if now_boot == before:
            # Recorded "rebooting" but this machine never went down (we died before or right
            # after the request, or the request failed): request it again, behind the gate.
            await self._reboot(stop, holder=holder)
            return False
        self.status.set_phase(Phase.VERIFYING)
        return await self._verify_reboot(stop, holder=holder, boot=now_boot)

    async def _uncordon(self, holder: Holder) -> Holder:
        """Back in service: our cordon lifted (only ours), kured's signs after an uncordon, then
        the record says `recovering`."""
        self.status.set_phase(Phase.UNCORDONING)
        await uncordon(self.kube, node=self.opt.node, grant=holder.grant)
        await self.signs.set_taint(on=False)
        await self.signs.after_uncordon()  # kured: the post-reboot labels after the uncordon
        await self.status.event("RebootdUncordon", "rebooted, verified and back in service")
        await self.status.tell("uncordon")
        return await self.lock.set_phase(phase=Phase.RECOVERING)

    async def _recover(self, stop: asyncio.Event, *, mark: Mark) -> bool:
        """Wait until the workloads the reboot disrupted are healthy again: True when they are (or
        there is no recovery gate); on recovery-timeout the rollout halts and we keep the slot
        until an operator resumes it."""
        self.status.set_phase(Phase.RECOVERING)
        if self.recovery is None:
            return True
        problem = await self.recovery.wait_healthy(
            node=self.opt.node, evidence=mark.evidence, within=self.opt.recovery_timeout, stop=stop
        )
        if stop.is_set():
            return False
        if problem is None:
            return True
        reason = f"workloads disrupted by the reboot of {self.opt.node} are not healthy: {problem}"
        await self.status.event("RebootdRecoveryFailed", reason[:1000], warning=True)
        await self._halt(reason=reason, node=self.opt.node)
        self.status.outcome("recovery_failed")
        await self._wait_for_resume(stop)
        return False

    async def _release(self) -> None:
        """Done: the mark and the queue record go (before the release: a node that keeps a mark
        is put back at start), the last-reboot time is written, then the slot is given back."""
        finished = self.clock.now().isoformat()
        self.status.deferred.clear()  # this pass's join, if never written, is over: not written after it
        done: dict[str, str | None] = {
            LAST_REBOOT_ANNOTATION: finished,
            REQUIRED_ANNOTATION: None,
            WAITING_ANNOTATION: None,
            QUEUE_ANNOTATION: None,
        }
        await self.lock.unmark(annotations=done, labels={REQUIRED_LABEL: None})
        self.status.published.update(done)
        if self.opt.annotate_nodes:
            await self.status.publish(**{PHASE_ANNOTATION: f"rebooted at {finished}"})
        await self.signs.annotate(  # kured: in-progress goes before the lock, once none is needed
            required=self.sentinel.required, in_window=True, rebooted=True, now=self.clock.now()
        )
        await self.lock.release()
        self._mark = None
        self.status.holding(False)
        self.status.outcome("success")
        self._failures = 0
        self._log.info("rebootd.cycle.done")
        self.status.set_phase(Phase.IDLE)

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
                    self.status.node_uid = node["metadata"].get("uid", self.status.node_uid)
                    self.status.rebooted_in(
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
        await self.status.event("RebootdRebootNotProven", reason, warning=True)
        await self._halt(reason=reason, node=self.opt.node)
        self.status.outcome("not_proven")
        return False

    def _since(self, iso: object) -> float:
        try:
            return max(0.0, (self.clock.now() - datetime.fromisoformat(str(iso))).total_seconds())
        except ValueError:
            return 0.0
