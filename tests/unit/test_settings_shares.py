"""REBOOTD_CONCURRENCY and REBOOTD_ZONE_CONCURRENCY: a number of nodes (at least 1 for the
concurrency, at least 0 for the zone limit, 0 being no zone limit) or a share of the cluster's
nodes ("10%": more than 0%, at most 100%), kept as given and resolved against the node count when
used (`lockstate.resolve_share`, tests/unit/test_lock_head.py). Anything else is refused with what
is expected, naming the option (the mutation score of `settings._share_of`)."""

from __future__ import annotations

from typing import Any

import pytest

from rebootd.settings import InvalidConfig, Settings, load_settings

EXPECTED = (
    "expected a number of nodes (at least {minimum}) or a percentage of the nodes such as 10% "
    "(more than 0%, at most 100%)"
)
FIELDS = {"concurrency": 1, "zone_concurrency": 0}  # the option -> its least number of nodes


def loaded(**values: Any) -> Settings:
    """Settings from values as a caller gives them (flags: strings, numbers or anything else)."""
    return load_settings(environ={}, flags={"concurrency": "100%", **values})


def refusal(**values: Any) -> str:
    with pytest.raises(InvalidConfig) as caught:
        loaded(**values)
    (problem,) = caught.value.problems
    assert problem.field in values
    return problem.expected


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    ("given", "kept"),
    [("10%", "10%"), ("1%", "1%"), ("100%", "100%"), (" 25 % ", "25%"), ("007%", "7%")],
)
def test_a_share_of_the_nodes_is_kept_as_a_whole_percentage(field: str, given: str, kept: str) -> None:
    assert getattr(loaded(**{field: given}), field) == kept


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("given", ["0%", "101%", "-5%", "ten%", "%", "1.5%", "10%%"])
def test_a_share_of_no_node_or_more_than_every_node_is_refused(field: str, given: str) -> None:
    assert refusal(**{field: given}) == EXPECTED.format(minimum=FIELDS[field])


@pytest.mark.parametrize(
    ("field", "given", "kept"), [("concurrency", " 3 ", 3), ("zone_concurrency", "0", 0)]
)
def test_a_number_of_nodes_given_as_text_is_read_as_a_number(field: str, given: str, kept: int) -> None:
    value = getattr(loaded(**{field: given}), field)
    assert (type(value), value) == (int, kept)


def test_a_concurrency_of_0_or_less_is_refused_saying_how_kured_read_it() -> None:
    for given in ("0", "-1", "-0", 0, -3):
        assert refusal(concurrency=given) == EXPECTED.format(minimum=1) + " (kured read 0 or less as 1)"
    assert loaded(concurrency=1).concurrency == 1


def test_a_negative_zone_limit_is_refused() -> None:
    for given in ("-1", -1):
        assert refusal(zone_concurrency=given) == EXPECTED.format(minimum=0)
    assert loaded(zone_concurrency=0).zone_concurrency == 0


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("given", [True, False, 1.5, 2.0, "two", "", "3 nodes", "--2", "²", "²%"])
def test_what_is_neither_a_whole_number_nor_a_percentage_is_refused(field: str, given: Any) -> None:
    assert refusal(**{field: given}) == EXPECTED.format(minimum=FIELDS[field])
