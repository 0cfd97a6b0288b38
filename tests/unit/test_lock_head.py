"""Lock format 3: the queue's head in the Lease is bounded, ordered by when each node first needed
its reboot (ties by name), refilled from the Nodes' queue records; what a waiting node writes
(`plan_acquire`: take, join the head, take from outside it, or nothing); a share of the nodes
resolved to a number; versions 2 and 1 migrate, a newer version is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd.lockstate import (
    HEAD_MAX,
    JOIN,
    TAKE,
    TAKE_OUTSIDE,
    WAIT,
    Holder,
    Limits,
    LockState,
    StateFormatError,
    Waiter,
    decide_acquire,
    head_capacity,
    plan_acquire,
    resolve_share,
    select_head,
    with_head,
)


def queue(*specs: tuple[str, str, int]) -> list[Waiter]:
    return [Waiter(node=n, zone=z, ticket=t) for n, z, t in specs]


def test_the_head_holds_one_more_than_the_concurrency_in_ticket_then_name_order() -> None:
    candidates = queue(("d", "z", 5), ("c", "z", 3), ("b", "z", 3), ("a", "z", 9))
    head = select_head(LockState(), limits=Limits(1), candidates=candidates)
    assert list(head) == ["b", "c"], "ticket order, ties by name, two for concurrency 1"
    assert head_capacity(Limits(5)) == 6
    assert head_capacity(Limits(500)) == HEAD_MAX
    assert head_capacity(Limits(1, 1)) == HEAD_MAX


def test_holders_never_reenter_the_head_and_an_earlier_need_displaces_a_later_one() -> None:
    state = LockState().with_holder(Holder(node="h", zone="z", phase="draining"))
    state = state.with_waiter(node="late", zone="z", ticket=100)
    refilled = with_head(state, limits=Limits(1), candidates=queue(("h", "z", 1), ("early", "z", 50)))
    assert list(refilled.waiters) == ["early", "late"]
    crowded = with_head(refilled, limits=Limits(1), candidates=queue(("earliest", "z", 10)))
    assert sorted(crowded.waiters) == ["earliest", "early"], "the head is cut to its capacity"
    assert with_head(crowded, limits=Limits(1)) is crowded, "nothing to change: the same state"


def test_a_zone_limit_keeps_room_in_the_head_for_every_zone() -> None:
    candidates = queue(*((f"a{i}", "a", i) for i in range(20)), ("b0", "b", 100))
    head = select_head(LockState(), limits=Limits(2, 1), candidates=candidates)
    assert sorted(head) == ["a0", "b0"]


def test_a_node_outside_the_head_waits_while_the_head_covers_the_free_slots() -> None:
    state = LockState().with_waiter(node="next", zone="z", ticket=5)
    assert decide_acquire(state, node="other", zone="z", limits=Limits(1)).reason == "queued"
    assert decide_acquire(state, node="next", zone="z", limits=Limits(1)).allowed
    assert decide_acquire(LockState(), node="other", zone="z", limits=Limits(1)).allowed, "empty head"


def test_the_lease_of_5000_waiting_nodes_stays_under_4_kib() -> None:
    name = "ip-10-{}-{}-{}.eu-west-1.compute.internal"
    candidates = [
        Waiter(
            node=name.format(i // 65536, i // 256 % 256, i % 256),
            zone=f"eu-west-1{'abc'[i % 3]}",
            ticket=1_765_000_000_000 + i,
        )
        for i in range(5000)
    ]
    state = LockState()
    for i in range(5):
        state = state.with_holder(
            Holder(
                node=candidates[i].node,
                zone="eu-west-1a",
                phase="draining",
                seq=12345,
                acquired="2026-12-06T13:00:00.000000Z",
                grant="0123456789abcdef",
                pod="01234567-89ab-cdef-0123-456789abcdef",
                lease="01234567-89ab-cdef-0123-456789abcdef",
            )
        )
    state = with_head(state, limits=Limits(5), candidates=candidates[5:])
    assert len(state.to_annotation()) <= 4096, len(state.to_annotation())


def test_format_2_waiters_keep_their_order_ahead_of_format_3_tickets() -> None:
    raw = json.dumps(
        {
            "version": 2,
            "holders": {},
            "waiters": {f"n{i}": {"zone": "z", "ticket": i} for i in range(1, 40)},
            "nextTicket": 40,
        }
    )
    state = LockState.from_annotation(raw)
    head = with_head(state, limits=Limits(1), candidates=queue(("new", "z", 1_765_000_000_000)))
    assert list(head.waiters) == ["n1", "n2"]
    assert '"version":3' in head.to_annotation()


def test_a_newer_lock_format_is_refused_naming_the_versions_read() -> None:
    with pytest.raises(StateFormatError, match=r"reads versions \[1, 2, 3\]"):
        LockState.from_annotation('{"version":4,"holders":{}}')


def test_a_zone_limit_of_two_names_at_most_two_nodes_of_each_zone_in_the_head() -> None:
    candidates = queue(
        *((f"a{i}", "a", i) for i in range(5)), ("b0", "b", 10), ("b1", "b", 11), ("b2", "b", 12)
    )
    head = select_head(LockState(), limits=Limits(4, 2), candidates=candidates)
    assert list(head) == ["a0", "a1", "b0", "b1"]


@given(
    tickets=st.lists(st.integers(1, 10**13), min_size=1, max_size=20, unique=True),
    first=st.integers(1, 10**13),
    concurrency=st.integers(1, 20),
)
def test_a_refilled_head_is_the_state_of_its_nodes_queued_one_by_one(
    tickets: list[int], first: int, concurrency: int
) -> None:
    """Refilling draws the next ticket as queueing does: one past the latest ticket in the head,
    never lower than before, so a node that comes later queues behind every node named."""
    start = LockState(next_ticket=first)
    candidates = [Waiter(node=f"n{i:02}", zone="z", ticket=t) for i, t in enumerate(tickets)]
    refilled = with_head(start, limits=Limits(concurrency), candidates=candidates)
    one_by_one = start
    for waiter in sorted(refilled.waiters.values(), key=lambda w: (w.ticket, w.node)):
        one_by_one = one_by_one.with_waiter(node=waiter.node, zone=waiter.zone, ticket=waiter.ticket)
    assert refilled == one_by_one
    assert refilled.next_ticket > max(w.ticket for w in refilled.waiters.values())


# --- what a waiting node writes (plan_acquire) ------------------------------------------------------


def head_of(*specs: tuple[str, int]) -> LockState:
    state = LockState()
    for node, ticket in specs:
        state = state.with_waiter(node=node, zone="z", ticket=ticket)
    return state


def test_a_holder_writes_nothing_to_acquire_again() -> None:
    state = LockState().with_holder(Holder(node="me", zone="z", phase="draining"))
    verdict, action = plan_acquire(state, node="me", zone="z", limits=Limits(2))
    assert (verdict.allowed, verdict.reason, action) == (True, "already holding", WAIT)


def test_a_node_in_the_head_takes_its_slot_when_allowed_and_else_writes_nothing() -> None:
    state = head_of(("first", 1), ("me", 2))
    verdict, action = plan_acquire(state, node="me", zone="z", limits=Limits(1))
    assert (verdict.reason, action) == ("queued", WAIT)
    verdict, action = plan_acquire(state, node="first", zone="z", limits=Limits(1))
    assert (verdict.allowed, action) == (True, TAKE)


def test_a_node_in_the_head_skips_the_stalled_nodes_ahead_of_it() -> None:
    state = head_of(("dead", 1), ("me", 2))
    verdict, action = plan_acquire(state, node="me", zone="z", limits=Limits(1), stalled=frozenset({"dead"}))
    assert (verdict.allowed, verdict.skipped, action) == (True, ("dead",), TAKE)


def test_a_node_in_the_head_waits_while_the_unavailable_budget_is_spent() -> None:
    state = head_of(("me", 1))
    limits = Limits(2, max_unavailable=1)
    verdict, action = plan_acquire(state, node="me", zone="z", limits=limits, unavailable={"z": ["down"]})
    assert (verdict.reason, action) == ("budget", WAIT)
    assert plan_acquire(state, node="me", zone="z", limits=limits)[1] == TAKE


def test_a_node_outside_an_empty_head_takes_a_slot_from_outside() -> None:
    verdict, action = plan_acquire(LockState(), node="me", zone="z", limits=Limits(1))
    assert (verdict.allowed, action) == (True, TAKE_OUTSIDE)


@pytest.mark.parametrize(
    ("state", "limits", "unavailable", "reason"),
    [
        (LockState(halted={"reason": "r", "node": "n", "at": "t"}), Limits(1), None, "halted"),
        (LockState(paused={"reason": "r", "by": "b", "at": "t"}), Limits(1), None, "paused"),
        (LockState(), Limits(2, max_unavailable=1), {"z": ["down"]}, "budget"),
        (LockState(), Limits(2, max_unavailable_per_zone=1), {"z": ["down"]}, "zone_budget"),
    ],
)
def test_a_node_outside_the_head_does_not_join_it_while_halted_paused_or_over_budget(
    state: LockState, limits: Limits, unavailable: dict[str, list[str]] | None, reason: str
) -> None:
    verdict, action = plan_acquire(state, node="me", zone="z", limits=limits, unavailable=unavailable)
    assert (verdict.allowed, verdict.reason, action) == (False, reason, WAIT)


@pytest.mark.parametrize(
    ("limits", "reason"),
    [(Limits(1), "concurrency"), (Limits(2, 1), "zone_concurrency")],
)
def test_a_node_outside_the_head_joins_it_while_every_slot_it_could_take_is_held(
    limits: Limits, reason: str
) -> None:
    state = LockState().with_holder(Holder(node="h", zone="z", phase="draining"))
    verdict, action = plan_acquire(state, node="me", zone="z", limits=limits)
    assert (verdict.reason, action) == (reason, JOIN)


def test_a_node_outside_a_head_with_room_joins_it_once() -> None:
    state = head_of(("first", 1))
    verdict, action = plan_acquire(state, node="me", zone="z", limits=Limits(1))
    assert (verdict.reason, action) == ("queued", JOIN)
    assert plan_acquire(state, node="me", zone="z", limits=Limits(1), join=False)[1] == WAIT


def test_a_joining_node_takes_room_in_the_head_but_never_pushes_a_node_out() -> None:
    """Reordering the head is the refills' job: a node joining with an earlier ticket waits for
    the next refill instead of racing the others to displace the head's last."""
    state = LockState().with_holder(Holder(node="h", zone="z", phase="draining"))
    state = state.with_waiter(node="late", zone="z", ticket=100)
    assert plan_acquire(state, node="early", zone="z", limits=Limits(1), ticket=50)[1] == JOIN, "room"
    full = state.with_waiter(node="later", zone="z", ticket=200)
    assert plan_acquire(full, node="early", zone="z", limits=Limits(1), ticket=50)[1] == WAIT
    refilled = with_head(full, limits=Limits(1), candidates=queue(("early", "z", 50)))
    assert list(refilled.waiters) == ["early", "late"], "the next refill puts it in its place"


def test_a_node_outside_the_head_does_not_join_it_when_its_zone_has_its_share_of_the_head() -> None:
    state = LockState().with_waiter(node="first", zone="a", ticket=1)
    limits = Limits(2, 1)
    assert plan_acquire(state, node="me", zone="a", limits=limits, ticket=5) == (
        decide_acquire(state, node="me", zone="a", limits=limits),
        WAIT,
    )
    assert plan_acquire(state, node="me", zone="b", limits=limits, ticket=5)[1] == TAKE_OUTSIDE


# --- a share of the nodes -------------------------------------------------------------------------


def test_a_number_of_nodes_is_taken_as_it_is() -> None:
    assert resolve_share(3, nodes=100, floor=1) == 3
    assert resolve_share(0, nodes=100, floor=1) == 0, "a zone limit of 0 is no zone limit"


@pytest.mark.parametrize(
    ("share", "nodes", "resolved"),
    [("10%", 100, 10), ("25%", 10, 2), ("100%", 7, 7), ("10%", 5, 1), ("1%", 0, 1)],
)
def test_a_share_of_the_nodes_is_rounded_down_but_never_below_one(
    share: str, nodes: int, resolved: int
) -> None:
    assert resolve_share(share, nodes=nodes, floor=1) == resolved


@given(percent=st.integers(1, 100), nodes=st.integers(0, 10_000), floor=st.integers(0, 3))
def test_a_share_is_the_largest_whole_number_of_nodes_within_it_or_the_floor(
    percent: int, nodes: int, floor: int
) -> None:
    resolved = resolve_share(f"{percent}%", nodes=nodes, floor=floor)
    assert type(resolved) is int
    assert resolved >= floor
    if resolved > floor:
        assert resolved * 100 <= nodes * percent < (resolved + 1) * 100
    else:
        assert nodes * percent < (floor + 1) * 100
