"""Pure lock decisions: limits, queue order, staleness on the observer's own clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd.lockstate import (
    Holder,
    Limits,
    LockState,
    Observer,
    StateFormatError,
    decide_acquire,
    eligible_waiters,
    next_in_line,
)


def holders(*specs: tuple[str, str]) -> LockState:
    state = LockState()
    for node, zone in specs:
        state = state.with_holder(Holder(node=node, zone=zone, phase="draining"))
    return state


def test_state_round_trips_through_the_annotation() -> None:
    state = holders(("a", "z1")).with_waiter(node="b", zone="z2").with_waiter(node="c", zone="z1")
    again = LockState.from_annotation(state.to_annotation())
    assert again == state
    assert again.holder_identity() == "a"
    assert [w.ticket for w in sorted(again.waiters.values(), key=lambda w: w.node)] == [1, 2]


@pytest.mark.parametrize("raw", ["{not json", '{"version": 99}', "[]"])
def test_unknown_annotation_formats_are_refused_not_guessed(raw: str) -> None:
    with pytest.raises(StateFormatError):
        LockState.from_annotation(raw)


@pytest.mark.parametrize(
    ("state", "node", "zone", "limits", "allowed", "reason"),
    [
        (LockState(), "a", "z1", Limits(1), True, ""),
        (holders(("a", "z1")), "b", "z1", Limits(1), False, "concurrency"),
        (holders(("a", "z1")), "b", "z2", Limits(2, 1), True, ""),
        (holders(("a", "z1")), "b", "z1", Limits(2, 1), False, "zone_concurrency"),
        (holders(("a", "z1"), ("b", "z2")), "c", "z3", Limits(2, 1), False, "concurrency"),
        (holders(("a", "z1")), "a", "z1", Limits(1), True, "already holding"),
        (LockState(halted={"reason": "x"}), "a", "z1", Limits(3), False, "halted"),
        (LockState(paused={"reason": "x"}), "a", "z1", Limits(3), False, "paused"),
        (LockState().with_waiter(node="b", zone="z1"), "a", "z1", Limits(1), False, "queued"),
        (LockState().with_waiter(node="b", zone="z1"), "a", "z2", Limits(2, 1), True, ""),
        (LockState().with_waiter(node="b", zone="z1"), "b", "z1", Limits(1), True, ""),
    ],
)
def test_acquire_decisions(
    state: LockState, node: str, zone: str, limits: Limits, allowed: bool, reason: str
) -> None:
    verdict = decide_acquire(state, node=node, zone=zone, limits=limits)
    assert verdict.allowed is allowed
    assert verdict.reason == reason


def test_waiters_are_served_in_ticket_order() -> None:
    state = LockState()
    for node in ["c", "a", "b"]:
        state = state.with_waiter(node=node, zone="z")
    assert eligible_waiters(state, limits=Limits(1)) == ["c"]
    assert eligible_waiters(state, limits=Limits(2)) == ["c", "a"]


def test_a_full_zone_does_not_hold_up_waiters_in_other_zones() -> None:
    state = holders(("h", "z1")).with_waiter(node="w1", zone="z1").with_waiter(node="w2", zone="z2")
    assert eligible_waiters(state, limits=Limits(2, 1)) == ["w2"]


def test_a_stalled_waiter_is_skipped_and_removed_by_the_next_in_line() -> None:
    state = LockState().with_waiter(node="dead", zone="z").with_waiter(node="alive", zone="z")
    assert not decide_acquire(state, node="alive", zone="z", limits=Limits(1)).allowed
    verdict = decide_acquire(state, node="alive", zone="z", limits=Limits(1), stalled=frozenset({"dead"}))
    assert verdict.allowed
    assert verdict.skipped == ("dead",)


def test_a_holder_is_stale_only_after_ttl_without_change_on_the_observer_clock() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=100)
    state = holders(("a", "z"))
    observer.observe(state, now=0.0, limits=Limits(1))
    assert observer.stale_holders(state, now=9.0) == []
    renewed = state.with_holder(Holder(node="a", zone="z", phase="draining", seq=1))
    observer.observe(renewed, now=9.0, limits=Limits(1))
    assert observer.stale_holders(renewed, now=18.0) == []
    assert [h.node for h in observer.stale_holders(renewed, now=19.5)] == ["a"]


def test_a_rebooting_holder_gets_the_boot_allowance_before_it_is_stale() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=100)
    state = LockState().with_holder(Holder(node="a", zone="z", phase="rebooting"))
    observer.observe(state, now=0.0, limits=Limits(1))
    assert observer.stale_holders(state, now=50.0) == []
    assert len(observer.stale_holders(state, now=111.0)) == 1


def test_waiters_eligible_longer_than_grace_are_stalled() -> None:
    observer = Observer(ttl=10, grace=2, boot_allowance=0)
    state = LockState().with_waiter(node="w", zone="z")
    observer.observe(state, now=0.0, limits=Limits(1))
    assert observer.stalled_waiters(now=1.0) == frozenset()
    observer.observe(state, now=2.5, limits=Limits(1))
    assert observer.stalled_waiters(now=2.5) == frozenset({"w"})


@given(
    ops=st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["z1", "z2", "z3"]), st.booleans()),
        max_size=60,
    ),
    concurrency=st.integers(min_value=1, max_value=4),
    zone_limit=st.integers(min_value=0, max_value=3),
)
def test_no_sequence_of_decisions_exceeds_the_limits(
    ops: list[tuple[str, str, bool]], concurrency: int, zone_limit: int
) -> None:
    """Property: applying only allowed acquisitions (and arbitrary releases) never breaks a limit."""
    limits = Limits(concurrency, min(zone_limit, concurrency))
    zones: dict[str, str] = {}
    state = LockState()
    for node, zone, release in ops:
        zone = zones.setdefault(node, zone)
        if release and node in state.holders:
            state = state.without_holder(node)
            continue
        verdict = decide_acquire(state, node=node, zone=zone, limits=limits)
        if verdict.allowed:
            state = state.without_waiters(verdict.skipped).with_holder(
                Holder(node=node, zone=zone, phase="x")
            )
        elif verdict.reason not in {"halted", "paused"}:
            state = state.with_waiter(node=node, zone=zone)
        assert len(state.holders) <= limits.concurrency
        if limits.zone_concurrency:
            per_zone: dict[str, int] = {}
            for holder in state.holders.values():
                per_zone[holder.zone] = per_zone.get(holder.zone, 0) + 1
            assert max(per_zone.values(), default=0) <= limits.zone_concurrency


def test_nobody_stalls_while_halted_so_waiters_are_not_skipped_after_resume() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    halted = LockState(halted={"reason": "x"}).with_waiter(node="w", zone="z")
    observer.observe(halted, now=0.0, limits=Limits(1))
    observer.observe(halted, now=50.0, limits=Limits(1))
    assert observer.stalled_waiters(now=50.0) == frozenset()
    resumed = LockState().with_waiter(node="w", zone="z")
    observer.observe(resumed, now=50.0, limits=Limits(1))
    assert observer.stalled_waiters(now=50.5) == frozenset()
    assert decide_acquire(resumed, node="w", zone="z", limits=Limits(1)).allowed


def test_a_reclaiming_record_still_takes_its_slot() -> None:
    state = LockState().with_holder(Holder(node="dead", zone="z", phase="reclaiming"))
    verdict = decide_acquire(state, node="next", zone="z", limits=Limits(1))
    assert not verdict.allowed
    assert verdict.reason == "concurrency"


def test_next_in_line_means_served_first_if_every_slot_were_free() -> None:
    state = holders(("h1", "z1"), ("h2", "z2"))
    for node, zone in [("a", "z1"), ("b", "z1"), ("c", "z2"), ("d", "z1")]:
        state = state.with_waiter(node=node, zone=zone)
    limits = Limits(2, 1)  # two at once, one per zone
    assert [n for n in "abcd" if next_in_line(state, node=n, zone=state.waiters[n].zone, limits=limits)] == [
        "a",
        "c",
    ]
    # a node not queued yet counts as the last in line
    assert not next_in_line(state, node="e", zone="z2", limits=limits)
    assert next_in_line(LockState(), node="e", zone="z2", limits=limits)


def test_a_record_copied_into_a_recreated_lease_gets_a_whole_ttl() -> None:
    """Failure 12: a record rebuilt from a mark equals the record as the observer first saw it, so
    an observer that missed every renewal judged a live holder stale at first sight of the new
    Lease. The Lease uid is part of what the observer tracks."""
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    state = LockState().with_holder(Holder(node="a", zone="z", phase="draining", grant="g"))
    observer.observe(state, now=0.0, limits=Limits(1), lease_uid="lease-1")
    observer.observe(state, now=9.5, limits=Limits(1), lease_uid="lease-2")  # re-created, same record
    assert observer.stale_holders(state, now=11.0) == []
    assert [h.node for h in observer.stale_holders(state, now=20.0)] == ["a"]


def test_a_new_grant_of_the_same_node_is_a_new_record() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    first = LockState().with_holder(Holder(node="a", zone="z", phase="draining", grant="g1"))
    observer.observe(first, now=0.0, limits=Limits(1))
    second = LockState().with_holder(Holder(node="a", zone="z", phase="draining", grant="g2"))
    observer.observe(second, now=9.0, limits=Limits(1))
    assert observer.stale_holders(second, now=15.0) == []


def test_a_state_of_lock_format_1_is_read_with_its_holders_as_legacy_records() -> None:
    raw = (
        '{"version":1,"holders":{"a":{"zone":"z","phase":"rebooting","seq":4,"acquired":"t",'
        '"evidence":{"bootID":"b"}}},"waiters":{"w":{"zone":"z","ticket":3}},"nextTicket":4,'
        '"paused":null,"halted":{"reason":"r","node":"a","at":"t"}}'
    )
    state = LockState.from_annotation(raw)
    holder = state.holders["a"]
    assert holder.legacy
    assert (holder.phase, holder.seq, dict(holder.evidence)) == ("rebooting", 4, {"bootID": "b"})
    assert state.halted == {"reason": "r", "node": "a", "at": "t"}
    again = LockState.from_annotation(state.to_annotation())
    assert '"version":3' in state.to_annotation()
    assert again.holders["a"].phase == "rebooting"


def test_only_the_grant_owns_a_record() -> None:
    assert Holder(node="a", zone="z", phase="draining", grant="g").owned_by("g")
    assert not Holder(node="a", zone="z", phase="draining", grant="g").owned_by("h")
    assert not Holder(node="a", zone="z", phase="draining").owned_by(""), "an empty grant owns nothing"


@pytest.mark.parametrize("phase", ["verifying", "uncordoning", "recovering"])
def test_a_holder_after_its_reboot_gets_the_boot_allowance_too(phase: str) -> None:
    """A rebooted node's daemon restarts (and may be partitioned a while): one missed TTL there is
    no cause for a halt, which is what observers do with a silent post-reboot holder."""
    observer = Observer(ttl=10, grace=1, boot_allowance=100)
    state = LockState().with_holder(Holder(node="a", zone="z", phase=phase, grant="g"))
    observer.observe(state, now=0.0, limits=Limits(1))
    assert observer.stale_holders(state, now=50.0) == []
    assert len(observer.stale_holders(state, now=111.0)) == 1
    draining = LockState().with_holder(Holder(node="b", zone="z", phase="draining", grant="g"))
    observer.observe(draining, now=0.0, limits=Limits(1))
    assert len(observer.stale_holders(draining, now=11.0)) == 1


def test_an_observer_looking_now_and_then_judges_a_stall_only_across_looks_with_no_hand_off() -> None:
    """A node outside the head sees the Lease only at its looks (lock.py rule 7): a waiter
    eligible at two looks was eligible throughout only if no slot changed hands in between
    (same epoch); otherwise its stall clock starts again."""
    state = LockState().with_waiter(node="next", zone="z", ticket=1)  # a free slot, "next" first
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    observer.observe(state, now=0.0, limits=Limits(1), epoch=("uid", 3))
    observer.observe(state, now=5.0, limits=Limits(1), epoch=("uid", 5))  # hand-offs in between
    assert observer.stalled_waiters(now=5.0) == frozenset()
    observer.observe(state, now=7.0, limits=Limits(1), epoch=("uid", 5))
    assert observer.stalled_waiters(now=7.0) == frozenset({"next"})
