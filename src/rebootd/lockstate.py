"""The reboot lock's state and every decision made on it: pure, no I/O, no clock reads.

Rule: a decision is a function of (the Lease's state as last read, this node's facts, the limits,
what this observer measured on its own monotonic clock). The I/O half (`lock.py`) reads the
Lease, calls these functions, and writes the result with a compare-and-swap on resourceVersion;
on a conflict it re-reads and decides again. See the safety model at the top of `lock.py`.

State lives in the Lease annotation `rebootd.io/state` (JSON, `version` 3). Its size is bounded by
the limits, never by the cluster: holders (at most the concurrency) and the head of the queue (at
most `head_capacity(limits)` entries); evidence lives on the holder's own Node, and the rest of
the queue on each waiting Node (`rebootd.io/queued`, see `marks.py`).
  holders  {node: {zone, phase, seq, acquired, grant, pod, lease, attempts}}
             grant    random id of this slot grant: every write on the holder's behalf names it
             pod      uid of the daemon's Pod that took it (a duplicate daemon has another)
             lease    uid of the Lease the grant was written to (a grant is only confirmed in it)
             attempts reboot requests made under this grant
  waiters  {node: {zone, ticket}}   the queue's head: ready nodes served first, in ticket order;
                                    a ticket is when the node first needed its reboot (ms since
                                    the epoch), ties by name. A node not in the head counts as
                                    last in line: it may take a slot only when the head leaves
                                    one free (an empty head). The holder that takes a slot
                                    refills the head from the Nodes' queue records.
  nextTicket                        the ticket of "last in line" (above every ticket seen)
  paused   {reason, by, at} | null                           operator pause
  halted   {reason, node, at} | null                         failed reboot / broken workloads

Version 2 (every waiter in the Lease, tickets drawn from a counter) and version 1 (holders with
their evidence inline, no grants) are read and migrated: version 2's waiters keep their order
ahead of every version-3 ticket (small numbers), and the head is cut to its capacity at the next
write; version 1's holders become legacy records (grant "") that only the daemon of that node
adopts (see `Holder.legacy`). A newer version is refused, never guessed around.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rebootd.phases import ALLOWANCE_PHASES as ALLOWANCE_PHASES  # re-exported (older imports)
from rebootd.phases import BOOTING_PHASES as BOOTING_PHASES
from rebootd.phases import PRE_REBOOT_PHASES, Phase

STATE_ANNOTATION = "rebootd.io/state"
STATE_VERSION = 3
READABLE_VERSIONS = frozenset({1, 2, 3})
# The head of the queue kept in the Lease: one more than the concurrency (the next node is named
# while every slot is taken), at least 2, at most HEAD_MAX (a Lease of 4 KiB at concurrency 5 with
# cloud-style node names); with a zone limit, up to HEAD_MAX so that every zone has its next nodes.
HEAD_MAX = 16
# BOOTING_PHASES (phases.py): the node itself is down, its daemon cannot renew. ALLOWANCE_PHASES:
# the holder gets the boot allowance on top of the TTL before observers act on it (the node is
# down, or freshly booted with its daemon restarting: a reclaim cannot help a rebooted node, and a
# halt there needs more than one missed TTL to be justified).
# RECLAIMING: a stale holder's record while an observer puts its node back: still counted as a
# holder, so nobody else disrupts a node until the stale one is schedulable again; the old holder,
# if it comes back, finds its slot lost.
RECLAIMING = Phase.RECLAIMING
# The phase of the stand-in holders `eligible_waiters` counts for the waiters it already chose.
_WAITING = Phase.ACQUIRING
# Who is woken by a write of the Lease (lock format 3, "wake labels"): the Lease carries one label
# per holder and per node in the head, `rebootd.io/wake-<digest of the node name>`, rewritten with
# every write; each daemon watches the Lease with its own label as the selector, so a write is
# sent to the holders and the head only (O(concurrency) watchers, not O(waiters)), and a node
# entering the head is woken by that very write (the watch reports the object as ADDED).
WAKE_LABEL_PREFIX = "rebootd.io/wake-"


def wake_label(node: str) -> str:
    """The label key that wakes `node`: 80 bits of its name's SHA-256 (a label name is at most 63
    characters, a node name up to 253). A collision only wakes one node more often."""
    return WAKE_LABEL_PREFIX + hashlib.sha256(node.encode()).hexdigest()[:20]


class StateFormatError(ValueError):
    """The annotation is not a state this version understands (never guessed around)."""


@dataclass(frozen=True)
class Holder:
    node: str
    zone: str
    phase: str
    seq: int = 0
    acquired: str = ""
    grant: str = ""
    pod: str = ""
    lease: str = ""
    attempts: int = 0
    # The grant this record was taken over from (a dead duplicate, our container before a restart
    # of another Pod): until the node's mark is carried to `grant`, that grant's mark is ours too.
    taken_from: str = ""
    # Only a version-1 record carries evidence inline (migration); version 2 keeps it on the Node.
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def legacy(self) -> bool:
        """A record written by a daemon of lock format 1 (no grant)."""
        return not self.grant

    def owned_by(self, grant: str) -> bool:
        """Is this record the grant `grant` (never true for an empty grant)?"""
        return bool(grant) and self.grant == grant

    @property
    def grants(self) -> tuple[str, ...]:
        """The grants whose mark on the node this record answers for: its own, and the one it
        was taken over from (a take-over writes the Lease first, then carries the mark)."""
        return tuple(g for g in (self.grant, self.taken_from) if g)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "zone": self.zone,
            "phase": self.phase,
            "seq": self.seq,
            "acquired": self.acquired,
            "grant": self.grant,
            "pod": self.pod,
            "lease": self.lease,
            "attempts": self.attempts,
        }
        if self.taken_from:
            data["takenFrom"] = self.taken_from
        if self.evidence:
            data["evidence"] = dict(self.evidence)
        return data

    @classmethod
    def from_json(cls, node: str, data: Mapping[str, Any]) -> Holder:
        return cls(
            node=node,
            zone=str(data.get("zone", "")),
            phase=str(data.get("phase", Phase.ACQUIRING)),
            seq=int(data.get("seq", 0)),
            acquired=str(data.get("acquired", "")),
            grant=str(data.get("grant", "") or ""),
            pod=str(data.get("pod", "") or ""),
            lease=str(data.get("lease", "") or ""),
            attempts=int(data.get("attempts", 0) or 0),
            taken_from=str(data.get("takenFrom", "") or ""),
            evidence=dict(data.get("evidence") or {}),
        )


@dataclass(frozen=True)
class Waiter:
    node: str
    zone: str
    ticket: int

    def to_json(self) -> dict[str, Any]:
        return {"zone": self.zone, "ticket": self.ticket}


@dataclass(frozen=True)
class LockState:
    holders: Mapping[str, Holder] = field(default_factory=dict)
    waiters: Mapping[str, Waiter] = field(default_factory=dict)
    next_ticket: int = 1
    paused: Mapping[str, Any] | None = None
    halted: Mapping[str, Any] | None = None

    # --- (de)serialisation ------------------------------------------------------------------
    @classmethod
    def from_annotation(cls, raw: str | None) -> LockState:
        """Parse the annotation. A state is never changed in place (every transition builds a new
        one), so equal annotations share one parsed state: see `_parse`."""
        if not raw:
            return cls()
        return _parse(raw)

    @classmethod
    def _from_raw(cls, raw: str) -> LockState:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StateFormatError(f"{STATE_ANNOTATION} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
            raise StateFormatError(
                f"{STATE_ANNOTATION} has a lock format this rebootd does not know "
                f"(it reads versions {sorted(READABLE_VERSIONS)}; a newer rebootd wrote it?): "
                f"{str(data)[:80]}"
            )
        holders = {node: Holder.from_json(node, h) for node, h in (data.get("holders") or {}).items()}
        waiters = {
            node: Waiter(node=node, zone=str(w.get("zone", "")), ticket=int(w.get("ticket", 0)))
            for node, w in (data.get("waiters") or {}).items()
        }
        last = max((w.ticket for w in waiters.values()), default=0)
        return cls(
            holders=holders,
            waiters=waiters,
            next_ticket=max(int(data.get("nextTicket", 1)), last + 1),
            paused=data.get("paused"),
            halted=data.get("halted"),
        )

    def to_annotation(self) -> str:
        data = {
            "version": STATE_VERSION,
            "holders": {n: h.to_json() for n, h in sorted(self.holders.items())},
            "waiters": {n: w.to_json() for n, w in sorted(self.waiters.items())},
            "nextTicket": self.next_ticket,
            "paused": dict(self.paused) if self.paused else None,
            "halted": dict(self.halted) if self.halted else None,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def wake_labels(self) -> dict[str, str]:
        """The Lease's wake labels for this state: its holders and its head."""
        labels = {wake_label(node): "head" for node in self.waiters}
        labels.update({wake_label(node): "holder" for node in self.holders})
        return labels

    def holder_identity(self) -> str:
        """What `kubectl get lease` shows: the holders' node names, sorted, comma-separated."""
        return ",".join(sorted(self.holders))

    # --- transitions (each returns a new state) ----------------------------------------------
    def with_holder(self, holder: Holder) -> LockState:
        holders = {**self.holders, holder.node: holder}
        waiters = {n: w for n, w in self.waiters.items() if n != holder.node}
        return replace(self, holders=holders, waiters=waiters)

    def without_holder(self, node: str) -> LockState:
        return replace(self, holders={n: h for n, h in self.holders.items() if n != node})

    def with_waiter(self, *, node: str, zone: str, ticket: int | None = None) -> LockState:
        """`node` in the head with `ticket` (None: last in line, `next_ticket`)."""
        if node in self.waiters:
            return self
        drawn = self.next_ticket if ticket is None else ticket
        waiter = Waiter(node=node, zone=zone, ticket=drawn)
        return replace(
            self, waiters={**self.waiters, node: waiter}, next_ticket=max(self.next_ticket, drawn + 1)
        )

    def without_waiters(self, nodes: Iterable[str]) -> LockState:
        drop = set(nodes)
        return replace(self, waiters={n: w for n, w in self.waiters.items() if n not in drop})


def state_of(lease: Mapping[str, Any] | None) -> LockState:
    """The lock state a Lease object carries (an empty state for no Lease): the one reading of a
    Lease's holders; a node mark's record is read by the same `Holder.from_json` (marks.py)."""
    if lease is None:
        return LockState()
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    return LockState.from_annotation(annotations.get(STATE_ANNOTATION))


@functools.lru_cache(maxsize=8)
def _parse(raw: str) -> LockState:
    """A pure function of the annotation, memoised: daemons that share a process (the
    simulator's workers host a hundred) parse each Lease version once instead of once each; a
    daemon alone in its process still parses a version once (its lock caches per version). A
    format error is raised again on every call (lru_cache does not store exceptions)."""
    return LockState._from_raw(raw)


@dataclass(frozen=True)
class Limits:
    concurrency: int = 1
    zone_concurrency: int = 0  # 0 = no per-zone limit
    max_unavailable: int | None = None  # nodes down or cordoned for any reason, ours included
    max_unavailable_per_zone: int | None = None

    def within_budget(
        self, *, holders: Iterable[Holder], zone: str, unavailable: Mapping[str, Iterable[str]]
    ) -> str:
        """'' when one more disrupted node in `zone` keeps the unavailable-node budget, else the
        reason. `unavailable` names other nodes already down or cordoned, by zone; holders count
        once whether or not their node is unavailable yet."""
        by_zone: dict[str, set[str]] = {z: set(names) for z, names in unavailable.items()}
        for holder in holders:
            by_zone.setdefault(holder.zone, set()).add(holder.node)
        if self.max_unavailable is not None and sum(map(len, by_zone.values())) + 1 > self.max_unavailable:
            return "budget"
        if (
            self.max_unavailable_per_zone is not None
            and len(by_zone.get(zone, ())) + 1 > self.max_unavailable_per_zone
        ):
            return "zone_budget"
        return ""

    def fits(self, *, holders: Iterable[Holder], zone: str) -> bool:
        current = list(holders)
        if len(current) >= self.concurrency:
            return False
        if self.zone_concurrency <= 0:
            return True
        return sum(1 for h in current if h.zone == zone) < self.zone_concurrency


@dataclass(frozen=True)
class Verdict:
    """Whether this node may take a slot now, and if not, why (a stable, short reason)."""

    allowed: bool
    reason: str = ""
    skipped: tuple[str, ...] = ()  # stalled waiters ahead of us, removed in the same write


def serve_order(waiter: Waiter) -> tuple[int, str]:
    """The order waiters are served in: ticket, then node name (tickets tie only in a state
    written by hand or missing its `nextTicket`)."""
    return (waiter.ticket, waiter.node)


def eligible_waiters(state: LockState, *, limits: Limits, stalled: frozenset[str] = frozenset()) -> list[str]:
    """Waiters that get the free slots now: in `serve_order`, skipping those whose zone is full
    and those this observer saw stall. A full zone does not hold up waiters in other zones."""
    holders = list(state.holders.values())
    chosen: list[str] = []
    for waiter in sorted(state.waiters.values(), key=serve_order):
        if waiter.node in stalled:
            continue
        taken = [
            *holders,
            *(Holder(node=n, zone=state.waiters[n].zone, phase=Phase.ACQUIRING) for n in chosen),
        ]
        if len(taken) >= limits.concurrency:
            break
        if limits.fits(holders=taken, zone=waiter.zone):
            chosen.append(waiter.node)
    return chosen


def decide_acquire(
    state: LockState,
    *,
    node: str,
    zone: str,
    limits: Limits,
    stalled: frozenset[str] = frozenset(),
    unavailable: Mapping[str, Iterable[str]] | None = None,
) -> Verdict:
    """May `node` take a slot in this state? Halt and pause stop everyone; otherwise the node must
    fit the limits (and the unavailable-node budget, given the other unavailable nodes) and be
    among the waiters served first (a node not yet queued counts as the last in line)."""
    if node in state.holders:
        return Verdict(allowed=True, reason="already holding")
    if state.halted:
        return Verdict(allowed=False, reason="halted")
    if state.paused:
        return Verdict(allowed=False, reason="paused")
    if not limits.fits(holders=state.holders.values(), zone=zone):
        full = len(state.holders) >= limits.concurrency
        return Verdict(allowed=False, reason="concurrency" if full else "zone_concurrency")
    over = limits.within_budget(holders=state.holders.values(), zone=zone, unavailable=unavailable or {})
    if over:
        return Verdict(allowed=False, reason=over)
    queued = state if node in state.waiters else state.with_waiter(node=node, zone=zone)
    eligible = eligible_waiters(queued, limits=limits, stalled=stalled)
    if node in eligible:
        mine = serve_order(queued.waiters[node])
        ahead = {n for n, w in queued.waiters.items() if n in stalled and serve_order(w) < mine}
        return Verdict(allowed=True, skipped=tuple(sorted(ahead)))
    return Verdict(allowed=False, reason="queued")


def next_in_line(state: LockState, *, node: str, zone: str, limits: Limits) -> bool:
    """Would `node` be among the first served if every slot were free (queued at the end when not
    queued yet)? The nodes for which a check made right before taking a slot is worth keeping fresh."""
    queued = state if node in state.waiters else state.with_waiter(node=node, zone=zone)
    return node in eligible_waiters(replace(queued, holders={}), limits=limits)


def resolve_share(value: int | str, *, nodes: int, floor: int) -> int:
    """A limit given as a number of nodes, or as a share of `nodes` ("10%"): rounded down, as a
    Deployment's maxUnavailable is, but never below `floor` (1 for the concurrency: a share that
    rounds to 0 would stall the rollout for good, which no operator asking for "10%" expects; a
    Deployment likewise uses 1 when both its limits round to 0)."""
    if isinstance(value, int):
        return value
    percent = int(value.removesuffix("%"))
    return max(floor, nodes * percent // 100)


def head_capacity(limits: Limits) -> int:
    """How many waiters the Lease names at most (the head of the queue)."""
    if limits.zone_concurrency > 0:
        return HEAD_MAX
    return min(HEAD_MAX, max(2, limits.concurrency + 1))


def select_head(state: LockState, *, limits: Limits, candidates: Iterable[Waiter] = ()) -> dict[str, Waiter]:
    """The head of the queue: the current head and `candidates` (queue records read from the
    Nodes), holders excluded, in (ticket, name) order, at most `head_capacity(limits)` nodes and,
    with a zone limit, at most that many per zone (so a full zone leaves room for the others)."""
    merged = dict(state.waiters)
    for waiter in candidates:
        if waiter.node not in state.holders and waiter.node not in merged:
            merged[waiter.node] = waiter
    capacity = head_capacity(limits)
    per_zone: Counter[str] = Counter()
    head: dict[str, Waiter] = {}
    for waiter in sorted(merged.values(), key=lambda w: (w.ticket, w.node)):
        if len(head) >= capacity:
            break
        if limits.zone_concurrency > 0 and per_zone[waiter.zone] >= limits.zone_concurrency:
            continue
        per_zone[waiter.zone] += 1
        head[waiter.node] = waiter
    return head


def with_head(state: LockState, *, limits: Limits, candidates: Iterable[Waiter] = ()) -> LockState:
    """`state` with its head re-selected (`select_head`); the same object when nothing changes."""
    head = select_head(state, limits=limits, candidates=candidates)
    if head == dict(state.waiters):
        return state
    last = max((w.ticket for w in head.values()), default=0)
    return replace(state, waiters=head, next_ticket=max(state.next_ticket, last + 1))


# What a waiting node does with a state (`plan_acquire`).
TAKE = "take"  # take a slot (from the head)
JOIN = "join"  # write itself into the head (it belongs there)
TAKE_OUTSIDE = "take_outside"  # take a slot from outside the head (the head leaves one free)
WAIT = "wait"  # write nothing
PATIENT_ACTIONS = frozenset({JOIN, TAKE_OUTSIDE})  # spread over a jitter: many nodes may want it at once


def plan_acquire(
    state: LockState,
    *,
    node: str,
    zone: str,
    limits: Limits,
    ticket: int | None = None,
    join: bool = True,
    stalled: frozenset[str] = frozenset(),
    unavailable: Mapping[str, Iterable[str]] | None = None,
) -> tuple[Verdict, str]:
    """`decide_acquire`'s verdict and what to write. A node in the head takes its slot when
    allowed. A node outside it takes the slot when allowed all the same (the head leaves a slot
    free: empty, full zones, stalled nodes skipped); else it joins the head when there is room
    for it and `join` (once per entry into the queue: afterwards the refills of the holders that
    take slots name it). Joining never pushes a node out of the head, even with an earlier
    ticket: reordering is the refills' job, from the whole queue, so that thousands of nodes
    needing a reboot at once do not race each other to reorder the head (each such write is sent
    to the head, and most of them meet a 409)."""
    verdict = decide_acquire(
        state, node=node, zone=zone, limits=limits, stalled=stalled, unavailable=unavailable
    )
    if node in state.holders:
        return verdict, WAIT
    if node in state.waiters:
        return verdict, TAKE if verdict.allowed else WAIT
    if verdict.reason in {"halted", "paused", "budget", "zone_budget"}:
        return verdict, WAIT
    if verdict.allowed:
        return verdict, TAKE_OUTSIDE
    me = Waiter(node=node, zone=zone, ticket=state.next_ticket if ticket is None else ticket)
    head = select_head(state, limits=limits, candidates=[me])
    if join and node in head and set(state.waiters) <= set(head):
        return verdict, JOIN
    return verdict, WAIT


def zone_load(state: LockState) -> Counter[str]:
    return Counter(h.zone for h in state.holders.values())


@dataclass
class Observer:
    """What one daemon measured about other records, on its own monotonic clock.

    A record is stale when it has not changed for the TTL as seen here: we never compare another
    machine's timestamps with our clock. A waiter that stays eligible for `grace` seconds without
    taking its slot is stalled (dead or cut off) and may be skipped.
    """

    ttl: float
    grace: float
    boot_allowance: float
    _holder_seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    _eligible_since: dict[str, float] = field(default_factory=dict)
    _epoch: object = None

    def observe(
        self, state: LockState, *, now: float, limits: Limits, lease_uid: str = "", epoch: object = None
    ) -> None:
        """`epoch`: given by an observer that sees the Lease only now and then (a node outside the
        head, woken by no write: `lock.py` rule 7), a key that changes whenever a slot is taken or
        given back (the Lease's uid and leaseTransitions). Between two such looks with the same
        epoch no slot changed hands, so a waiter eligible at both was eligible throughout; a
        changed epoch starts the waiters' stall clocks again. None: every version is seen."""
        if epoch is not None and epoch != self._epoch:
            self._eligible_since.clear()
        self._epoch = epoch
        # Every write to a record bumps its seq (a new record starts again at 0 with a new grant),
        # so these tell one version of a record from another. The Lease's uid is part of it: a
        # record copied into a re-created Lease is new to us, and gets a whole TTL to renew.
        current = {
            n: f"{lease_uid}/{h.grant}/{h.phase}/{h.seq}/{h.acquired}" for n, h in state.holders.items()
        }
        for node, fingerprint in current.items():
            seen = self._holder_seen.get(node)
            if seen is None or seen[0] != fingerprint:
                self._holder_seen[node] = (fingerprint, now)
        for node in set(self._holder_seen) - set(current):
            del self._holder_seen[node]
        # While halted or paused nobody may act, so nobody can stall: the clock starts on resume.
        blocked = bool(state.halted or state.paused)
        eligible = set() if blocked else set(eligible_waiters(state, limits=limits))
        for node in eligible:
            self._eligible_since.setdefault(node, now)
        for node in set(self._eligible_since) - eligible:
            del self._eligible_since[node]

    def stale_holders(self, state: LockState, *, now: float) -> list[Holder]:
        """Holders unchanged for longer than the TTL (plus the boot allowance once the reboot was
        requested)."""
        stale = []
        for node, holder in state.holders.items():
            seen = self._holder_seen.get(node)
            if seen is None:
                continue
            limit = self.ttl + (self.boot_allowance if holder.phase in ALLOWANCE_PHASES else 0.0)
            if now - seen[1] > limit:
                stale.append(holder)
        return stale

    def silent_for(self, node: str, *, now: float) -> float:
        """How long `node`'s record has gone unchanged as seen here (0 when not seen)."""
        seen = self._holder_seen.get(node)
        return 0.0 if seen is None else max(0.0, now - seen[1])

    def stalled_waiters(self, *, now: float) -> frozenset[str]:
        return frozenset(n for n, since in self._eligible_since.items() if now - since > self.grace)


# --- judgements of the participant algorithm (lock.py) ----------------------------------------
# A stale holder in one of these, its node up, is reclaimed: its node was not rebooted yet, or an
# observer was already putting it back (`reclaiming`, the reclaimer died half-way).
RECLAIMABLE_PHASES = frozenset({*PRE_REBOOT_PHASES, Phase.RECLAIMING})

# What a daemon does with its node's record (`claim_own_record`).
OURS = "ours"  # our grant: go on
ADOPT = "adopt"  # our container's before a restart (same Pod uid): make the grant ours again
TAKE_OVER = "take_over"  # another daemon's, silent for a TTL or of lock format 1: take it over
STAND_BY = "stand_by"  # another live daemon's: leave it alone

# What an observer does with a stale holder (`judge_stale_holder`).
FREE = "free"  # its Node is gone: it disrupts nothing, free the slot (no halt)
RECLAIM = "reclaim"  # its node is up, not yet rebooted: put it back and free the slot, once its
# kubelet's heartbeat is seen moving (a Ready condition outlives a dead machine)
HALT = "halt"  # down, or past its reboot request: a failed reboot


def claim_own_record(record: Holder, *, grant: str, pod: str, silent_for: float, ttl: float) -> str:
    """This node's record in the Lease, as its daemon (grant `grant`, Pod uid `pod`) sees it:
    ours, our container's before a restart (same Pod uid, never a format-1 record), or another
    daemon's, taken over only once silent for a TTL on our clock (a dead duplicate, an old Pod of a
    DaemonSet update) or written by a daemon of lock format 1; a live one is left alone."""
    if record.owned_by(grant):
        return OURS
    if record.pod == pod and not record.legacy:
        return ADOPT
    if record.legacy or silent_for >= ttl:
        return TAKE_OVER
    return STAND_BY


def judge_stale_holder(holder: Holder, *, node_exists: bool, ready: bool) -> tuple[str, str]:
    """What to do with a holder that stopped renewing, from its Node: (FREE | RECLAIM | HALT, the
    halt's reason). RECLAIM is only a candidate: the kubelet's heartbeat decides (lock.py)."""
    if not node_exists:
        return FREE, ""
    if ready and holder.phase in RECLAIMABLE_PHASES:
        return RECLAIM, ""
    if not ready:
        return (
            HALT,
            f"node {holder.node} is not Ready and its rebootd stopped renewing (phase {holder.phase})",
        )
    return HALT, f"node {holder.node} is up but its rebootd stopped renewing (phase {holder.phase})"
