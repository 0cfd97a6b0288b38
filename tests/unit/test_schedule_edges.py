"""The maintenance window's parsers and checks at their edges: the messages an operator reads,
Go's `Local` zone rules, instants that only pretend to be aware. Written to kill the mutants
`nox -s mutants` found surviving tests/unit/test_schedule.py."""

from __future__ import annotations

import importlib.resources
import re
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rebootd.schedule import Window, _local_zone, format_days, parse_days, parse_time_of_day, parse_time_zone

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


# --- the search for the next opening, across DST (surviving mutants of the window search) ---------

NEW_YORK = ZoneInfo("America/New_York")
# 2026-03-08 02:00 EST the clocks in New York jump to 03:00 EDT: 07:00 UTC.
SPRING_FORWARD = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_a_range_of_three_days_names_the_part_after_its_first_dash() -> None:
    with pytest.raises(ValueError, match=r"^invalid day 'tu-we' in 'mo-tu-we': "):
        parse_days("mo-tu-we")


def test_local_is_etc_localtime_when_tz_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`parse_time_zone("Local")` itself (not `_local_zone` with a given file) reads the system's
    /etc/localtime: a zone named Local where the file exists, UTC where it does not."""
    monkeypatch.delenv("TZ", raising=False)
    system = Path("/etc/localtime")
    zone = parse_time_zone("Local")
    assert str(zone) == ("Local" if system.exists() else "UTC")
    if system.exists():
        with system.open("rb") as handle:
            expected = ZoneInfo.from_file(handle)
        for instant in (WINTER, WINTER + timedelta(days=180)):
            assert instant.astimezone(zone).utcoffset() == instant.astimezone(expected).utcoffset()


def test_a_window_with_a_microsecond_hole_is_not_always_open() -> None:
    """Every day from 00:00:01.000001 to the end of 00:00:00 the next day: the wall-clock instant
    00:00:01 is outside, so the window is not `always`, by one microsecond."""
    window = Window(days=frozenset(range(7)), start=time(0, 0, 1, 1), end=time(0, 0, 0), tz=UTC)
    assert not window.is_always
    hole = datetime(2026, 1, 5, 0, 0, 1, tzinfo=UTC)
    assert not window.contains(hole)
    assert window.contains(hole + timedelta(microseconds=1))
    assert window.describe() != f"any time ({UTC})"


def test_the_next_opening_a_week_ahead_is_its_start_even_on_a_dst_morning() -> None:
    """Sunday 01:00-04:00 in New York, asked just after one Sunday's window: the next one opens
    Sunday 01:00 EST (06:00 UTC), before the clocks jump inside it (07:00 UTC); the search must
    weigh the occurrence a full week ahead, not only the jump."""
    window = Window(days=frozenset({6}), start=time(1, 0), end=time(4, 0), tz=NEW_YORK)
    after = datetime(2026, 3, 1, 5, 0, tzinfo=NEW_YORK)
    assert window.next_open(after) == datetime(2026, 3, 8, 6, 0, tzinfo=UTC)


def test_an_opening_in_the_dst_gap_six_days_ahead_beats_a_plain_one_seven_days_ahead() -> None:
    """Sunday and Monday 02:30-04:00 in New York, asked Monday 2 March after its window: the
    Sunday 8 March window starts in the skipped hour, so it opens at the jump (03:00 EDT), a day
    before Monday 9 March's 02:30."""
    window = Window(days=frozenset({0, 6}), start=time(2, 30), end=time(4, 0), tz=NEW_YORK)
    after = datetime(2026, 3, 2, 5, 0, tzinfo=NEW_YORK)
    assert window.next_open(after) == SPRING_FORWARD


@pytest.mark.parametrize("seconds_before", [1, 2, 3, 59, 61, 3599, 3601, 7207, 10799, 10801, 86399, 86401])
def test_an_opening_at_a_dst_jump_is_the_jump_to_the_second(seconds_before: int) -> None:
    """The zone's transition is searched by bisection down to the very second, wherever the
    search started: an occurrence starting in the skipped hour opens exactly at 07:00:00 UTC."""
    window = Window(days=frozenset({6}), start=time(2, 15), end=time(4, 0), tz=NEW_YORK)
    assert window.next_open(SPRING_FORWARD - timedelta(seconds=seconds_before)) == SPRING_FORWARD


class DailyGap(tzinfo):
    """A zone whose clocks skip 02:00-02:30 every day (at 02:00 UTC) and repeat 12:00-12:30 (at
    12:00 UTC): no wall clock ever reads 02:10."""

    SHIFT = timedelta(minutes=30)

    def _shifted(self, utc: datetime) -> bool:
        return time(2, 0) <= utc.time() < time(12, 0)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        if dt is None:
            return timedelta(0)
        wall = dt.time()
        if time(2, 30) <= wall < time(12, 0):
            return self.SHIFT
        if time(12, 0) <= wall < time(12, 30):  # the fold: first pass shifted
            return timedelta(0) if dt.fold else self.SHIFT
        if time(2, 0) <= wall < time(2, 30):  # the gap: PEP 495's offsets before / after
            return self.SHIFT if dt.fold else timedelta(0)
        return timedelta(0)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "DailyGap"

    def fromutc(self, dt: datetime) -> datetime:
        utc = dt.replace(tzinfo=None)
        if self._shifted(utc):
            return (utc + self.SHIFT).replace(tzinfo=self)
        second_pass = time(12, 0) <= utc.time() < time(12, 30)
        return utc.replace(tzinfo=self, fold=1 if second_pass else 0)


def test_a_window_no_wall_clock_ever_reads_is_refused_after_five_weeks_of_search() -> None:
    window = Window(days=frozenset(range(7)), start=time(2, 5), end=time(2, 20), tz=DailyGap())
    start = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    assert not window.contains(datetime(2026, 1, 6, 2, 10, tzinfo=UTC))  # reads 02:40
    expected = f"the window {window.describe()} never opens in the five weeks after 2026-01-05 13:00:00+00:00"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        window.next_open(start)
