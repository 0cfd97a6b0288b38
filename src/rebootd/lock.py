"""The reboot lock: one coordination.k8s.io/v1 Lease used as a counting semaphore.

Safety model (read this before changing anything here). Three mechanisms fence what a holder
does, each where Kubernetes allows it:

A. The Lease CAS. Every change is a read-modify-write of the whole Lease with
   `metadata.resourceVersion` (409 = re-read and decide again; decisions are pure functions in
   `lockstate.py`; no write is retried blindly). Limits (concurrency, zone concurrency, pause,
   halt, a pending deletion of the Lease) are checked against the state read for the very write
   that takes the slot, so two nodes never both pass on one version.
   Test: tests/unit/test_lockstate.py, tests/integration/test_lock_safety.py.

B. The grant. Each slot taken gets a random grant id, written with the daemon's Pod uid and the
   Lease uid into the record, then into the node mark (`marks.py`), then into the
   cordon-ownership annotation in the same guarded write as the cordon. Every write on a
   holder's behalf is scoped to its grant: record CASes (`_change_own`), the put-back of the node
   (mark removed and, only if `cordoned-by` names the grant, the cordon), reclaims, `unlock`. A
   second daemon for the same node (a DaemonSet surge), a stalled reclaimer or an operator
   acting on an older grant changes nothing of a newer one. Node writes are guarded by the
   Node's resourceVersion (`node.guarded_patch`): a cordon racing a put-back is either seen and
   undone, or refused because it requires the mark. A take-over (this node's record of a dead
   daemon made ours) is two writes, the record first: the record keeps the grant it replaced
   (`takenFrom`) and answers for that grant's mark and cordon until its daemon has moved them
   (on resume, before anything reads the mark); reclaims and `unlock` put back either grant's.
   Tests: test_node_ops.py (lost cordon response, a put-back racing the cordon, a stalled
   reclaimer), test_lock_safety.py (duplicate daemon; a take-over cut between its two writes,
   finished after a restart and put back by a reclaimer), test_named_scenarios.py (`unlock-race`).

C. Time, for what cannot be conditioned on the Lease. Kubernetes has no write conditioned on
   another object, so an eviction cannot carry the grant. The holder keeps `valid_until` = the
   send time of its last successful record write + TTL - margin, on its own monotonic clock.
   Observers judge a record stale only when it has not changed for the TTL on their clocks
   (never comparing another machine's timestamps), so before `valid_until` no observer can
   have reclaimed the slot. Each eviction checks `fence()` at the last moment before it is sent
   (`Kube.evict_pod(fence=...)`), and the drain runs in one task group with the renewer and a
   guard that follows the Lease, so losing the slot, a halt, a pause or passing the deadline
   cancels the drain at once. A process frozen between the fence and the send is the one gap
   left (microseconds wide); the margin covers the request's own flight.
   Test: test_lock_safety.py::test_a_frozen_holder_stops_evicting_once_its_deadline_passed.

Rules built on them:
1. One gate on every escalation (the cordon, each drain start, the `rebooting` write, a resumed
   pass, a reboot retry): halted, paused, the Lease being deleted, or outside the maintenance
   window means: disrupt nothing more, put the node back and release (or, once the node was
   rebooted, finish and hold the slot). The `rebooting` CAS itself refuses while halted or paused.
2. Confirmation after marking: a fresh (quorum) read must show our grant in the very Lease it was
   written to (its uid). A Lease re-created before our mark cannot list us; one re-created after
   it lists us under another uid: either way we back out. So a holder proceeds only if its Lease
   still existed after its mark, and any later re-creation copies it in (rule 4).
3. A failed reboot request is counted in the record (`attempts`) and retried with back-off up to
   a bound, then halts; a halt keeps the slot and waits for `rebootd resume`.
4. The Lease carries a finalizer: deleting it only sets `deletionTimestamp`; nobody takes a slot
   from a Lease being deleted, and the finalizer is removed only once no node holds a slot and
   the rollout is neither paused nor halted. If it is removed by force anyway, whoever re-creates
   the Lease copies every marked node into it as a holder and the halts mirrored on Nodes back
   into it. Marks beyond the limits need no halt: by rule 2 only the holders that confirmed in
   their own Lease go on, and any Lease that existed after such a confirmation already held it.
5. Staleness is judged on a fingerprint that includes the Lease uid and the grant: a record
   copied into a re-created Lease gets a whole TTL again. A stale holder's slot is freed only
   when its node is up: a Ready Node is not proof (Ready outlives a dead machine by the node
   monitor's grace), so the reclaimer must also see the kubelet's heartbeat Lease move on its
   own clock (`heartbeat.py`); one that stood still for its lease duration halts the rollout.
   Test: test_named_scenarios.py (`stale-ready`), test_invariants_can_fail.py.
6. Release removes only our own grant's record (CAS, retried on conflict); the release delay is
   waited by the holder itself, so no clock is compared across machines.
7. Waiters watch the Lease and act on changes at once; only the waiters that the queue order
   serves attempt a write, so a hand-off costs a constant number of writes however many wait.
   Holders follow it too while they hold a slot: each CAS starts from the newest version seen.
   Each daemon's watch selects the Lease by its own wake label (`lockstate.wake_label`), which
   every write puts on the holders and the head only: a write is sent to O(concurrency)
   watchers, not to every waiting node, and the write that names a node in the head wakes it
   (ADDED). A node outside the head hears nothing; it reads the Lease now and then (`_look`:
   every `outside_look_interval`, about nodes / 25 seconds, 20 s to 2 minutes), so the queue
   still moves when the head cannot (empty after failed refills, or every head node dead:
   judged stalled on two looks with no slot taken or given back in between, `Observer`
   epochs), and before any write it decides on a fresh read, never on an old look.
8. The queue (lock format 3) is not part of the safety argument, only of the order: each waiting
   node keeps its place on its own Node (`rebootd.io/queued`: when it first needed the reboot),
   and the Lease names only the head (at most HEAD_MAX nodes), which the holder that takes a slot
   refills from a list of the Nodes. The head decides who may *try* to take a slot; the slot is
   still taken only by the Lease CAS of rule A, against the limits on the version it replaces.
   So a stale, missing or wrong head can make the order unfair or a hand-off slower (nodes
   outside the head try when the head leaves a slot free), never seat a holder beyond the
   limits. The Lease stays O(concurrency) in size; each write of it reaches O(waiters) watchers.

Step numbers in log events follow client-go's leaderelection: acquire = 1 read, 2 decide,
3 write; renew = 1 read, 2 check we still hold, 3 write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rebootd.clock import Clock
from rebootd.kube import Conflict, Kube, NotFound, ObjectFollower, format_microtime
from rebootd.lockstate import (
    HEAD_MAX,
    JOIN,
    PATIENT_ACTIONS,
    RECLAIMING,
    STATE_ANNOTATION,
    TAKE,
    TAKE_OUTSIDE,
    WAIT,
    WAKE_LABEL_PREFIX,
    Holder,
    Limits,
    LockState,
    Observer,
    Verdict,
    Waiter,
    plan_acquire,
    resolve_share,
    wake_label,
    with_head,
)
from rebootd.logs import get_logger
from rebootd.marks import (
    CORDON_ANNOTATION,
    HALT_ANNOTATION,
    NODE_MARK_ANNOTATION,
    Mark,
    cordoned_by,
    encode_halt,
    halt_mirror,
    mark_of,
)
from rebootd.node import guarded_patch, set_annotations

LOCK_FINALIZER = "rebootd.io/lock"
MAX_CAS_ATTEMPTS = 20
# Nodes outside the head read the Lease about this often together (rule 7), each at most every
# OUTSIDE_LOOK_MAX seconds.
OUTSIDE_LOOKS_PER_SECOND = 25.0
OUTSIDE_LOOK_MAX = 120.0
WATCH_RESYNC_SECONDS = 300

__all__ = [
    "LOCK_FINALIZER",
    "NODE_MARK_ANNOTATION",
    "Gated",
    "LeaseLock",
    "LockConfig",
    "LostSlot",
    "Mark",
    "SlotExpired",
    "mark_of",
    "put_back_node",
    "state_of",
]


class LostSlot(Exception):
    """Our grant's record is gone (reclaimed, unlocked, Lease re-created without it, or taken over)."""


class SlotExpired(LostSlot):
    """Our last record write is older than the TTL allows: another node may hold the slot now."""


class Gated(Exception):
    """An escalation was refused by the gate (halted, paused, Lease deleting, outside the window)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Mutation(Protocol):
    def __call__(self, state: LockState) -> LockState | None:
        """The new state, or None when nothing should be written."""
        ...


@dataclass(frozen=True)
class LockConfig:
    namespace: str
    name: str
    node: str
    zone: str
    limits: Limits
    ttl: float
    renew_interval: float
    boot_allowance: float
    grace: float = 2.0
    pod: str = ""  # this daemon's Pod uid ("" = a random id for this process)
    # The limits as configured when either is a share of the nodes ("10%"): `limits` then holds
    # them resolved, again at every `resolve_limits()`; the zone's nodes carry `zone_label`.
    shares: tuple[int | str, int | str] | None = None
    zone_label: str = "topology.kubernetes.io/zone"

    @property
    def margin(self) -> float:
        """How long before the TTL a holder stops trusting its slot (covers a request's flight)."""
        return max(self.ttl / 5.0, min(self.renew_interval, self.ttl / 3.0) / 2.0)


def gate_of(state: LockState, *, deleting: bool = False) -> Gated | None:
    """The lock's part of the escalation gate: halted, paused, or the Lease being deleted."""
    if state.halted:
        return Gated("halted", f"rollout halted at {state.halted.get('node')}: {state.halted.get('reason')}")
    if state.paused:
        return Gated("paused", f"paused by {state.paused.get('by')}: {state.paused.get('reason')}")
    if deleting:
        return Gated("lock_deleting", "the lock Lease is being deleted; no new reboots until it is gone")
    return None


class LeaseLock:
    """This node's view of the Lease, and every write it makes to it."""

    def __init__(self, *, kube: Kube, config: LockConfig, clock: Clock) -> None:
        self.kube = kube
        if not config.pod:
            config = replace(config, pod=f"process-{secrets.token_hex(6)}")
        self.config = config
        self.clock = clock
        self.observer = Observer(ttl=config.ttl, grace=config.grace, boot_allowance=config.boot_allowance)
        self._lease: dict[str, Any] | None = None
        self._parsed: tuple[tuple[Any, Any, int], LockState] | None = None
        self._followers: list[ObjectFollower] = []  # watches of the Lease open now (innermost last)
        # The grant this daemon holds ("" = none), and when it last wrote its record.
        self.grant = ""
        self.record_written_at = float("-inf")
        self.valid_until = float("-inf")
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._nodes: int | None = None  # the cluster's node count, once read (`_spread`)
        # Outside the head (rule 7): when the Lease is read next, and whether our last look at it
        # came from a watch that sees every version (our wake label was on it).
        self._next_look = float("-inf")
        self._observed_awake = False
        self._log = get_logger(node=config.node, lock=f"{config.namespace}/{config.name}")

    # --- reading ----------------------------------------------------------------------------
    @property
    def lease(self) -> dict[str, Any] | None:
        return self._lease

    @property
    def uid(self) -> str:
        return str(((self._lease or {}).get("metadata") or {}).get("uid") or "")

    @property
    def deleting(self) -> bool:
        """Is the Lease being deleted (its deletionTimestamp set, our finalizer holding it)?"""
        return bool(((self._lease or {}).get("metadata") or {}).get("deletionTimestamp"))

    @property
    def state(self) -> LockState:
        """The parsed state of the Lease as last seen (parsed once per uid and resourceVersion)."""
        meta = (self._lease or {}).get("metadata") or {}
        key = (meta.get("uid"), meta.get("resourceVersion"), id(self._lease))
        if self._parsed is None or self._parsed[0] != key:
            self._parsed = (key, state_of(self._lease))
        return self._parsed[1]

    @property
    def mine(self) -> Holder | None:
        """Our grant's record in the Lease as last seen (None when we hold no slot)."""
        holder = self.state.holders.get(self.config.node)
        return holder if holder is not None and holder.owned_by(self.grant) else None

    def gate(self) -> Gated | None:
        return gate_of(self.state, deleting=self.deleting)

    def fence(self) -> None:
        """Raise SlotExpired unless our last record write is recent enough (safety mechanism C)."""
        if self.clock.monotonic() >= self.valid_until:
            raise SlotExpired(
                f"{self.config.node}: no record write for longer than the lock TTL allows; "
                "the slot may be another node's now"
            )

    @property
    def awake(self) -> bool:
        """Does the Lease as last seen carry our wake label (a holder or in the head), so that
        our watch is sent its every write (rule 7)?"""
        labels = ((self._lease or {}).get("metadata") or {}).get("labels") or {}
        return wake_label(self.config.node) in labels

    def adopt(self, lease: dict[str, Any] | None) -> LockState:
        """Take a Lease seen on the watch as the latest; returns its state and updates staleness.
        An observer that did not see every version since its last look (outside the head) judges
        stalled waiters by epochs: see `Observer.observe`."""
        if lease is not None and self._is_newer(lease):
            self._lease = lease
        state = self.state
        epoch: object = None
        if not self._observed_awake:
            spec = (self._lease or {}).get("spec") or {}
            epoch = (self.uid, spec.get("leaseTransitions"), spec.get("holderIdentity"))
        self.observer.observe(
            state, now=self.clock.monotonic(), limits=self.config.limits, lease_uid=self.uid, epoch=epoch
        )
        self._observed_awake = self.awake
        return state

    def _is_newer(self, lease: dict[str, Any]) -> bool:
        if self._lease is None:
            return True
        old, new = self._lease["metadata"], lease["metadata"]
        if old.get("uid") != new.get("uid"):
            return True
        return int(new.get("resourceVersion", "0")) >= int(old.get("resourceVersion", "0"))

    def _catch_up(self) -> None:
        """Take the newest version an open watch has delivered (a write from a stale copy is a 409)."""
        if self._followers:
            latest = self._followers[-1].peek()
            if latest is None or self._lease is None:
                return
            old, new = self._lease["metadata"], latest["metadata"]
            # Same object only: after a re-creation the watch may still hold the deleted one.
            if old.get("uid") == new.get("uid") and int(new.get("resourceVersion", "0")) > int(
                old.get("resourceVersion", "0")
            ):
                self._lease = latest

    async def refresh(self) -> LockState:
        """Step 1: read the Lease from the server (creating it when missing)."""
        try:
            lease = await self.kube.get_lease(namespace=self.config.namespace, name=self.config.name)
        except NotFound:
            lease = await self._create()
        self._lease = lease
        return self.adopt(None)

    async def _create(self) -> dict[str, Any]:
        """Create the Lease, copying in every node that carries a holder mark and every halt
        mirrored on a Node (rule 4)."""
        state = LockState()
        for node in await self.kube.list_nodes():
            mark = mark_of(node)
            if mark is not None:
                state = state.with_holder(replace(mark.holder, evidence={}))
            mirrored = halt_mirror(node)
            if mirrored is not None and not state.halted:
                state = replace(state, halted=mirrored)
        if not _within_limits(state, self.config.limits):
            # Only a holder that confirmed in its own Lease disrupts its node, and a Lease that
            # existed after a holder's mark copied it onward: so of the marked nodes beyond the
            # limits, those not yet confirmed back out at their confirmation (rule 2), and a dead
            # one is reclaimed. Nothing to halt for; say what happened.
            self._log.warning(
                "rebootd.lock.rebuilt_over_limit",
                holders=state.holder_identity(),
                detail="holders whose grant came from an earlier Lease back out at their confirmation",
            )
        body = self._lease_body(state, base=None)
        try:
            created = await self.kube.create_lease(namespace=self.config.namespace, body=body)
        except Conflict:  # AlreadyExists: somebody else created it first
            return await self.kube.get_lease(namespace=self.config.namespace, name=self.config.name)
        self._log.info("rebootd.lock.created", holders=state.holder_identity(), halted=bool(state.halted))
        return created

    def _lease_body(self, state: LockState, *, base: dict[str, Any] | None) -> dict[str, Any]:
        now = format_microtime(self.clock.now())
        if base is None:
            lease: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.config.name,
                    "namespace": self.config.namespace,
                    "finalizers": [LOCK_FINALIZER],
                },
                "spec": {"acquireTime": now, "leaseTransitions": 0},
            }
        else:
            lease = json.loads(json.dumps(base))
            lease.setdefault("apiVersion", "coordination.k8s.io/v1")
            lease.setdefault("kind", "Lease")
            meta = lease["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            # A Lease of an earlier rebootd gets the finalizer (never one being deleted: refused).
            if LOCK_FINALIZER not in finalizers and not meta.get("deletionTimestamp"):
                meta["finalizers"] = [*finalizers, LOCK_FINALIZER]
        meta = lease["metadata"]
        meta.setdefault("annotations", {})
        meta["annotations"] = {**(meta["annotations"] or {}), STATE_ANNOTATION: state.to_annotation()}
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(WAKE_LABEL_PREFIX)}
        labels.update(state.wake_labels())  # who is sent this write (rule 7)
        if labels or "labels" in meta:
            meta["labels"] = labels
        spec = lease.setdefault("spec", {})
        identity = state.holder_identity()
        if base is not None and spec.get("holderIdentity", "") != identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now
        spec["holderIdentity"] = identity
        spec["leaseDurationSeconds"] = max(1, round(self.config.ttl))
        spec["renewTime"] = now
        return lease

    # --- writing ----------------------------------------------------------------------------
    async def update(
        self, mutate: Mutation, *, event: str, patient: Callable[[], bool] = lambda: False
    ) -> LockState | None:
        """CAS loop: decide on the latest state, write, and on 409 re-read and decide again.

        `patient()` says whether the change just refused is off the rollout's critical path
        (joining the queue, leaving it, a renewal): such a writer steps back, jittered, after
        every conflict, so that when fifty nodes queue up at once the slot takers and the phase
        changes of the holders get through first. Returns the state written, or None when
        `mutate` decided not to write."""
        if self._lease is None:
            await self.refresh()
        for attempt in range(MAX_CAS_ATTEMPTS):
            self._catch_up()
            assert self._lease is not None
            current = self.state
            new_state = mutate(current)
            if new_state is None:
                return None
            if len(new_state.waiters) > HEAD_MAX:  # a migrated format-2 queue: keep its head
                head = sorted(new_state.waiters.values(), key=lambda w: (w.ticket, w.node))[:HEAD_MAX]
                new_state = replace(new_state, waiters={w.node: w for w in head})
            body = self._lease_body(new_state, base=self._lease)
            sent = self.clock.monotonic()
            try:
                written = await self.kube.replace_lease(
                    namespace=self.config.namespace, name=self.config.name, body=body
                )
            except Conflict:
                self._log.debug("rebootd.lock.conflict", step="3-write", change=event, attempt=attempt)
                if patient():  # spread over up to 2 s: 200 nodes queueing at once stop colliding
                    await asyncio.sleep(self._rng.uniform(0, min(2.0, 0.05 * 2**attempt)))
                elif attempt:  # a second conflict in a row: back off (jittered) before deciding again
                    await asyncio.sleep(self._rng.uniform(0, min(1.0, 0.02 * 2**attempt)))
                await self.refresh()
                continue
            except NotFound:  # deleted between read and write: recreate, then decide again
                await self.refresh()
                continue
            before = current.holders.get(self.config.node)
            self._lease = written
            self.adopt(None)
            after = new_state.holders.get(self.config.node)
            if after is not None and after != before and after.owned_by(self.grant):
                self.record_written_at = sent
                self.valid_until = sent + self.config.ttl - self.config.margin
            self._log.info("rebootd.lock.written", change=event, holders=new_state.holder_identity())
            return new_state
        raise Conflict(status=409, reason="Conflict", message=f"gave up after {MAX_CAS_ATTEMPTS} conflicts")

    async def try_acquire(
        self,
        *,
        phase: str,
        unavailable: Mapping[str, Sequence[str]] | None = None,
        ticket: int | None = None,
        join: bool = True,
    ) -> Verdict:
        """Steps 1-3 of acquire on the latest state: take a slot under a new grant, or join the
        queue's head, or say why not (`lockstate.plan_acquire`; `ticket`: our queue ticket,
        `join`: whether joining the head is still ours to do). A record of this node under another
        grant is never taken for ours. Joining the head, or taking a slot from outside it, is
        something many nodes may want at once: it waits a jitter first and decides again on the
        newest version seen, so that only the first few write."""
        cfg = self.config
        verdict = Verdict(allowed=False, reason="unknown")
        grant = secrets.token_hex(8)

        def plan(state: LockState) -> str:
            nonlocal verdict
            if cfg.node in state.holders:
                verdict = Verdict(allowed=False, reason="own_record")
                return WAIT
            if self.deleting:
                verdict = Verdict(allowed=False, reason="lock_deleting")
                return WAIT
            # Never skip ourselves: we are plainly not stalled, we are acting.
            stalled = self.observer.stalled_waiters(now=self.clock.monotonic()) - {cfg.node}
            verdict, action = plan_acquire(
                state,
                node=cfg.node,
                zone=cfg.zone,
                limits=cfg.limits,
                ticket=ticket,
                join=join,
                stalled=stalled,
                unavailable=unavailable,
            )
            return action

        outside = False  # taking a slot from outside the head: patient too

        def take(state: LockState) -> LockState | None:
            nonlocal verdict, outside
            action = plan(state)
            outside = action == TAKE_OUTSIDE
            if action in (TAKE, TAKE_OUTSIDE):
                holder = Holder(
                    node=cfg.node,
                    zone=cfg.zone,
                    phase=phase,
                    acquired=format_microtime(self.clock.now()),
                    grant=grant,
                    pod=cfg.pod,
                    lease=self.uid,
                )
                return state.without_waiters(verdict.skipped).with_holder(holder)
            if action == JOIN:
                me = Waiter(
                    node=cfg.node, zone=cfg.zone, ticket=state.next_ticket if ticket is None else ticket
                )
                verdict = Verdict(allowed=False, reason=verdict.reason or "queued")
                return with_head(state, limits=cfg.limits, candidates=[me])
            return None

        if self._lease is not None and plan(self.state) in PATIENT_ACTIONS:
            await asyncio.sleep(self._rng.uniform(0.0, await self._spread()))
            if self.awake:
                self._catch_up()
            else:  # our watch is not sent every write (rule 7): decide on a fresh read
                await self.refresh()
        self.grant = grant  # so that the write of our new record counts as ours
        try:
            await self.update(take, event="acquire", patient=lambda: not verdict.allowed or outside)
        finally:
            if self.mine is None:
                self.grant = ""
        if verdict.allowed and self.mine is None:  # written, then lost to a re-read? never assume
            return Verdict(allowed=False, reason="queued")
        return verdict

    async def finish_deletion(self) -> bool:
        """Let a deleted Lease go: remove our finalizer once nobody holds a slot and the rollout is
        neither paused nor halted (rule 4). True when removed (the next read re-creates it)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            lease = self._lease
            if lease is None or not self.deleting:
                return False
            state = self.state
            if state.holders or state.halted or state.paused:
                return False
            body = json.loads(json.dumps(lease))
            meta = body["metadata"]
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != LOCK_FINALIZER]
            try:
                await self.kube.replace_lease(
                    namespace=self.config.namespace, name=self.config.name, body=body
                )
            except Conflict:
                await self.refresh()
                continue
            except NotFound:
                return True
            self._log.info("rebootd.lock.deletion_finished")
            self._lease = None
            return True
        return False

    async def _spread(self) -> float:
        """The jitter before a write that many waiting nodes may want at once (joining the head,
        a slot taken from outside it): the grace, widened with the cluster (one more grace per 250
        nodes, at most a minute) so that the first write reaches the others' watches before most
        of them try (a write's fan-out grows with the watchers). The node count is read once."""
        if self._nodes is None:
            self._nodes = await self.kube.count_nodes()
        return min(60.0, self.config.grace * max(1.0, self._nodes / 250))

    async def resolve_limits(self) -> Limits:
        """Resolve a concurrency given as a share of the nodes against the current node count (a
        list of one Node: the server counts the rest), and a zone share against the nodes of our
        zone; rounded down, at least 1 (`lockstate.resolve_share`). Unchanged when both are numbers."""
        cfg = self.config
        if cfg.shares is None:
            return cfg.limits
        concurrency, zone_concurrency = cfg.shares
        limits = cfg.limits
        if isinstance(concurrency, str):
            nodes = self._nodes = await self.kube.count_nodes()
            limits = replace(limits, concurrency=resolve_share(concurrency, nodes=nodes, floor=1))
        if isinstance(zone_concurrency, str):
            selector = f"{cfg.zone_label}={cfg.zone}" if cfg.zone else None
            in_zone = await self.kube.count_nodes(label_selector=selector)
            limits = replace(limits, zone_concurrency=resolve_share(zone_concurrency, nodes=in_zone, floor=1))
        if limits != cfg.limits:
            self._log.info(
                "rebootd.lock.limits_resolved",
                concurrency=limits.concurrency,
                zone_concurrency=limits.zone_concurrency,
                configured=f"{concurrency}/{zone_concurrency}",
            )
            self.config = replace(cfg, limits=limits)
        return limits

    async def refill_head(self, candidates: Sequence[Waiter]) -> LockState | None:
        """Put the first nodes of the queue (`candidates`, read from the Nodes) into the Lease's
        head, as far as it has room (`lockstate.select_head`); a patient CAS (off the critical
        path). Returns the state written, or None when the head was already right."""
        limits = self.config.limits
        return await self.update(
            lambda s: None if (new := with_head(s, limits=limits, candidates=candidates)) is s else new,
            event="refill-head",
            patient=lambda: True,
        )

    async def leave_queue(self) -> None:
        node = self.config.node
        await self.update(
            lambda s: s.without_waiters([node]) if node in s.waiters else None,
            event="leave-queue",
            patient=lambda: True,
        )

    async def set_phase(self, *, phase: str, gated: bool = False, attempts: int | None = None) -> Holder:
        """Record our next phase; LostSlot when our grant no longer holds a slot. `gated`: refuse
        (raise Gated, nothing written) while halted, paused or the Lease is being deleted: the CAS
        that names an escalation checks the gate on the very version it replaces."""
        refused: Gated | None = None

        def change(holder: Holder, state: LockState) -> Holder | None:
            nonlocal refused
            refused = gate_of(state, deleting=self.deleting) if gated else None
            if refused is not None:
                return None
            return replace(
                holder,
                phase=phase,
                seq=holder.seq + 1,
                attempts=holder.attempts if attempts is None else attempts,
            )

        holder = await self._change_own(change, event=f"phase:{phase}")
        if refused is not None:
            raise refused
        return holder

    async def confirm(self) -> Holder:
        """Our record as the Lease holds it now, on a fresh (quorum) read (rule 2): LostSlot unless
        it is our grant, not being reclaimed, in the very Lease the grant was written to."""
        holder = (await self.refresh()).holders.get(self.config.node)
        if holder is None or not holder.owned_by(self.grant) or holder.phase == RECLAIMING:
            raise self._lost()
        if holder.lease and holder.lease != self.uid:
            raise LostSlot(
                f"{self.config.node}: the lock Lease was re-created since our grant was written "
                f"(grant in {holder.lease}, now {self.uid}); backing out"
            )
        return holder

    async def renew(self) -> None:
        """Bump our record's sequence so observers see we are alive; LostSlot if it is gone.

        Only the sequence changes: the phase is whatever the latest record says, so a renewal
        racing a phase change can never write an older phase back."""
        # Patient while the record is young; a record past a quarter of the TTL pushes through.
        await self._change_own(
            lambda holder, _state: replace(holder, seq=holder.seq + 1),
            event="renew",
            patient=lambda: self.clock.monotonic() - self.record_written_at < self.config.ttl / 4,
        )

    async def take_over(self, *, expect: Holder) -> Holder:
        """Make `expect` (this node's record under another grant: our own container before a
        restart, a daemon of lock format 1, or a dead duplicate) ours: a CAS that writes our grant
        and Pod uid only if the record is still exactly `expect`. LostSlot when it changed."""
        cfg = self.config
        grant = secrets.token_hex(8)

        def claim(state: LockState) -> LockState | None:
            current = state.holders.get(cfg.node)
            if current is None or current.grant != expect.grant or current.seq != expect.seq:
                return None
            return state.with_holder(
                replace(
                    current,
                    grant=grant,
                    pod=cfg.pod,
                    seq=current.seq + 1,
                    taken_from=current.grant,
                    evidence={},
                )
            )

        previous, self.grant = self.grant, grant
        written = await self.update(claim, event="take-over")
        if written is None:
            self.grant = previous
            raise self._lost()
        self._log.info("rebootd.lock.taken_over", previous_grant=expect.grant, previous_pod=expect.pod)
        return written.holders[cfg.node]

    def adopt_grant(self, holder: Holder) -> None:
        """Our own grant, read back after a restart of our container (same Pod uid)."""
        self.grant = holder.grant

    async def _change_own(
        self,
        change: Callable[[Holder, LockState], Holder | None],
        *,
        event: str,
        patient: Callable[[], bool] = lambda: False,
    ) -> Holder:
        """Write `change` of our own grant's record, applied to the record as each attempt reads
        it (None from `change`: write nothing); LostSlot when the record is gone, under another
        grant, or being reclaimed (then nothing is written)."""
        node = self.config.node
        lost = False

        def apply(state: LockState) -> LockState | None:
            nonlocal lost
            holder = state.holders.get(node)
            if holder is None or not holder.owned_by(self.grant) or holder.phase == RECLAIMING:
                lost = True
                return None
            lost = False
            changed = change(holder, state)
            return None if changed is None else state.with_holder(changed)

        await self.update(apply, event=event, patient=patient)
        if lost:
            raise self._lost()
        holder = self.state.holders.get(node)
        if holder is None or not holder.owned_by(self.grant):
            raise self._lost()
        return holder

    def _lost(self) -> LostSlot:
        return LostSlot(
            f"{self.config.node} no longer holds a slot in {self.config.namespace}/{self.config.name}"
        )

    async def release(self) -> None:
        """Remove our own grant's record (never anyone else's, nor a newer grant of this node)."""
        node, grant = self.config.node, self.grant
        if not grant:
            return

        def drop(state: LockState) -> LockState | None:
            holder = state.holders.get(node)
            return state.without_holder(node) if holder is not None and holder.owned_by(grant) else None

        await self.update(drop, event="release")
        self.grant = ""
        self.valid_until = float("-inf")
        if self.deleting:
            await self.finish_deletion()

    async def halt(self, *, reason: str, node: str) -> bool:
        """Record a halt and mirror it on the halted node; True when this call recorded it (False:
        the rollout was already halted)."""
        at = format_microtime(self.clock.now())
        halted = {"reason": reason, "node": node, "at": at}

        def stop_all(state: LockState) -> LockState | None:
            if state.halted:
                return None
            return replace(state, halted=halted)

        written = await self.update(stop_all, event="halt") is not None
        if written:
            self._log.error("rebootd.lock.halted", reason=reason, halted_node=node)
            with contextlib.suppress(NotFound):
                await set_annotations(
                    self.kube, node=node, annotations={HALT_ANNOTATION: encode_halt(halted)}
                )
        return written

    async def mark_reclaiming(self, *, node: str, expect: Holder) -> Holder | None:
        """Step 1 of reclaiming a stale holder: if its record is still exactly what we judged stale
        (same grant, same write), mark it `reclaiming` (the slot stays taken while its node is put
        back). The winner of this CAS, and only it, goes on; returns the marked record."""
        by = self.config.node

        def claim(state: LockState) -> LockState | None:
            current = state.holders.get(node)
            if not _same_write(current, expect):
                return None
            assert current is not None
            marked = replace(current, phase=RECLAIMING, seq=current.seq + 1, evidence={"reclaimedBy": by})
            return state.with_holder(marked)

        if await self.update(claim, event=f"reclaiming:{node}") is None:
            return None
        return self.state.holders.get(node)

    async def remove_holder(self, *, node: str, expect: Holder) -> bool:
        """Remove a holder's record if it is still exactly `expect` (same grant, same write)."""

        def reclaim(state: LockState) -> LockState | None:
            return state.without_holder(node) if _same_write(state.holders.get(node), expect) else None

        return await self.update(reclaim, event=f"reclaim:{node}") is not None

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[Callable[[float], Any]]:
        """Follow the Lease by watch; yields `changed(timeout)` which waits for the next change.
        Re-entrant: inside an open `following()` the same watch is used (no second list+watch)."""
        if self._followers:
            yield self._changed_of(self._followers[-1])
            return
        async with self.kube.follow(
            kind="leases",
            namespace=self.config.namespace,
            name=self.config.name,
            label_selector=wake_label(self.config.node),
            # client-go's reflector: a watch's timeout jittered between one and two resyncs, so the
            # watches of daemons started together do not all end and re-open in the same second
            resync_seconds=round(WATCH_RESYNC_SECONDS * self._rng.uniform(1.0, 2.0)),
        ) as f:
            if f.latest is not None:
                self.adopt(f.latest)
            interval = await self.outside_look_interval()  # the caller has just read the Lease
            self._next_look = self.clock.monotonic() + interval * self._rng.uniform(0.5, 1.5)
            self._followers.append(f)
            try:
                yield self._changed_of(f)
            finally:
                self._followers.remove(f)

    def _changed_of(self, f: ObjectFollower) -> Callable[[float], Any]:
        """`changed(seconds)`: wait for the next version of the Lease that concerns us (rule 7).
        Our watch sends the Lease while it carries our wake label; when it stops (DELETED: we left
        the head, our record went, or the Lease was deleted) one read tells which. Outside the
        head, the Lease is also read when a look is due (`_look`)."""

        async def changed(seconds: float) -> bool:
            wait = seconds
            if not self.awake:
                wait = min(seconds, max(0.0, self._next_look - self.clock.monotonic()))
            moved = await f.changed(timeout=wait)
            latest = f.latest
            if latest is not None:
                self.adopt(latest)
                return bool(moved)
            if moved or (not self.awake and self.clock.monotonic() >= self._next_look):
                before = self.state
                await self._look()
                return bool(moved) or self.state is not before
            self.adopt(None)
            return False

        return changed

    async def _look(self) -> None:
        """Read the Lease (no re-creation: a deleted Lease is seen as gone, as on a watch) and
        schedule the next look, jittered."""
        try:
            self._lease = await self.kube.get_lease(namespace=self.config.namespace, name=self.config.name)
        except NotFound:
            self._lease = None
        self.adopt(None)
        interval = await self.outside_look_interval()
        self._next_look = self.clock.monotonic() + interval * self._rng.uniform(0.5, 1.5)

    async def outside_look_interval(self) -> float:
        """How often a node outside the head reads the Lease: about nodes / 25 seconds (so all of
        them together read it about 25 times a second), at least 10 graces (20 s), at most two
        minutes; one grace while the Lease names us without our wake label (a Lease written by
        a rebootd older than the wake labels, during an upgrade)."""
        cfg = self.config
        state = self.state
        if cfg.node in state.holders or cfg.node in state.waiters:
            return cfg.grace
        if self._nodes is None:
            self._nodes = await self.kube.count_nodes()
        return max(10.0 * cfg.grace, min(OUTSIDE_LOOK_MAX, self._nodes / OUTSIDE_LOOKS_PER_SECOND))


def _same_write(current: Holder | None, expect: Holder) -> bool:
    return (
        current is not None
        and current.grant == expect.grant
        and current.seq == expect.seq
        and current.phase == expect.phase
    )


def _within_limits(state: LockState, limits: Limits) -> bool:
    if len(state.holders) > limits.concurrency:
        return False
    if limits.zone_concurrency <= 0:
        return True
    zones: dict[str, int] = {}
    for holder in state.holders.values():
        zones[holder.zone] = zones.get(holder.zone, 0) + 1
    return all(count <= limits.zone_concurrency for count in zones.values())


def state_of(lease: Mapping[str, Any] | None) -> LockState:
    if lease is None:
        return LockState()
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    return LockState.from_annotation(annotations.get(STATE_ANNOTATION))


async def put_back_node(
    kube: Kube, *, node: str, grant: str, keep_cordon: bool = False, taken_from: str = ""
) -> bool:
    """Undo what grant `grant` did to `node`: remove its mark and, if `cordoned-by` names the grant
    (or, for a mark of lock format 1, the old evidence says rebootd cordoned it), its cordon. A
    record taken over from another grant (`taken_from`) answers for that grant's mark and cordon
    too, until the taker carried them (its daemon may have died between the two writes). One
    write guarded by the resourceVersion read: a cordon racing it either lands first and is seen
    and undone, or is refused (it requires the mark). A mark of another grant is never touched.
    `keep_cordon`: leave the cordon (an operator's forced unlock). Returns whether a mark of the
    grant was there."""

    grants = {grant, taken_from} if taken_from else {grant}  # "" alone: a mark of lock format 1

    def plan(obj: dict[str, Any]) -> dict[str, Any] | None:
        mark = mark_of(obj)
        if mark is None or mark.grant not in grants:
            return None
        annotations: dict[str, Any] = {NODE_MARK_ANNOTATION: None}
        patch: dict[str, Any] = {"metadata": {"annotations": annotations}}
        if any(cordoned_by(obj, g) for g in grants) and not keep_cordon:
            patch["spec"] = {"unschedulable": None}
            annotations[CORDON_ANNOTATION] = None
        return patch

    written = await guarded_patch(kube, node=node, plan=plan, what="put-back")
    if written is not None:
        get_logger(node=node).info("rebootd.lock.node_put_back", uncordoned="spec" in written, grant=grant)
    return written is not None
