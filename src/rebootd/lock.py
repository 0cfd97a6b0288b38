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

The split follows client-go's: `LeaseStore` reads the Lease and CAS-writes it (resourcelock;
what the operator commands use, holding no grant); `LeaseLock` is one node's participant on it
(LeaderElector: acquire, renew, release, the node's mark, cordon and put-back, the take-over of
its own node's record, the reclaim of dead holders); the judgements are pure, in `lockstate.py`.
cycle.py only sequences these steps.

Step numbers in log events follow client-go's leaderelection: acquire = 1 read, 2 decide,
3 write; renew = 1 read, 2 check we still hold, 3 write.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from rebootd.backoff import Backoff, scaled, spread
from rebootd.clock import Clock
from rebootd.heartbeat import (
    HEARTBEAT_NAMESPACE,
    RENEW_FRACTION,
    HeartbeatJudge,
    Liveness,
    lease_seconds,
    lease_version,
)
from rebootd.kube import Conflict, Kube, KubeError, NotFound, ObjectFollower, format_microtime
from rebootd.lockstate import (
    ADOPT,
    FREE,
    HEAD_MAX,
    JOIN,
    PATIENT_ACTIONS,
    RECLAIM,
    RECLAIMING,
    STATE_ANNOTATION,
    TAKE,
    TAKE_OUTSIDE,
    TAKE_OVER,
    WAIT,
    WAKE_LABEL_PREFIX,
    Holder,
    Limits,
    LockState,
    Observer,
    Verdict,
    Waiter,
    claim_own_record,
    judge_stale_holder,
    plan_acquire,
    resolve_share,
    state_of,
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
from rebootd.node import CordonResult, NodeChanged, cordon, guarded_patch, is_ready, set_annotations
from rebootd.phases import BOOTING_PHASES, Evidence, Phase
from rebootd.waits import sleep_or_stop

LOCK_FINALIZER = "rebootd.io/lock"
MAX_CAS_ATTEMPTS = 20
# the pause before retrying a CAS write that lost to another writer (full jitter): a patient
# writer (a release, a halt) waits longer than one contending for a slot
PATIENT_CONFLICT_BACKOFF = Backoff(base=0.05, cap=2.0, jitter="full")
CONFLICT_BACKOFF = Backoff(base=0.02, cap=1.0, jitter="full")
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
    "LeaseStore",
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


class LeaseStore:
    """The Lease as a store (client-go's resourcelock): read it (creating it when missing, rule
    4), and compare-and-swap a new state onto the version read (rule A). It knows no grant and
    takes no slot: the operator commands (admin.py) use it as it is; a participant (`LeaseLock`)
    is built on it. `ttl` is written as the Lease's leaseDurationSeconds."""

    def __init__(
        self, *, kube: Kube, namespace: str, name: str, clock: Clock, ttl: float, identity: str
    ) -> None:
        self.kube = kube
        self.identity = identity  # who writes: a node's name, or the operator's
        self.namespace = namespace
        self.name = name
        self.clock = clock
        self.ttl = ttl
        self._lease: dict[str, Any] | None = None
        self._parsed: tuple[tuple[Any, Any, int], LockState] | None = None
        self._followers: list[ObjectFollower] = []  # watches of the Lease open now (innermost last)
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._log = get_logger(lock=f"{namespace}/{name}")

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

    def adopt(self, lease: dict[str, Any] | None) -> LockState:
        """Take a Lease seen on a watch (or read) as the latest, if newer; returns its state."""
        if lease is not None and self._is_newer(lease):
            self._lease = lease
        return self.state

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
            lease = await self.kube.get_lease(namespace=self.namespace, name=self.name)
        except NotFound:
            lease = await self._create()
        self._lease = lease
        return self.adopt(None)

    async def read(self) -> LockState | None:
        """Read the Lease without creating it: its state, or None when there is none."""
        try:
            lease = await self.kube.get_lease(namespace=self.namespace, name=self.name)
        except NotFound:
            return None
        return self.adopt(lease)

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
        limits = self._limits()
        if limits is not None and not _within_limits(state, limits):
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
            created = await self.kube.create_lease(namespace=self.namespace, body=body)
        except Conflict:  # AlreadyExists: somebody else created it first
            return await self.kube.get_lease(namespace=self.namespace, name=self.name)
        self._log.info("rebootd.lock.created", holders=state.holder_identity(), halted=bool(state.halted))
        return created

    def _lease_body(self, state: LockState, *, base: dict[str, Any] | None) -> dict[str, Any]:
        now = format_microtime(self.clock.now())
        if base is None:
            lease: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
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
        spec["leaseDurationSeconds"] = max(1, round(self.ttl))
        spec["renewTime"] = now
        return lease

    def _limits(self) -> Limits | None:
        """The limits a Lease re-created from the Nodes' marks is checked against (a warning)."""
        return None

    def _written(self, *, before: LockState, after: LockState, sent: float) -> None:
        """Called after each successful write of `after` over `before`, sent at `sent`."""

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
                written = await self.kube.replace_lease(namespace=self.namespace, name=self.name, body=body)
            except Conflict:
                self._log.debug("rebootd.lock.conflict", step="3-write", change=event, attempt=attempt)
                if patient():  # spread over up to 2 s: 200 nodes queueing at once stop colliding
                    await sleep_or_stop(
                        seconds=PATIENT_CONFLICT_BACKOFF.delay(attempt=attempt + 1, rng=self._rng), stop=None
                    )
                elif attempt:  # a second conflict in a row: back off (jittered) before deciding again
                    await sleep_or_stop(
                        seconds=CONFLICT_BACKOFF.delay(attempt=attempt + 1, rng=self._rng), stop=None
                    )
                await self.refresh()
                continue
            except NotFound:  # deleted between read and write: recreate, then decide again
                await self.refresh()
                continue
            self._lease = written
            self.adopt(None)
            self._written(before=current, after=new_state, sent=sent)
            self._log.info("rebootd.lock.written", change=event, holders=new_state.holder_identity())
            return new_state
        raise Conflict(status=409, reason="Conflict", message=f"gave up after {MAX_CAS_ATTEMPTS} conflicts")

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
                await self.kube.replace_lease(namespace=self.namespace, name=self.name, body=body)
            except Conflict:
                await self.refresh()
                continue
            except NotFound:
                return True
            self._log.info("rebootd.lock.deletion_finished")
            self._lease = None
            return True
        return False

    async def halt(self, *, reason: str, node: str, expect: Holder | None = None) -> bool:
        """Record a halt and mirror it on the halted node; True when this call recorded it (False:
        the rollout was already halted, or `expect` was given and the node's record is no longer
        the one judged: a holder that renewed since, then rebooted its node, is not halted for
        the down node its own reboot made)."""
        at = format_microtime(self.clock.now())
        halted = {"reason": reason, "node": node, "at": at}

        def stop_all(state: LockState) -> LockState | None:
            if state.halted:
                return None
            if expect is not None and state.holders.get(node) != expect:
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
        by = self.identity

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

    async def reclaim(self, *, node: str, expect: Holder, keep_cordon: bool = False) -> bool | None:
        """The reclaim protocol for the grant of `expect` (`node`'s record as judged): mark the
        record `reclaiming` (unless it already is: a reclaimer died half-way), put the node back
        (its mark, and its cordon unless `keep_cordon`) in one guarded write, remove the record.
        None when the claim failed (the record changed: its daemon renewed, or another reclaims
        it); else whether this call removed the record."""
        claimed = (
            expect if expect.phase == RECLAIMING else await self.mark_reclaiming(node=node, expect=expect)
        )
        if claimed is None:
            return None
        # Read after the claim, written in one guarded step: a cordon racing us is undone, or
        # refused because it requires the mark we remove.
        await put_back_node(
            self.kube, node=node, grant=claimed.grant, keep_cordon=keep_cordon, taken_from=claimed.taken_from
        )
        return await self.remove_holder(node=node, expect=claimed)


class LeaseLock(LeaseStore):
    """This node's view of the Lease, and every write it makes to it: a participant of the lock
    (client-go's LeaderElector) on its store (`LeaseStore`)."""

    def __init__(self, *, kube: Kube, config: LockConfig, clock: Clock) -> None:
        super().__init__(
            kube=kube,
            namespace=config.namespace,
            name=config.name,
            clock=clock,
            ttl=config.ttl,
            identity=config.node,
        )
        if not config.pod:
            config = replace(config, pod=f"process-{secrets.token_hex(6)}")
        self.config = config
        self.observer = Observer(ttl=config.ttl, grace=config.grace, boot_allowance=config.boot_allowance)
        # The grant this daemon holds ("" = none), and when it last wrote its record.
        self.grant = ""
        self.record_written_at = float("-inf")
        self.valid_until = float("-inf")
        self._nodes: int | None = None  # the cluster's node count, once read (`_spread`)
        self._heartbeats = HeartbeatJudge()  # our looks at stale holders' kubelet heartbeats
        self.heartbeat_poll: float | None = None  # look again this soon: a liveness is unknown
        self.check_orphans = False  # a failed take-over: look for a mark no record answers for
        # Outside the head (rule 7): when the Lease is read next, and whether our last look at it
        # came from a watch that sees every version (our wake label was on it).
        self._next_look = float("-inf")
        self._observed_awake = False
        self._log = get_logger(node=config.node, lock=f"{config.namespace}/{config.name}")

    # --- reading ----------------------------------------------------------------------------
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
        state = super().adopt(lease)
        epoch: object = None
        if not self._observed_awake:
            spec = (self._lease or {}).get("spec") or {}
            epoch = (self.uid, spec.get("leaseTransitions"), spec.get("holderIdentity"))
        self.observer.observe(
            state, now=self.clock.monotonic(), limits=self.config.limits, lease_uid=self.uid, epoch=epoch
        )
        self._observed_awake = self.awake
        return state

    def _limits(self) -> Limits | None:
        return self.config.limits

    def _written(self, *, before: LockState, after: LockState, sent: float) -> None:
        """A write that changed our own grant's record renews our deadline (mechanism C)."""
        mine = after.holders.get(self.config.node)
        if mine is not None and mine != before.holders.get(self.config.node) and mine.owned_by(self.grant):
            self.record_written_at = sent
            self.valid_until = sent + self.config.ttl - self.config.margin

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

    # --- writing ----------------------------------------------------------------------------
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
            await sleep_or_stop(seconds=spread(seconds=await self._spread(), rng=self._rng), stop=None)
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

    async def unmark(
        self, *, annotations: Mapping[str, str | None], labels: Mapping[str, str | None]
    ) -> None:
        """The pass is over: our mark leaves our Node, in one write with the caller's own
        annotations and labels, before `release` (a node that keeps a mark is put back at start).
        Idempotent: a retry after a lost response writes the same."""
        await set_annotations(
            self.kube,
            node=self.config.node,
            annotations={NODE_MARK_ANNOTATION: None, **annotations},
            labels=labels,
        )

    @staticmethod
    def mark_ahead_of_record(mark: Mark, *, holder: Holder) -> bool:
        """Does our grant's mark say the reboot was requested while our record does not? (The
        Lease was recreated from the mark written before: the mark is the newer, and the node must
        never be drained and rebooted a second time.)"""
        return mark.grant == holder.grant and mark.phase in BOOTING_PHASES

    # --- the participant on its own node: records, marks, cordon, put-back (rules B, 2) -------
    async def finish_reclaim(self, record: Holder) -> None:
        """Our node's record was marked `reclaiming` while we were away (judged dead): the
        reclaimer puts our node back and frees the slot; if it died half-way, we finish its work
        on that grant's record. A grant of ours that it was is gone."""
        self._log.warning("rebootd.lock.slot_reclaimed", by=record.evidence.get("reclaimedBy"))
        node = self.config.node
        await put_back_node(self.kube, node=node, grant=record.grant, taken_from=record.taken_from)
        await self.remove_holder(node=node, expect=record)
        if record.owned_by(self.grant):
            self.grant = ""

    def claim_of(self, record: Holder) -> str:
        """What this daemon does with its node's record `record` (`lockstate.claim_own_record`)."""
        silent = self.observer.silent_for(record.node, now=self.clock.monotonic())
        return claim_own_record(
            record, grant=self.grant, pod=self.config.pod, silent_for=silent, ttl=self.config.ttl
        )

    async def claim(self, record: Holder, action: str) -> Holder | None:
        """Carry out `action` (OURS, ADOPT or TAKE_OVER) on our node's record: our record, or None
        when a take-over failed (what it held is given back, and the node is looked at again
        for a mark no record answers for: `check_orphans`)."""
        if action == ADOPT:
            self.adopt_grant(record)
        if action != TAKE_OVER:
            return record
        try:
            holder = await self.take_over(expect=record)
            if record.legacy:  # lock format 1 kept its evidence in the record: carry it now
                await self.carry_mark(previous=record.grant, holder=holder, evidence=record.evidence)
        except (LostSlot, NodeChanged) as exc:
            await self._take_over_failed(exc)
            return None
        return holder

    async def finish_take_over(self, holder: Holder) -> bool:
        """A record taken over from another grant (by us now, or by our container before a
        restart that died between the Lease write and the Node write): carry that grant's mark
        and cordon to ours before anything reads the mark. False when the node changed under us
        (the slot is given back)."""
        try:
            await self.carry_mark(previous=holder.taken_from, holder=holder, evidence={})
        except NodeChanged as exc:
            await self._take_over_failed(exc)
            return False
        return True

    async def _take_over_failed(self, exc: Exception) -> None:
        """Give back what a failed take-over holds; the node is looked at again for a mark no
        record answers for (put back on the next pass, when our record is gone)."""
        self._log.warning("rebootd.lock.take_over_failed", error=str(exc))
        self.check_orphans = True
        if self.mine is not None:
            await self.release()

    async def carry_mark(self, *, previous: str, holder: Holder, evidence: Mapping[str, Any]) -> None:
        """After a take-over: the node's mark and cordon ownership move from grant `previous` to
        ours (one guarded write, nothing when already carried: a retry after a lost response);
        a mark of a third grant means someone else acted: NodeChanged."""
        node = self.config.node

        def plan(obj: dict[str, Any]) -> dict[str, Any] | None:
            mark = mark_of(obj)
            if mark is None or mark.grant == holder.grant:
                return None
            if mark.grant != previous:
                raise NodeChanged(f"node {node}: mark of grant {mark.grant}, not {previous}")
            carried = Mark(
                holder=replace(holder, phase=mark.phase),
                evidence=cast(Evidence, {**evidence, **mark.evidence}),
            )
            annotations: dict[str, Any] = {NODE_MARK_ANNOTATION: carried.encode()}
            if cordoned_by(obj, previous):
                annotations[CORDON_ANNOTATION] = holder.grant
            return {"metadata": {"annotations": annotations}}

        await guarded_patch(self.kube, node=node, plan=plan, what="take-over")

    async def put_back_orphan(self, node: Mapping[str, Any]) -> bool:
        """We disrupted our node (`node`, as just read) but the Lease no longer lists it
        (reclaimed, unlocked, or the Lease re-created): put it back. True when it had a mark."""
        self.check_orphans = False
        mark = mark_of(node)
        if mark is None:
            return False
        self._log.warning("rebootd.lock.orphaned_mark", phase=mark.phase, grant=mark.grant)
        await put_back_node(self.kube, node=self.config.node, grant=mark.grant)
        return True

    async def put_back_earlier(self, node: Mapping[str, Any], *, holder: Holder) -> bool:
        """Before marking: a mark of an earlier grant of ours on our node (its daemon died before
        cleaning up) is put back. True when there was one (the caller reads the node again)."""
        mark = mark_of(node)
        if mark is None or mark.grant == holder.grant:
            return False
        await put_back_node(self.kube, node=self.config.node, grant=mark.grant)
        return True

    async def mark(
        self,
        *,
        holder: Holder,
        evidence: Evidence,
        annotations: Mapping[str, str | None] | None = None,
        labels: Mapping[str, str | None] | None = None,
    ) -> Mark:
        """Rule 2, first half: mark our node for `holder`'s grant, phase draining (the evidence
        lives in the mark; `annotations` and `labels` go in the same write). The second half,
        before anything is disrupted, is `confirm()`."""
        mark = Mark(holder=replace(holder, phase=Phase.DRAINING), evidence=evidence)
        await set_annotations(
            self.kube,
            node=self.config.node,
            annotations={**(annotations or {}), NODE_MARK_ANNOTATION: mark.encode()},
            labels=labels,
        )
        return mark

    async def write_mark(self, mark: Mark) -> None:
        """Rewrite our mark, only while the Node carries our grant's mark (NodeChanged otherwise):
        a mark removed by a reclaimer or an unlock is never brought back."""
        grant, node = mark.grant, self.config.node

        def plan(obj: dict[str, Any]) -> dict[str, Any] | None:
            current = mark_of(obj)
            if current is None or current.grant != grant:
                raise NodeChanged(f"node {node}: the mark of grant {grant} is gone")
            return {"metadata": {"annotations": {NODE_MARK_ANNOTATION: mark.encode()}}}

        await guarded_patch(self.kube, node=node, plan=plan, what="mark")

    async def cordon(self, *, holder: Holder) -> CordonResult:
        """Cordon our node for `holder`'s grant, only while the node carries that grant's mark: a
        reclaimer that judged us dead removes it in the same guarded step as its uncordon, so our
        cordon cannot land after it unseen."""
        return await cordon(self.kube, node=self.config.node, grant=holder.grant)

    async def back_out(self, *, why: str, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Disrupt nothing more: put our node back (the mark of our grant, or of the grant our
        record was taken over from, and the cordon if one of them made it), run `then` (what the
        node shows about it: kured's post-reboot labels), and free the slot."""
        grant = self.grant
        self._log.warning("rebootd.lock.back_out", reason=why[:300], grant=grant)
        if grant:
            mine = self.mine
            taken_from = mine.taken_from if mine is not None else ""
            await put_back_node(self.kube, node=self.config.node, grant=grant, taken_from=taken_from)
        if then is not None:
            await then()
        await self.release()

    # --- observers: dead holders (rule 5) -----------------------------------------------------
    async def reclaim_stale_holders(self) -> list[tuple[str, str]]:
        """Reclaim dead holders whose node is up and not yet rebooted; free the slot of a holder
        whose Node is gone; halt on failed reboots and on nodes that are down. Returns the halts
        this call recorded, (node, reason), for the caller to announce.

        Judged on a fresh read (a watch can lag), and reclaimed in two CAS steps scoped to the
        stale grant: mark the record `reclaiming` (the slot stays taken), put the node back, then
        remove the record. A holder that renews in between makes the first CAS a no-op; one that
        comes back later finds its slot lost and puts its own node back. A Ready Node is not
        enough to reclaim: Ready stays True for the node monitor's grace after a machine died,
        and freeing the slot of a dead node lets a second node go down. The kubelet's heartbeat
        Lease must be seen moving on our own clock (rebootd.heartbeat); one that stood still for
        its lease duration means the node is down: halt, as for a NotReady node. While a
        liveness is unknown, `heartbeat_poll` says how soon to look again."""
        self.heartbeat_poll = None
        if self.state.halted or not self.observer.stale_holders(self.state, now=self.clock.monotonic()):
            self._heartbeats.keep_only(())
            return []
        state = await self.refresh()
        stale = self.observer.stale_holders(state, now=self.clock.monotonic())
        self._heartbeats.keep_only(h.node for h in stale)
        halts: list[tuple[str, str]] = []
        for holder in stale:
            try:
                node: dict[str, Any] | None = await self.kube.get_node(name=holder.node)
            except NotFound:
                node = None
            except KubeError:
                continue  # cannot tell now: judge again on the next pass
            action, why = judge_stale_holder(
                holder, node_exists=node is not None, ready=node is not None and is_ready(node)
            )
            if action == FREE:
                if await self.remove_holder(node=holder.node, expect=holder):
                    self._log.warning(
                        "rebootd.lock.holder_node_gone", gone_node=holder.node, phase=holder.phase
                    )
                continue
            if action == RECLAIM:
                liveness, why = await self._kubelet_liveness(holder)
                if liveness == "unknown":
                    continue  # look again on the next pass
                if liveness == "alive":
                    await self._reclaim(holder)
                    continue
            if await self.halt(reason=why, node=holder.node, expect=holder):
                halts.append((holder.node, why))
        return halts

    async def _reclaim(self, holder: Holder) -> None:
        # None: it renewed, or another observer is reclaiming it.
        if await self.reclaim(node=holder.node, expect=holder):
            self._log.warning("rebootd.lock.reclaimed", stale_node=holder.node, phase=holder.phase)

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
            self.heartbeat_poll = min(poll, self.heartbeat_poll or poll)
        return liveness, why

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
            resync_seconds=round(scaled(seconds=WATCH_RESYNC_SECONDS, low=1.0, high=2.0, rng=self._rng)),
        ) as f:
            if f.latest is not None:
                self.adopt(f.latest)
            interval = await self.outside_look_interval()  # the caller has just read the Lease
            self._next_look = self.clock.monotonic() + scaled(
                seconds=interval, low=0.5, high=1.5, rng=self._rng
            )
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
        self._next_look = self.clock.monotonic() + scaled(seconds=interval, low=0.5, high=1.5, rng=self._rng)

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
