"""The lock's pure decisions at their edges: the unavailable-node budget, queue order and ties,
the annotation's exact format and defaults, and staleness at its bounds (the mutation score of
lockstate.py; tests/unit/test_lockstate.py holds the main cases)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd import lockstate
from rebootd.lockstate import (
    Holder,
    Limits,
    LockState,
    Observer,
    StateFormatError,
    Waiter,
    decide_acquire,
    eligible_waiters,
    next_in_line,
    zone_load,
)

NODES = "abcdefgh"
ZONES = ("z1", "z2", "z3")


@pytest.fixture(autouse=True)
def parsed_anew() -> Iterator[None]:
    """Every annotation here is parsed afresh: `LockState.from_annotation` memoises by text, and a
    mutation run forks each mutant's tests from a process that already parsed these texts."""
    lockstate._parse.cache_clear()
    yield
    lockstate._parse.cache_clear()


def holding(*specs: tuple[str, str]) -> LockState:
    state = LockState()
    for node, zone in specs:
        state = state.with_holder(Holder(node=node, zone=zone, phase="draining"))
    return state


def queued(state: LockState, *specs: tuple[str, str]) -> LockState:
    for node, zone in specs:
        state = state.with_waiter(node=node, zone=zone)
    return state


# --- the unavailable-node budget ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "holders", "unavailable", "reason"),
    [
        # max_unavailable 2: one other node down leaves room for us, two do not
        (Limits(3, max_unavailable=2), (), {"z1": ["x"]}, ""),
        (Limits(3, max_unavailable=2), (), {"z1": ["x"], "z2": ["y"]}, "budget"),
        # a holder counts once, whether or not its node already shows as unavailable
        (Limits(3, max_unavailable=2), (("h", "z1"),), {"z1": ["h"]}, ""),
        (Limits(3, max_unavailable=2), (("h", "z1"),), {"z2": ["y"]}, "budget"),
        # two holders are two nodes
        (Limits(3, max_unavailable=2), (("h", "z1"), ("i", "z1")), {}, "budget"),
        (Limits(3, max_unavailable=3), (("h", "z1"), ("i", "z1")), {}, ""),
        # per zone: only the asking node's zone counts
        (Limits(3, max_unavailable_per_zone=1), (), {"z2": ["y"]}, ""),
        (Limits(3, max_unavailable_per_zone=1), (), {"z1": ["x"]}, "zone_budget"),
        (Limits(3, max_unavailable_per_zone=2), (), {"z1": ["x"]}, ""),
        (Limits(3, max_unavailable_per_zone=1), (("h", "z2"),), {}, ""),
        (Limits(3, max_unavailable_per_zone=2), (("h", "z1"), ("i", "z1")), {}, "zone_budget"),
        (Limits(3, max_unavailable_per_zone=2), (("h", "z1"),), {"z1": ["h"]}, ""),
        # zero means nothing may be disrupted at all
        (Limits(3, max_unavailable=0), (), {}, "budget"),
        (Limits(3, max_unavailable_per_zone=0), (), {}, "zone_budget"),
        # the total is checked first
        (Limits(3, max_unavailable=1, max_unavailable_per_zone=1), (), {"z1": ["x"]}, "budget"),
    ],
)
def test_a_node_is_refused_exactly_when_one_more_disrupted_node_breaks_the_unavailable_budget(
    limits: Limits, holders: tuple[tuple[str, str], ...], unavailable: dict[str, list[str]], reason: str
) -> None:
    state = holding(*holders)
    assert limits.within_budget(holders=state.holders.values(), zone="z1", unavailable=unavailable) == reason
    verdict = decide_acquire(state, node="me", zone="z1", limits=limits, unavailable=unavailable)
    assert (verdict.allowed, verdict.reason) == (not reason, reason)
    assert verdict.skipped == ()


def test_without_a_budget_unavailable_nodes_do_not_refuse() -> None:
    verdict = decide_acquire(
        LockState(), node="me", zone="z1", limits=Limits(1), unavailable={"z1": ["x", "y"]}
    )
    assert verdict.allowed


# --- slots, zones and the queue -----------------------------------------------------------------


def test_a_zone_limit_above_one_counts_each_holder_of_the_zone_once() -> None:
    limits = Limits(concurrency=4, zone_concurrency=2)
    assert limits.fits(holders=holding(("h", "z1")).holders.values(), zone="z1")
    assert not limits.fits(holders=holding(("h", "z1"), ("i", "z1")).holders.values(), zone="z1")
    assert decide_acquire(holding(("h", "z1")), node="me", zone="z1", limits=limits).allowed


def test_a_node_not_queued_yet_queues_in_its_own_zone_behind_those_already_waiting() -> None:
    state = queued(LockState(), ("w", "z1"))
    limits = Limits(concurrency=2, zone_concurrency=1)
    verdict = decide_acquire(state, node="me", zone="z1", limits=limits)
    assert (verdict.allowed, verdict.reason) == (False, "queued")
    assert decide_acquire(state, node="me", zone="z2", limits=limits).allowed
    assert not next_in_line(state, node="me", zone="z1", limits=limits)
    assert next_in_line(state, node="me", zone="z2", limits=limits)


def test_only_stalled_waiters_ahead_are_skipped() -> None:
    state = queued(LockState(), ("first", "z"), ("dead", "z"), ("me", "z"), ("dead-behind", "z"))
    stalled = frozenset({"dead", "dead-behind"})
    verdict = decide_acquire(state, node="me", zone="z", limits=Limits(2), stalled=stalled)
    assert verdict.allowed
    assert verdict.skipped == ("dead",), "neither a live waiter ahead nor a stalled one behind is skipped"
    assert decide_acquire(state, node="first", zone="z", limits=Limits(2), stalled=stalled).skipped == ()


def test_waiters_with_equal_tickets_are_served_by_name_and_a_stalled_one_ahead_is_skipped() -> None:
    """Tickets tie only in a state written by hand or missing its nextTicket; the order is then
    the name's, for serving and for skipping alike."""
    raw = json.dumps(
        {"version": 2, "waiters": {"b": {"zone": "z", "ticket": 1}, "a": {"zone": "z", "ticket": 1}}}
    )
    state = LockState.from_annotation(raw)
    assert eligible_waiters(state, limits=Limits(1)) == ["a"]
    verdict = decide_acquire(state, node="b", zone="z", limits=Limits(1), stalled=frozenset({"a"}))
    assert (verdict.allowed, verdict.skipped) == (True, ("a",))


def test_a_state_missing_its_next_ticket_draws_from_one() -> None:
    state = LockState.from_annotation('{"version":2}')
    assert state == LockState()
    assert state.with_waiter(node="a", zone="z").waiters["a"] == Waiter(node="a", zone="z", ticket=1)


@pytest.mark.parametrize("next_ticket", [',"nextTicket":2', ""])
def test_a_node_queued_after_a_state_whose_next_ticket_lags_its_waiters_queues_behind_them(
    next_ticket: str,
) -> None:
    """A nextTicket below a waiter's ticket (written by hand, or missing) is read as one past the
    latest ticket: "last in line" never jumps ahead of a node already waiting."""
    state = LockState.from_annotation(
        f'{{"version":3,"waiters":{{"b":{{"zone":"z","ticket":7}}}}{next_ticket}}}'
    )
    assert state.next_ticket == 8
    assert eligible_waiters(state.with_waiter(node="a", zone="z"), limits=Limits(1)) == ["b"]


def test_becoming_a_holder_leaves_the_queue_and_nobody_else_does() -> None:
    state = queued(holding(("h", "z")), ("a", "z"), ("b", "z"), ("c", "z"))
    taken = state.with_holder(Holder(node="b", zone="z", phase="cordoning"))
    assert sorted(taken.waiters) == ["a", "c"]
    assert sorted(taken.holders) == ["b", "h"]
    assert sorted(taken.without_holder("h").holders) == ["b"]
    assert sorted(taken.without_waiters(["a", "x"]).waiters) == ["c"]
    assert taken.without_waiters(["a"]).holders == taken.holders


def test_the_holder_identity_names_every_holder_sorted() -> None:
    assert holding(("b", "z"), ("a", "z")).holder_identity() == "a,b"
    assert LockState().holder_identity() == ""


# --- properties of the queue --------------------------------------------------------------------

states = st.builds(
    lambda holders, waiters: queued(holding(*holders.items()), *waiters),
    st.dictionaries(st.sampled_from(NODES[:4]), st.sampled_from(ZONES), max_size=4),
    st.lists(st.tuples(st.sampled_from(NODES[4:]), st.sampled_from(ZONES)), max_size=6),
)
limit_pairs = st.tuples(st.integers(1, 4), st.integers(0, 3)).map(lambda p: Limits(p[0], min(p[1], p[0])))


@given(state=states, limits=limit_pairs, stalled=st.frozensets(st.sampled_from(NODES[4:])))
def test_the_waiters_served_fill_free_slots_in_queue_order_without_breaking_a_limit(
    state: LockState, limits: Limits, stalled: frozenset[str]
) -> None:
    chosen = eligible_waiters(state, limits=limits, stalled=stalled)
    order = sorted(state.waiters.values(), key=lambda w: (w.ticket, w.node))
    assert chosen == [w.node for w in order if w.node in chosen], "served in ticket order"
    assert not set(chosen) & stalled
    zones = [h.zone for h in state.holders.values()] + [state.waiters[n].zone for n in chosen]
    assert len(chosen) == 0 or len(zones) <= limits.concurrency
    if limits.zone_concurrency:
        assert all(zones.count(z) <= limits.zone_concurrency for z in set(zones[len(state.holders) :]))
    # every live waiter left out was refused for a full slot count or a full zone at its turn
    for waiter in order:
        if waiter.node in chosen or waiter.node in stalled:
            continue
        ahead = [
            state.waiters[n].zone
            for n in chosen
            if (state.waiters[n].ticket, n) < (waiter.ticket, waiter.node)
        ]
        taken = [h.zone for h in state.holders.values()] + ahead
        full = len(taken) >= limits.concurrency
        zone_full = 0 < limits.zone_concurrency <= taken.count(waiter.zone)
        assert full or zone_full


@given(state=states, limits=limit_pairs, node=st.sampled_from(NODES[4:]), zone=st.sampled_from(ZONES))
def test_a_node_may_take_a_slot_only_when_the_slot_keeps_every_limit(
    state: LockState, limits: Limits, node: str, zone: str
) -> None:
    zone = state.waiters[node].zone if node in state.waiters else zone
    verdict = decide_acquire(state, node=node, zone=zone, limits=limits)
    after = state.with_holder(Holder(node=node, zone=zone, phase="cordoning"))
    zones = [h.zone for h in after.holders.values()]
    keeps = len(zones) <= limits.concurrency and (
        not limits.zone_concurrency or zones.count(zone) <= limits.zone_concurrency
    )
    if verdict.allowed:
        assert keeps
        assert next_in_line(state, node=node, zone=zone, limits=limits)
    else:
        assert verdict.reason in {"concurrency", "zone_concurrency", "queued"}
        assert verdict.reason != "queued" or keeps


# --- the annotation -----------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=8)
records = st.builds(
    Holder,
    node=st.sampled_from(NODES),
    zone=texts,
    phase=texts,
    seq=st.integers(0, 10**6),
    acquired=texts,
    grant=texts,
    pod=texts,
    lease=texts,
    attempts=st.integers(0, 50),
    evidence=st.dictionaries(texts, texts, max_size=2),
)
marks = st.none() | st.fixed_dictionaries({"reason": texts, "by": texts, "at": texts})


@given(
    holders=st.lists(records, max_size=3),
    waiters=st.lists(st.tuples(st.sampled_from(NODES), texts), max_size=3),
    first_ticket=st.integers(1, 10**6),
    paused=marks,
    halted=marks,
)
def test_every_state_survives_the_annotation_unchanged(
    holders: list[Holder],
    waiters: list[tuple[str, str]],
    first_ticket: int,
    paused: dict[str, str] | None,
    halted: dict[str, str] | None,
) -> None:
    state = LockState(next_ticket=first_ticket, paused=paused, halted=halted)
    for holder in holders:
        state = state.with_holder(holder)
    state = queued(state, *waiters)
    lockstate._parse.cache_clear()
    again = LockState.from_annotation(state.to_annotation())
    assert again == state
    assert again.to_annotation() == state.to_annotation()


def test_a_holder_record_is_written_with_every_field_named() -> None:
    holder = Holder(
        node="n", zone="z", phase="rebooting", seq=3, acquired="t", grant="g", pod="p", lease="l", attempts=2
    )
    assert holder.to_json() == {
        "zone": "z",
        "phase": "rebooting",
        "seq": 3,
        "acquired": "t",
        "grant": "g",
        "pod": "p",
        "lease": "l",
        "attempts": 2,
    }
    legacy = Holder(node="n", zone="z", phase="rebooting", evidence={"bootID": "b"})
    assert legacy.to_json()["evidence"] == {"bootID": "b"}


def test_the_annotation_is_one_canonical_text_whatever_order_the_state_was_built_in() -> None:
    one = LockState(paused={"reason": "r", "by": "b", "at": "t"}, halted={"node": "n", "reason": "x"})
    two = LockState(paused={"at": "t", "by": "b", "reason": "r"}, halted={"reason": "x", "node": "n"})
    assert one.to_annotation() == two.to_annotation()
    data = json.loads(one.to_annotation())
    assert data["paused"] == {"reason": "r", "by": "b", "at": "t"}
    assert data["halted"] == {"node": "n", "reason": "x"}
    assert list(data) == sorted(data)


def test_a_record_missing_its_fields_reads_as_a_fresh_acquiring_legacy_record() -> None:
    state = LockState.from_annotation('{"version":1,"holders":{"a":{}},"waiters":{"w":{}}}')
    assert state.holders["a"] == Holder(node="a", zone="", phase="acquiring")
    assert state.holders["a"].legacy
    assert state.waiters["w"] == Waiter(node="w", zone="", ticket=0)
    assert (state.next_ticket, state.paused, state.halted) == (1, None, None)


def test_null_fields_of_a_record_read_as_empty() -> None:
    raw = (
        '{"version":2,"holders":{"a":{"zone":"z","grant":null,"pod":null,"lease":null,'
        '"attempts":null,"evidence":null}}}'
    )
    assert LockState.from_annotation(raw).holders["a"] == Holder(node="a", zone="z", phase="acquiring")


def test_a_full_record_reads_back_field_for_field() -> None:
    raw = (
        '{"version":2,"holders":{"a":{"zone":"z","phase":"draining","seq":7,"acquired":"t","grant":"g",'
        '"pod":"p","lease":"l","attempts":3,"evidence":{"k":"v"}}},'
        '"waiters":{"w":{"zone":"y","ticket":5}},"nextTicket":6,'
        '"paused":{"reason":"p"},"halted":{"reason":"h"}}'
    )
    state = LockState.from_annotation(raw)
    assert state.holders == {
        "a": Holder(
            node="a",
            zone="z",
            phase="draining",
            seq=7,
            acquired="t",
            grant="g",
            pod="p",
            lease="l",
            attempts=3,
            evidence={"k": "v"},
        )
    }
    assert state.waiters == {"w": Waiter(node="w", zone="y", ticket=5)}
    assert (state.next_ticket, state.paused, state.halted) == (6, {"reason": "p"}, {"reason": "h"})


def test_a_refused_annotation_says_why_and_quotes_the_start_of_what_it_found() -> None:
    with pytest.raises(StateFormatError, match=r"^rebootd\.io/state is not JSON: "):
        LockState.from_annotation("{not json")
    with pytest.raises(StateFormatError) as refused:
        LockState.from_annotation(json.dumps({"version": 99, "note": "x" * 200}))
    assert str(refused.value) == (
        "rebootd.io/state has a lock format this rebootd does not know (it reads versions [1, 2, 3]; "
        "a newer rebootd wrote it?): {'version': 99, 'note': '" + "x" * 55
    )


# --- the observer's clock -----------------------------------------------------------------------


def test_a_record_unchanged_across_observations_ages_from_its_first_sighting() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    state = holding(("a", "z"))
    for now in (0.0, 5.0, 9.0):
        observer.observe(state, now=now, limits=Limits(1))
    assert observer.silent_for("a", now=10.5) == 10.5
    assert [h.node for h in observer.stale_holders(state, now=10.5)] == ["a"]


def test_a_holder_is_stale_only_strictly_after_its_ttl_and_a_waiter_stalled_only_after_grace() -> None:
    observer = Observer(ttl=10, grace=2, boot_allowance=0)
    state = queued(holding(("a", "z")), ("w", "z"))
    observer.observe(state, now=0.0, limits=Limits(2))
    assert observer.stale_holders(state, now=10.0) == []
    assert observer.stalled_waiters(now=2.0) == frozenset()
    assert [h.node for h in observer.stale_holders(state, now=10.25)] == ["a"]
    assert observer.stalled_waiters(now=2.25) == frozenset({"w"})


def test_a_holder_never_observed_does_not_hide_the_stale_ones_after_it() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    observer.observe(holding(("b", "z")), now=0.0, limits=Limits(2))
    both = holding(("a", "z"), ("b", "z"))  # `a` first, never observed
    assert [h.node for h in observer.stale_holders(both, now=11.0)] == ["b"]


def test_a_lease_without_a_uid_is_the_lease_of_uid_empty() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    state = holding(("a", "z"))
    observer.observe(state, now=0.0, limits=Limits(1), lease_uid="")
    observer.observe(state, now=5.0, limits=Limits(1))
    assert observer.silent_for("a", now=11.0) == 11.0


def test_silence_is_measured_from_the_last_change_never_negative_and_zero_for_a_stranger() -> None:
    observer = Observer(ttl=10, grace=1, boot_allowance=0)
    state = holding(("a", "z"))
    observer.observe(state, now=5.0, limits=Limits(1))
    assert observer.silent_for("a", now=5.5) == 0.5
    assert observer.silent_for("a", now=8.0) == 3.0
    assert observer.silent_for("a", now=4.0) == 0.0, "a clock read before the sighting is no silence"
    assert observer.silent_for("stranger", now=8.0) == 0.0


def test_the_zone_load_counts_the_holders_of_each_zone() -> None:
    state = holding(("a", "z1"), ("b", "z2"), ("c", "z1"))
    assert zone_load(state) == {"z1": 2, "z2": 1}
    assert zone_load(LockState()) == {}
