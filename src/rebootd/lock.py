"""The reboot lock: one coordination.k8s.io/v1 Lease used as a counting semaphore.

Safety model (read this before changing anything here):

1. Every change is a read-modify-write of the whole Lease with `metadata.resourceVersion` and
   `metadata.uid` (compare-and-swap). A 409 means someone else wrote first: re-read and decide
   again from the new state; decisions are pure functions in `lockstate.py`. No write is ever
   retried blindly.
2. Limits (concurrency, zone concurrency, pause, halt) are checked against the state read for the
   very write that takes the slot, so two nodes can never both pass the check on the same version.
3. A holder's record is stale only when it has not changed for `ttl` on the observer's own
   monotonic clock (never compare another machine's timestamps with the local clock). While a
   holder is rebooting its daemon is down, so observers also allow `boot_allowance`.
4. A holder that loses its record (reclaimed as stale, Lease recreated) learns it at its next
   CAS or fresh read: every escalation is preceded by a CAS that names the next phase (taking
   the slot names "draining", then "rebooting") and the cordon by a fresh read of our record
   (rule 5), so a holder without a record never escalates.
5. The Lease deleted by an admin: holders mark their Node (`rebootd.io/holder`, carrying the
   record and its evidence) before they disrupt it and, after marking, confirm on a fresh
   (quorum) read that the Lease lists them. Whoever recreates the Lease first copies every
   marked node into it as a holder. Either the creator saw the mark, or the holder's read finds
   a Lease without it and it backs out: the limit holds. (A read, not a write: 45 waiters
   joining the queue at once cannot make it fail.) A read does not stop a reclaim already
   under way, so the cordon itself requires the mark, and a reclaimer removes the mark and our
   cordon in one write; both are guarded by the node's resourceVersion (`put_back_node`): a
   cordon racing a reclaim is either seen and undone, or refused.
6. Release removes only our own record (CAS, retried on conflict); the release delay is waited by
   the holder itself before releasing, so no clock is compared across machines.
7. Waiters watch the Lease and act on changes at once; only the waiters that the queue order
   serves attempt a write, so a hand-off costs a constant number of writes however many wait.
   Holders follow it too while they hold a slot: each CAS starts from the newest version seen,
   so a write rarely meets a 409 (a conflict costs a re-read and a second write).

Step numbers in log events follow client-go's leaderelection: acquire = 1 read, 2 decide,
3 write; renew = 1 read, 2 check we still hold, 3 write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rebootd.clock import Clock
from rebootd.kube import Conflict, Kube, NotFound, ObjectFollower, format_microtime
from rebootd.lockstate import (
    RECLAIMING,
    STATE_ANNOTATION,
    Holder,
    Limits,
    LockState,
    Observer,
    Verdict,
    decide_acquire,
)
from rebootd.logs import get_logger
from rebootd.node import guarded_patch

NODE_MARK_ANNOTATION = "rebootd.io/holder"
MAX_CAS_ATTEMPTS = 20


class LostSlot(Exception):
    """Our holder record is gone (reclaimed, Lease recreated without it, or halted away)."""


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


class LeaseLock:
    """This node's view of the Lease, and every write it makes to it."""

    def __init__(self, *, kube: Kube, config: LockConfig, clock: Clock) -> None:
        self.kube = kube
        self.config = config
        self.clock = clock
        self.observer = Observer(ttl=config.ttl, grace=config.grace, boot_allowance=config.boot_allowance)
        self._lease: dict[str, Any] | None = None
        self._parsed: tuple[tuple[Any, Any, int], LockState] | None = None
        self._followers: list[ObjectFollower] = []  # watches of the Lease open now (innermost last)
        # When we last wrote a new version of our own record (observers see it as alive).
        self.record_written_at = float("-inf")
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._log = get_logger(node=config.node, lock=f"{config.namespace}/{config.name}")

    # --- reading ----------------------------------------------------------------------------
    @property
    def lease(self) -> dict[str, Any] | None:
        return self._lease

    @property
    def state(self) -> LockState:
        """The parsed state of the Lease as last seen (parsed once per uid and resourceVersion)."""
        meta = (self._lease or {}).get("metadata") or {}
        key = (meta.get("uid"), meta.get("resourceVersion"), id(self._lease))
        if self._parsed is None or self._parsed[0] != key:
            self._parsed = (key, state_of(self._lease))
        return self._parsed[1]

    def adopt(self, lease: dict[str, Any] | None) -> LockState:
        """Take a Lease seen on the watch as the latest; returns its state and updates staleness."""
        if lease is not None and self._is_newer(lease):
            self._lease = lease
        state = self.state
        self.observer.observe(state, now=self.clock.monotonic(), limits=self.config.limits)
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
        """Create the Lease, copying in every node that carries a holder mark (safety rule 5)."""
        state = LockState()
        for node in await self.kube.list_nodes():
            holder = mark_of(node)
            if holder is not None:
                state = state.with_holder(holder)
        body = self._lease_body(state, base=None)
        try:
            created = await self.kube.create_lease(namespace=self.config.namespace, body=body)
        except Conflict:  # AlreadyExists: somebody else created it first
            return await self.kube.get_lease(namespace=self.config.namespace, name=self.config.name)
        self._log.info("rebootd.lock.created", holders=state.holder_identity())
        return created

    def _lease_body(self, state: LockState, *, base: dict[str, Any] | None) -> dict[str, Any]:
        now = format_microtime(self.clock.now())
        if base is None:
            lease: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                "spec": {"acquireTime": now, "leaseTransitions": 0},
            }
        else:
            lease = json.loads(json.dumps(base))
            lease.setdefault("apiVersion", "coordination.k8s.io/v1")
            lease.setdefault("kind", "Lease")
        meta = lease["metadata"]
        meta.setdefault("annotations", {})
        meta["annotations"] = {**(meta["annotations"] or {}), STATE_ANNOTATION: state.to_annotation()}
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
            body = self._lease_body(new_state, base=self._lease)
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
            if new_state.holders.get(self.config.node) not in (None, before):
                self.record_written_at = self.clock.monotonic()
            self._log.info("rebootd.lock.written", change=event, holders=new_state.holder_identity())
            return new_state
        raise Conflict(status=409, reason="Conflict", message=f"gave up after {MAX_CAS_ATTEMPTS} conflicts")

    async def try_acquire(
        self,
        *,
        phase: str,
        evidence: Mapping[str, Any],
        unavailable: Mapping[str, Sequence[str]] | None = None,
    ) -> Verdict:
        """Steps 1-3 of acquire on the latest state: take a slot, or queue up and say why not."""
        cfg = self.config
        verdict = Verdict(allowed=False, reason="unknown")

        def take(state: LockState) -> LockState | None:
            nonlocal verdict
            # Never skip ourselves: we are plainly not stalled, we are acting.
            stalled = self.observer.stalled_waiters(now=self.clock.monotonic()) - {cfg.node}
            verdict = decide_acquire(
                state,
                node=cfg.node,
                zone=cfg.zone,
                limits=cfg.limits,
                stalled=stalled,
                unavailable=unavailable,
            )
            if verdict.allowed:
                if cfg.node in state.holders:
                    return None
                holder = Holder(
                    node=cfg.node,
                    zone=cfg.zone,
                    phase=phase,
                    acquired=format_microtime(self.clock.now()),
                    evidence=dict(evidence),
                )
                return state.without_waiters(verdict.skipped).with_holder(holder)
            if verdict.reason in {"halted", "paused", "budget", "zone_budget"} or cfg.node in state.waiters:
                return None
            return state.with_waiter(node=cfg.node, zone=cfg.zone)

        await self.update(take, event="acquire", patient=lambda: not verdict.allowed)
        return verdict

    async def leave_queue(self) -> None:
        node = self.config.node
        await self.update(
            lambda s: s.without_waiters([node]) if node in s.waiters else None,
            event="leave-queue",
            patient=lambda: True,
        )

    async def set_phase(self, *, phase: str, evidence: Mapping[str, Any] | None = None) -> Holder:
        """Record our next phase (and evidence); raises LostSlot when we no longer hold a slot."""
        return await self._change_own(
            lambda holder: replace(
                holder, phase=phase, seq=holder.seq + 1, evidence={**holder.evidence, **(evidence or {})}
            ),
            event=f"phase:{phase}",
        )

    async def confirm(self) -> Holder:
        """Our record as the Lease holds it now, on a fresh (quorum) read; LostSlot when it is gone
        or being reclaimed. Safety rule 5's confirmation after marking the node: a Lease recreated
        before the mark cannot list us (and we back out); one recreated after it copies us in."""
        holder = (await self.refresh()).holders.get(self.config.node)
        if holder is None or holder.phase == RECLAIMING:
            raise self._lost()
        return holder

    async def renew(self) -> None:
        """Bump our record's sequence so observers see we are alive; LostSlot if it is gone.

        Only the sequence changes: the phase and evidence are whatever the latest record says, so
        a renewal racing a phase change can never write an older phase back."""
        # Patient while the record is young; a record past a quarter of the TTL pushes through.
        await self._change_own(
            lambda holder: replace(holder, seq=holder.seq + 1),
            event="renew",
            patient=lambda: self.clock.monotonic() - self.record_written_at < self.config.ttl / 4,
        )

    async def _change_own(
        self,
        change: Callable[[Holder], Holder],
        *,
        event: str,
        patient: Callable[[], bool] = lambda: False,
    ) -> Holder:
        """Write `change` of our own record, applied to the record as each attempt reads it;
        LostSlot when the record is gone or being reclaimed (then nothing is written)."""
        node = self.config.node
        lost = False

        def apply(state: LockState) -> LockState | None:
            nonlocal lost
            holder = state.holders.get(node)
            if holder is None or holder.phase == RECLAIMING:
                lost = True
                return None
            lost = False
            return state.with_holder(change(holder))

        await self.update(apply, event=event, patient=patient)
        if lost:
            raise self._lost()
        return self.state.holders[node]

    def _lost(self) -> LostSlot:
        return LostSlot(
            f"{self.config.node} no longer holds a slot in {self.config.namespace}/{self.config.name}"
        )

    async def release(self) -> None:
        """Remove our own record (never anyone else's)."""
        node = self.config.node
        await self.update(lambda s: s.without_holder(node) if node in s.holders else None, event="release")

    async def halt(self, *, reason: str, node: str) -> bool:
        """Record a halt; True when this call recorded it (False: the rollout was already halted)."""
        at = format_microtime(self.clock.now())

        def stop_all(state: LockState) -> LockState | None:
            if state.halted:
                return None
            return replace(state, halted={"reason": reason, "node": node, "at": at})

        written = await self.update(stop_all, event="halt") is not None
        if written:
            self._log.error("rebootd.lock.halted", reason=reason, halted_node=node)
        return written

    async def mark_reclaiming(self, *, node: str, expect: Holder) -> Holder | None:
        """Step 1 of reclaiming a stale holder: if its record is still exactly what we judged stale,
        mark it `reclaiming` (the slot stays taken while its node is put back). The winner of this
        CAS, and only it, goes on; returns the marked record."""
        by = self.config.node

        def claim(state: LockState) -> LockState | None:
            current = state.holders.get(node)
            if current is None or current.seq != expect.seq or current.phase != expect.phase:
                return None
            marked = replace(
                current,
                phase=RECLAIMING,
                seq=current.seq + 1,
                evidence={**current.evidence, "reclaimedBy": by},
            )
            return state.with_holder(marked)

        if await self.update(claim, event=f"reclaiming:{node}") is None:
            return None
        return self.state.holders.get(node)

    async def remove_holder(self, *, node: str, expect: Holder) -> bool:
        """Reclaim a stale holder's slot if its record is still exactly what we judged stale."""

        def reclaim(state: LockState) -> LockState | None:
            current = state.holders.get(node)
            if current is None or current.seq != expect.seq or current.phase != expect.phase:
                return None
            return state.without_holder(node)

        return await self.update(reclaim, event=f"reclaim:{node}") is not None

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[Callable[[float], Any]]:
        """Follow the Lease by watch; yields `changed(timeout)` which waits for the next change.
        Re-entrant: inside an open `following()` the same watch is used (no second list+watch)."""
        if self._followers:
            yield self._changed_of(self._followers[-1])
            return
        async with self.kube.follow(
            kind="leases", namespace=self.config.namespace, name=self.config.name
        ) as f:
            if f.latest is not None:
                self.adopt(f.latest)
            self._followers.append(f)
            try:
                yield self._changed_of(f)
            finally:
                self._followers.remove(f)

    def _changed_of(self, f: ObjectFollower) -> Callable[[float], Any]:
        async def changed(seconds: float) -> bool:
            moved = await f.changed(timeout=seconds)
            if f.latest is not None:
                self.adopt(f.latest)
            else:
                self._lease = None
                self.adopt(None)
            return bool(moved)

        return changed


def state_of(lease: Mapping[str, Any] | None) -> LockState:
    if lease is None:
        return LockState()
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    return LockState.from_annotation(annotations.get(STATE_ANNOTATION))


def holder_mark(holder: Holder) -> str:
    return json.dumps({"node": holder.node, **holder.to_json()}, sort_keys=True, separators=(",", ":"))


def mark_of(node: Mapping[str, Any]) -> Holder | None:
    """The holder record a node's mark annotation carries, or None (no mark, or one that does not parse)."""
    metadata = node.get("metadata") or {}
    mark = (metadata.get("annotations") or {}).get(NODE_MARK_ANNOTATION)
    return holder_from_mark(str(metadata.get("name", "")), mark)


async def put_back_node(kube: Kube, *, node: str, evidence: Mapping[str, Any]) -> bool:
    """Remove a node's holder mark and, unless an admin had cordoned the node before rebootd did
    (`wasUnschedulable` in the mark or in `evidence`, the holder record's, which wins), its
    cordon: one write guarded by the resourceVersion read, so a holder's cordon racing it either
    lands first and is seen and undone, or is refused (its cordon requires the mark). Returns
    whether the node carried a mark."""

    def plan(obj: dict[str, Any]) -> dict[str, Any] | None:
        mark = mark_of(obj)
        if mark is None:
            return None
        patch: dict[str, Any] = {"metadata": {"annotations": {NODE_MARK_ANNOTATION: None}}}
        was_unschedulable = {**mark.evidence, **evidence}.get("wasUnschedulable", False)
        if (obj.get("spec") or {}).get("unschedulable") and not was_unschedulable:
            patch["spec"] = {"unschedulable": None}
        return patch

    written = await guarded_patch(kube, node=node, plan=plan, what="put-back")
    if written is not None:
        get_logger(node=node).info("rebootd.lock.node_put_back", uncordoned="spec" in written)
    return written is not None


def holder_from_mark(node: str, mark: str | None) -> Holder | None:
    if not mark:
        return None
    try:
        data = json.loads(mark)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return Holder(
        node=node,
        zone=str(data.get("zone", "")),
        phase=str(data.get("phase", "acquiring")),
        seq=int(data.get("seq", 0)),
        acquired=str(data.get("acquired", "")),
        evidence=dict(data.get("evidence") or {}),
    )


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop`; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    return stop.is_set()
