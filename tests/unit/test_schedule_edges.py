"""The maintenance window's parsers and checks at their edges: the messages an operator reads,
Go's `Local` zone rules, instants that only pretend to be aware. Written to kill the mutants
`nox -s mutants` found surviving tests/unit/test_schedule.py."""

from __future__ import annotations

import importlib.resources
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path

import pytest

from rebootd.schedule import Window, _local_zone, format_days, parse_days, parse_time_of_day

PARIS = Path(str(importlib.resources.files("tzdata").joinpath("zoneinfo/Europe/Paris")))
WINTER = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_local_zone_follows_go_rules_for_tz() -> None:
    missing = Path("/nonexistent/localtime")
    assert _local_zone(environ={"TZ": "UTC"}, localtime=missing) is UTC
    assert _local_zone(environ={"TZ": ":UTC"}, localtime=missing) is UTC
    assert _local_zone(environ={"TZ": ""}, localtime=missing) is UTC
    from_path = _local_zone(environ={"TZ": str(PARIS)}, localtime=missing)
    assert str(from_path) == "Local"
    assert from_path.utcoffset(WINTER.replace(tzinfo=None)) == timedelta(hours=1)
    from_file = _local_zone(environ={}, localtime=PARIS)
    assert str(from_file) == "Local"
    assert from_file.utcoffset(WINTER.replace(tzinfo=None)) == timedelta(hours=1)
    assert _local_zone(environ={}, localtime=missing) is UTC  # unreadable: UTC, as Go


def test_a_minute_or_second_of_60_is_refused_with_the_range() -> None:
    for text in ("12:60", "12:00:60"):
        with pytest.raises(ValueError, match=r"\(00:00 to 23:59:59\)$"):
            parse_time_of_day(text)


@pytest.mark.parametrize("text", ["-fr", "mo-", " - "])
def test_a_day_range_missing_an_end_is_refused_as_such(text: str) -> None:
    with pytest.raises(ValueError, match="invalid day range"):
        parse_days(text)


def test_a_window_refuses_what_it_cannot_mean_with_a_reason() -> None:
    with pytest.raises(ValueError, match=r"^weekday numbers run 0 \(Monday\) to 6 \(Sunday\), got \[7\]$"):
        Window(days=frozenset({7}), start=time(1), end=time(2), tz=UTC)
    with pytest.raises(ValueError, match=r"^window start and end are wall-clock times; give the zone as tz$"):
        Window(days=frozenset({0}), start=time(1, tzinfo=UTC), end=time(2), tz=UTC)
    with pytest.raises(ValueError, match="use 00:00 to 23:59:59 for the whole day"):
        Window(days=frozenset({0}), start=time(1), end=time(1), tz=UTC)


def test_a_window_without_days_is_never_open_as_in_kured() -> None:
    """kured's documented way to disable reboots: an empty reboot-days means never."""
    never = Window(days=frozenset(), start=time(1), end=time(2), tz=UTC)
    monday = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
    assert not any(never.contains(monday + timedelta(hours=h)) for h in range(24 * 7))


def test_a_window_keeps_its_days_as_a_frozenset() -> None:
    window = Window(days={0, 1}, start=time(1), end=time(2), tz=UTC)  # type: ignore[arg-type]
    assert window.days == frozenset({0, 1})
    assert isinstance(window.days, frozenset)
    assert hash(window) == hash(Window(days=frozenset({0, 1}), start=time(1), end=time(2), tz=UTC))


class NoOffset(tzinfo):
    """A tzinfo that does not know its offset: such an instant is not aware."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_an_instant_whose_zone_has_no_offset_is_refused() -> None:
    window = Window.always()
    pretending = datetime(2026, 1, 5, 12, 0, tzinfo=NoOffset())
    with pytest.raises(ValueError, match="aware"):
        window.contains(pretending)
    with pytest.raises(ValueError, match="aware"):
        window.next_open(pretending)
    assert window.contains(WINTER)
    assert window == Window(days=frozenset(range(7)), start=time(0, 0), end=time(23, 59, 59), tz=UTC)


def test_runs_of_three_days_or_more_are_written_as_ranges() -> None:
    assert format_days({0, 1}) == "mon,tue"
    assert format_days({0, 1, 2}) == "mon-wed"
    assert format_days({0, 1, 2, 3}) == "mon-thu"
    with pytest.raises(ValueError, match=r"^weekday numbers run 0 \(Monday\) to 6 \(Sunday\), got \[7\]$"):
        format_days([7])


def test_a_bad_day_in_a_range_is_named_with_the_whole_text() -> None:
    for text in ("xx-fr", "mo-xx"):
        with pytest.raises(ValueError, match=f"^invalid day 'xx' in '{text}': expected day names"):
            parse_days(text)


def test_an_empty_window_names_its_time_and_says_how_to_mean_the_whole_day() -> None:
    with pytest.raises(
        ValueError,
        match=r"^window start and end are both 01:00: the window would be empty; "
        r"use 00:00 to 23:59:59 for the whole day$",
    ):
        Window(days=frozenset({0}), start=time(1), end=time(1), tz=UTC)
