"""What a node's reboot cycle publishes about itself: its annotations, Events, gauges and
notifications, in one collaborator of the cycle (`NodeStatus`).

Rule: the cycle decides, this module says it. An annotation is written only when it changed
since we last wrote it (an unchanged state costs no request) and may be deferred to ride on the
next Node write (joining the queue costs no write of its own); Events are posted in the
background, off the cycle's critical path, and awaited (bounded) before a reboot and at stop;
notifications go through the injected `Notify` (notify.py sends them in the background); the
gauges are the injected `Metrics`. kured's labels, taint and annotations are signs.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rebootd.blockers import BlockReason
from rebootd.clock import Clock
from rebootd.kube import Kube
from rebootd.logs import get_logger
from rebootd.marks import QUEUE_ANNOTATION, REQUIRED_ANNOTATION, REQUIRED_LABEL, WAITING_ANNOTATION
from rebootd.metrics import Metrics
from rebootd.node import record_event, set_annotations
from rebootd.phases import Phase

Notify = Callable[[str, Mapping[str, str]], Awaitable[None]]
Flush = Callable[[], Awaitable[None]]
# Waiting reasons that are the ordinary course of a rollout: no "blocked" notification for them.
QUIET_REASONS = frozenset({"window", "queued", "concurrency", "zone_concurrency", "paused", "halted"})
SLOT_REASONS = frozenset({"queued", "concurrency", "zone_concurrency"})
UNWRITTEN = "\0"  # `published` has no value for a key never written by this process


def published_reason(reason: BlockReason | None) -> str | None:
    """The node annotation for a waiting reason. Waiting for a slot is one condition, however the
    queue moves (full, or free but another node first): a text that changed with every hand-off
    would cost every waiter a write per hand-off."""
    if reason is None:
        return None
    if reason.kind in SLOT_REASONS:
        return "slot: waiting for a free slot in the reboot lock"
    return f"{reason.kind}: {reason.detail}"[:250]


class NodeStatus:
    """This node's published status: what it last wrote, what waits for the next write."""

    def __init__(
        self,
        *,
        kube: Kube,
        node: str,
        clock: Clock,
        metrics: Metrics,
        notify: Notify | None = None,
        flush_notifications: Flush | None = None,
    ) -> None:
        self.kube = kube
        self.node = node
        self.clock = clock
        self.metrics = metrics
        self._notify = notify
        self._flush = flush_notifications
        self.phase: str = Phase.IDLE
        self.waiting_for: BlockReason | None = None
        self.node_uid = ""  # for the Events' involvedObject
        self.published: dict[str, str | None] = {}  # annotations as this process last wrote them
        # Annotations to write with the next Node write (joining the queue costs no write of its own).
        self.deferred: dict[str, str | None] = {}
        self.seen_annotations: Mapping[str, Any] = {}  # this Node's annotations as last read
        self._events: set[asyncio.Task[None]] = set()
        self._log = get_logger(node=node)

    def seen(self, node: Mapping[str, Any]) -> None:
        """The Node as just read: its uid (for Events) and its annotations."""
        meta = node.get("metadata") or {}
        self.node_uid = meta.get("uid", "")
        self.seen_annotations = meta.get("annotations") or {}

    # --- the phase gauge ----------------------------------------------------------------------
    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self._log.info("rebootd.cycle.phase", phase=phase, previous=self.phase)
        self.phase = phase
        self.metrics.set_phase(node=self.node, phase=phase)

    def holding(self, held: bool) -> None:
        """The `rebootd_lock_held` gauge: does this node hold a slot?"""
        self.metrics.lock_held.labels(node=self.node).set(1 if held else 0)

    def rollout_halted(self, halted: bool) -> None:
        """The `rebootd_rollout_halted` gauge, as this daemon last read the Lease."""
        self.metrics.rollout_halted.set(1 if halted else 0)

    def outcome(self, result: str) -> None:
        """One reboot cycle ended: `success`, `drain_failed`, `reboot_failed`, `not_proven`,
        `recovery_failed` (the `rebootd_reboots_total{result}` counter)."""
        self.metrics.reboots.labels(node=self.node, result=result).inc()

    def drained_in(self, seconds: float) -> None:
        self.metrics.drain_seconds.labels(node=self.node).observe(seconds)

    def rebooted_in(self, seconds: float) -> None:
        """From the reboot request to the Node's proof of the new boot."""
        self.metrics.reboot_seconds.labels(node=self.node).observe(seconds)

    # --- Events and notifications -------------------------------------------------------------
    async def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Post an Event in the background (best effort, off the cycle's critical path); the
        pending ones are awaited, bounded, before a reboot and when the cycle stops."""
        task = asyncio.create_task(
            record_event(
                self.kube,
                node=self.node,
                node_uid=self.node_uid,
                reason=reason,
                message=message,
                type="Warning" if warning else "Normal",
                clock=self.clock,
            ),
            name=f"event-{reason}",
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def flush_events(self, *, within: float) -> None:
        if self._events:
            await asyncio.wait(set(self._events), timeout=within)

    async def flush_notifications(self) -> None:
        """Deliver the pending notifications (bounded by notify.py): before a reboot."""
        if self._flush is not None:
            await self._flush()

    async def tell(self, what: str, **values: str) -> None:
        if self._notify is not None:
            await self._notify(what, {"node": self.node, **values})

    async def halted(self, *, reason: str) -> None:
        """A halt this daemon recorded: its Event, its notification, the gauge."""
        await self.event("RebootdHalted", reason[:1000], warning=True)
        await self.tell("halt", reason=reason)
        self.rollout_halted(True)

    # --- annotations --------------------------------------------------------------------------
    async def publish(self, **annotations: str | None) -> None:
        """Write node annotations that changed since we last wrote them (none when unchanged),
        with the deferred ones; `reboot-required` goes with its label (the queue's selector)."""
        deferred = self.take_deferred()
        changed = {
            **deferred,
            **{k: v for k, v in annotations.items() if self.published.get(k, UNWRITTEN) != v},
        }
        if not changed:
            return
        labels = {REQUIRED_LABEL: changed[REQUIRED_ANNOTATION]} if REQUIRED_ANNOTATION in changed else None
        try:
            await set_annotations(self.kube, node=self.node, annotations=changed, labels=labels)
        except BaseException:
            self.restore_deferred(deferred)
            raise
        self.published.update(changed)

    def defer(self, **annotations: str | None) -> None:
        """Annotations for the next Node write (`publish` or the mark), if they changed."""
        for key, value in annotations.items():
            if self.published.get(key, UNWRITTEN) != value:
                self.deferred[key] = value
            else:
                self.deferred.pop(key, None)

    def take_deferred(self) -> dict[str, str | None]:
        deferred, self.deferred = self.deferred, {}
        return deferred

    def restore_deferred(self, deferred: Mapping[str, str | None]) -> None:
        """A write that carried `deferred` failed: they go with the next one (newer values win)."""
        self.deferred = {**deferred, **self.deferred}

    def queue_record(self, *, new: Callable[[], str]) -> str:
        """Our queue record: kept across restarts (the time we first needed this reboot), and
        across passes until written (one ticket per reboot need, however many passes it takes);
        `new()` when there is none."""
        pending = self.deferred.get(QUEUE_ANNOTATION)
        if pending:
            return pending
        if QUEUE_ANNOTATION in self.published:  # ours (None: removed at our last release)
            known = self.published[QUEUE_ANNOTATION]
        else:  # a new process: what an earlier one wrote (read by our first pass at start-up)
            known = self.seen_annotations.get(QUEUE_ANNOTATION)
        if isinstance(known, str) and known:
            return known
        return new()

    # --- why the node waits -------------------------------------------------------------------
    async def wait_for(self, reason: BlockReason | None, *, publish: bool = True) -> None:
        """The node waits for `reason` (None: for nothing): the `rebootd_blocked` gauge, a log
        line and a "block" notification when it changed (none for the ordinary course of a
        rollout), the `waiting-for` annotation unless `publish` is False (written by the mark)."""
        previous = self.waiting_for
        if previous is not None and (reason is None or previous.kind != reason.kind):
            self.metrics.blocked.labels(node=self.node, reason=previous.kind).set(0)
        if reason is not None:
            self.metrics.blocked.labels(node=self.node, reason=reason.kind).set(1)
            if previous != reason:
                self._log.info("rebootd.cycle.waiting", reason=reason.kind, detail=reason.detail)
            if (previous is None or previous.kind != reason.kind) and reason.kind not in QUIET_REASONS:
                await self.tell("block", reason=reason.detail)
        self.waiting_for = reason
        if publish:
            await self.publish(**{WAITING_ANNOTATION: published_reason(reason)})
