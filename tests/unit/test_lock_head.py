"""Lock format 3: the queue's head in the Lease is bounded, ordered by when each node first needed
its reboot (ties by name), refilled from the Nodes' queue records; versions 2 and 1 migrate, a
newer version is refused."""

from __future__ import annotations

import json

import pytest

from rebootd.lockstate import (
    HEAD_MAX,
    JOIN,
    WAIT,
    Holder,
    Limits,
    LockState,
    StateFormatError,
    Waiter,
    decide_acquire,
    head_capacity,
    plan_acquire,
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
