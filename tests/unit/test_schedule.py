"""The maintenance window: kured's parsing rules, the wrap rule, DST gaps and folds, and the
invariants that tie `contains` to `next_open`."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rebootd.schedule import (
    NEVER,
    Window,
    _local_zone,
    format_days,
    parse_days,
    parse_time_of_day,
    parse_time_zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
APIA = ZoneInfo("Pacific/Apia")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def window(days: str, start: str, end: str, tz: tzinfo) -> Window:
    return Window(days=parse_days(days), start=parse_time_of_day(start), end=parse_time_of_day(end), tz=tz)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz: tzinfo) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


# --- parse_days -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("su,mo,tu", {SUN, MON, TUE}),
        ("sunday,tu,thu", {SUN, TUE, THU}),
        ("THURSDAY", {THU}),
        ("we,WED,WeDnEsDaY", {WED}),
        ("mon, tue , wed", {MON, TUE, WED}),
        ("mo-fr", {MON, TUE, WED, THU, FRI}),
        ("fr-mo", {FRI, SAT, SUN, MON}),
        ("sa-su", {SAT, SUN}),
        ("mon-mon", {MON}),
        ("mo,we-th,sa", {MON, WED, THU, SAT}),
        ("0,4", {SUN, THU}),  # kured's Go weekday numbers: 0 = Sunday
        ("1-5", {MON, TUE, WED, THU, FRI}),
        ("mo,,tu,", {MON, TUE}),  # empty items are skipped, as in kured
        ("*", set(range(7))),
        ("all", set(range(7))),
        ("ALL", set(range(7))),
        ("", set()),  # kured: an empty --reboot-days means never
        ("  ", set()),
        (",,,", set()),
    ],
)
def test_parse_days_reads_kured_names_numbers_and_ranges(text: str, expected: set[int]) -> None:
    assert parse_days(text) == frozenset(expected)


@pytest.mark.parametrize(
    "text",
    ["mon,tue,wed,fridayyyy", "15", "7", "-8", "mo-", "-fr", "mo-xx", "monday tuesday", "mo-tu-we"],
)
def test_parse_days_refuses_unknown_names_and_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected day names|numbers run 0") as info:
        parse_days(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("days", "text"),
    [
        ({MON, TUE, WED, THU, FRI}, "mon-fri"),
        ({MON, WED, FRI}, "mon,wed,fri"),
        ({FRI, SAT, SUN, MON}, "fri-mon"),
        ({SAT, SUN}, "sat,sun"),
        ({WED, FRI, SAT, SUN, MON}, "wed,fri-mon"),
        (set(range(7)), "mon-sun"),
    ],
)
def test_format_days_prints_short_ranges(days: set[int], text: str) -> None:
    assert format_days(days) == text


@given(st.frozensets(st.integers(0, 6), min_size=1))
def test_format_days_reads_back_to_the_same_set(days: frozenset[int]) -> None:
    assert parse_days(format_days(days)) == days


# --- parse_time_of_day ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17:00", time(17)),
        ("9:05", time(9, 5)),
        ("0:00", time(0)),
        ("00:00", time(0)),
        ("23:59:59", time(23, 59, 59)),
        ("17", time(17)),
        ("7", time(7)),
        ("5pm", time(17)),
        ("5:00pm", time(17)),
        ("05:30PM", time(17, 30)),
        ("9am", time(9)),
        ("11:59pm", time(23, 59)),
        ("12am", time(0)),
        ("12pm", time(12)),
        ("12:30am", time(0, 30)),
        ("00:01am", time(0, 1)),  # Go's 12-hour layouts accept hour 0 (kured's own tests use it)
        ("0pm", time(12)),
        ("5 pm", time(17)),
        (" 08:15:30 ", time(8, 15, 30)),
    ],
)
def test_parse_time_of_day_reads_24_and_12_hour_forms(text: str, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "24:00",
        "25:00",
        "12:61",
        "23:59:60",
        "13pm",
        "5:7",
        "17:00:5",
        "noon",
        "",
        "1700",
        "-1:00",
        "\u0665pm",
    ],
)
def test_parse_time_of_day_refuses_impossible_times(text: str) -> None:
    with pytest.raises(ValueError, match="time of day"):
        parse_time_of_day(text)


@given(st.times().map(lambda t: t.replace(microsecond=0)))
def test_parse_time_of_day_reads_back_formatted_times(value: time) -> None:
    assert parse_time_of_day(value.strftime("%H:%M:%S")) == value
    assert parse_time_of_day(value.strftime("%I:%M:%S%p")) == value


# --- parse_time_zone --------------------------------------------------------------------------


def test_parse_time_zone_reads_utc_and_iana_names() -> None:
    assert parse_time_zone("UTC") is UTC
    assert parse_time_zone("utc") is UTC
    assert parse_time_zone("") is UTC
    assert parse_time_zone("Europe/Berlin") == BERLIN
    assert parse_time_zone("America/Los_Angeles").utcoffset(datetime(2024, 7, 1)) == timedelta(hours=-7)


@pytest.mark.parametrize("text", ["Europe/Nowhere", "America", "/etc/passwd", "../../etc/passwd", "Berlin"])
def test_parse_time_zone_refuses_unknown_zones(text: str) -> None:
    with pytest.raises(ValueError, match="expected UTC, Local, or an IANA"):
        parse_time_zone(text)


def test_local_time_zone_follows_the_tz_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    zone = parse_time_zone("Local")
    assert zone.utcoffset(datetime(2024, 7, 1)) == timedelta(hours=2)
    assert zone.utcoffset(datetime(2024, 1, 1)) == timedelta(hours=1)
    monkeypatch.setenv("TZ", ":America/New_York")
    assert parse_time_zone("local").utcoffset(datetime(2024, 1, 1)) == timedelta(hours=-5)
    monkeypatch.setenv("TZ", "")
    assert parse_time_zone("Local") is UTC


def test_local_time_zone_reads_etc_localtime_when_tz_is_unset(tmp_path: Path) -> None:
    source = Path("/usr/share/zoneinfo/America/New_York")
    if not source.exists():  # the tzdata package carries the same file
        import tzdata  # type: ignore[import-untyped]

        source = Path(tzdata.__file__).parent / "zoneinfo" / "America" / "New_York"
    localtime = tmp_path / "localtime"
    shutil.copy(source, localtime)
    zone = _local_zone(environ={}, localtime=localtime)
    assert str(zone) == "Local"
    assert zone.utcoffset(datetime(2024, 7, 1)) == timedelta(hours=-4)
    assert _local_zone(environ={}, localtime=tmp_path / "missing") is UTC


# --- Window construction and description ------------------------------------------------------


def test_window_with_equal_start_and_end_is_refused() -> None:
    with pytest.raises(ValueError, match="both 09:00"):
        window("mo", "9am", "09:00", UTC)


def test_window_without_days_never_opens() -> None:
    never = Window(days=frozenset(), start=time(1), end=time(2), tz=UTC)
    assert not never.contains(utc("2024-06-08 01:30"))
    assert never.next_open(utc("2024-06-08 01:30")) == NEVER


def test_window_refuses_naive_instants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window.always().contains(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Window.always().next_open(datetime(2024, 1, 1))


def test_describe_names_days_times_zone_and_wrap() -> None:
    assert (
        window("mon-fri", "9am", "5pm", LOS_ANGELES).describe() == "mon-fri 09:00-17:00 America/Los_Angeles"
    )
    assert (
        window("fr", "22:00", "2:00", BERLIN).describe()
        == "fri 22:00-02:00 Europe/Berlin (each half on its own day)"
    )
    assert window("*", "1:00", "23:00:30", UTC).describe() == "every day 01:00-23:00:30 UTC"
    assert Window.always().describe() == "any time (UTC)"
    assert window("*", "22:00", "21:59:59", BERLIN).describe() == "any time (Europe/Berlin)"
    assert window("", "22:00", "06:00", UTC).describe() == "never (no reboot days)"


# --- contains: table --------------------------------------------------------------------------

BUSINESS_LA = window("mon,tue,wed,thu,fri", "9am", "5pm", LOS_ANGELES)
WEEKDAYS_UTC = window("mo,tu,we,th,fr", "00:00", "23:59:59", UTC)
FRIDAY_NIGHT = window("fr", "22:00", "02:00", BERLIN)
NEAR_MIDNIGHT = window("mon,tue,wed,fri", "11:59pm", "00:01am", LOS_ANGELES)
NEAR_MIDNIGHT_THU = window("mon,tue,wed,thu", "11:59pm", "00:01am", LOS_ANGELES)
NEAR_MIDNIGHT_WEEKDAYS_UTC = window("mon,tue,wed,thu,fri", "11:59pm", "00:01am", UTC)
NIGHTS_LA = window("mon,tue,wed,thu,fri", "9pm", "5am", LOS_ANGELES)
WEEKEND_NIGHTS = window("sa,su", "22:00", "06:00", UTC)
KOLKATA_MORNING = window("mo", "09:00", "10:00", KOLKATA)
TO_MIDNIGHT = window("*", "23:00", "00:00", UTC)
LEAP_THURSDAY = window("th", "22:00", "02:00", UTC)
LEAP_TUESDAY = window("tu", "00:00", "23:59:59", UTC)
BERLIN_GAP_START = window("su", "02:30", "04:00", BERLIN)
BERLIN_GAP_END = window("sa", "23:00", "02:30", BERLIN)
BERLIN_FOLD_END = window("su", "00:00", "02:30", BERLIN)
NY_FOLD_START = window("su", "01:30", "03:00", NEW_YORK)
NY_FOLD_END = window("su", "00:00", "01:30", NEW_YORK)
NY_INSIDE_GAP = window("su", "02:00", "02:59:59", NEW_YORK)

CONTAINS_CASES = [
    # kured's own table (America/Los_Angeles business hours)
    (BUSINESS_LA, local("2019-03-31 10:00", LOS_ANGELES), False),  # Sunday
    (BUSINESS_LA, local("2019-04-04 00:49", LOS_ANGELES), False),
    (BUSINESS_LA, local("2019-04-04 12:00", LOS_ANGELES), True),
    (BUSINESS_LA, utc("2019-04-04 11:59"), False),  # 04:59 PDT
    (BUSINESS_LA, local("2019-04-05 08:59:59.999999", LOS_ANGELES), False),
    (BUSINESS_LA, local("2019-04-05 09:00", LOS_ANGELES), True),  # start is inclusive
    (BUSINESS_LA, local("2019-04-05 17:00:00.999999", LOS_ANGELES), True),  # end: to the end of its second
    (BUSINESS_LA, local("2019-04-05 17:00:01", LOS_ANGELES), False),
    (WEEKDAYS_UTC, utc("2019-04-18 00:00"), True),
    (WEEKDAYS_UTC, utc("2019-04-18 23:59:59.999999"), True),  # 23:59:59 covers the whole day
    (WEEKDAYS_UTC, utc("2019-04-20 12:00"), False),  # Saturday
    # a wrapping window: each half belongs to the day it falls on (kured's TimeWindow.Contains)
    (FRIDAY_NIGHT, local("2024-06-07 22:00", BERLIN), True),
    (FRIDAY_NIGHT, local("2024-06-08 01:59", BERLIN), False),  # Saturday morning: Saturday is not chosen
    (FRIDAY_NIGHT, local("2024-06-07 01:00", BERLIN), True),  # Friday morning: Friday's early half
    (FRIDAY_NIGHT, local("2024-06-07 02:00:00.999999", BERLIN), True),
    (FRIDAY_NIGHT, local("2024-06-07 02:00:01", BERLIN), False),
    (FRIDAY_NIGHT, local("2024-06-07 21:59:59.999999", BERLIN), False),
    (WEEKEND_NIGHTS, utc("2024-06-08 03:00"), True),  # Saturday 03:00
    (WEEKEND_NIGHTS, utc("2024-06-08 23:00"), True),  # Saturday 23:00
    (WEEKEND_NIGHTS, utc("2024-06-09 05:59"), True),  # Sunday 05:59
    (WEEKEND_NIGHTS, utc("2024-06-09 22:30"), True),  # Sunday 22:30
    (WEEKEND_NIGHTS, utc("2024-06-10 03:00"), False),  # Monday 03:00: never
    (WEEKEND_NIGHTS, utc("2024-06-07 23:00"), False),  # Friday 23:00
    # kured's own timewindow tests (pkg/timewindow/timewindow_test.go at v1.23)
    (NIGHTS_LA, local("2019-03-30 04:00", LOS_ANGELES), False),
    (NIGHTS_LA, local("2019-03-31 10:00", LOS_ANGELES), False),
    (NIGHTS_LA, local("2019-03-31 22:00", LOS_ANGELES), False),
    (NIGHTS_LA, local("2019-04-04 00:49", LOS_ANGELES), True),
    (NIGHTS_LA, local("2019-04-04 12:00", LOS_ANGELES), False),
    (NIGHTS_LA, local("2019-04-04 22:49", LOS_ANGELES), True),
    (NIGHTS_LA, local("2019-04-05 00:49", LOS_ANGELES), True),
    (NIGHTS_LA, local("2019-04-05 08:59", LOS_ANGELES), False),
    (NEAR_MIDNIGHT, local("2019-04-04 23:58", LOS_ANGELES), False),
    (NEAR_MIDNIGHT, local("2019-04-04 23:59", LOS_ANGELES), False),  # Thursday is not chosen
    (NEAR_MIDNIGHT, local("2019-04-05 00:00", LOS_ANGELES), True),  # Friday is
    (NEAR_MIDNIGHT, local("2019-04-05 00:02", LOS_ANGELES), False),
    (NEAR_MIDNIGHT_THU, local("2019-04-04 23:58", LOS_ANGELES), False),
    (NEAR_MIDNIGHT_THU, local("2019-04-04 23:59", LOS_ANGELES), True),
    (NEAR_MIDNIGHT_THU, local("2019-04-05 00:00", LOS_ANGELES), False),  # Friday is not chosen
    (NEAR_MIDNIGHT_THU, local("2019-04-05 00:02", LOS_ANGELES), False),
    (NEAR_MIDNIGHT_WEEKDAYS_UTC, utc("2019-04-04 23:58"), False),
    (NEAR_MIDNIGHT_WEEKDAYS_UTC, utc("2019-04-04 23:59"), True),
    (NEAR_MIDNIGHT_WEEKDAYS_UTC, utc("2019-04-05 00:00"), True),
    (NEAR_MIDNIGHT_WEEKDAYS_UTC, utc("2019-04-05 00:01"), True),
    (NEAR_MIDNIGHT_WEEKDAYS_UTC, utc("2019-04-05 00:02"), False),
    # no days: never (kured's --reboot-days="")
    (window("", "00:00", "23:59:59", UTC), utc("2024-06-08 03:00"), False),
    # zones with half- and quarter-hour offsets
    (KOLKATA_MORNING, utc("2024-06-03 03:30"), True),  # 09:00 IST, Monday
    (KOLKATA_MORNING, utc("2024-06-03 03:29:59.999999"), False),
    (window("mo", "09:00", "10:00", KATHMANDU), utc("2024-06-03 03:15"), True),  # 09:00 +05:45
    (window("mo", "09:00", "10:00", KATHMANDU), utc("2024-06-03 03:14:59"), False),
    # midnight as an end time
    (TO_MIDNIGHT, utc("2024-06-04 00:00:00.5"), True),
    (TO_MIDNIGHT, utc("2024-06-04 00:00:01"), False),
    (TO_MIDNIGHT, utc("2024-06-03 22:59:59"), False),
    # leap day
    (LEAP_THURSDAY, utc("2024-02-29 23:00"), True),  # 29 February 2024 is a Thursday
    (LEAP_THURSDAY, utc("2024-03-01 01:59"), False),  # Friday morning: Friday is not chosen
    (LEAP_THURSDAY, utc("2024-02-29 01:59"), True),  # Thursday's early half
    (LEAP_THURSDAY, utc("2024-03-01 22:00"), False),
    (LEAP_TUESDAY, utc("2028-02-29 12:00"), True),  # 29 February 2028 is a Tuesday
    (LEAP_TUESDAY, utc("2028-03-01 00:00"), False),
    # Europe/Berlin spring forward, 2024-03-31 02:00 CET -> 03:00 CEST (01:00 UTC)
    (BERLIN_GAP_START, utc("2024-03-31 00:59:59"), False),  # 01:59:59 CET
    (BERLIN_GAP_START, utc("2024-03-31 01:00"), True),  # 03:00 CEST: first real instant after the gap
    (BERLIN_GAP_END, utc("2024-03-31 00:59"), False),  # 01:59 CET Sunday: Sunday is not chosen
    (BERLIN_GAP_END, utc("2024-03-30 00:59"), True),  # 01:59 CET Saturday, its early half
    (BERLIN_GAP_END, utc("2024-03-31 01:00"), False),  # 03:00 CEST: past 02:30
    # Europe/Berlin fall back, 2024-10-27 03:00 CEST -> 02:00 CET (01:00 UTC): 02:00-03:00 twice
    (BERLIN_FOLD_END, utc("2024-10-27 00:15"), True),  # 02:15 CEST, first reading
    (BERLIN_FOLD_END, utc("2024-10-27 00:45"), False),  # 02:45 CEST
    (BERLIN_FOLD_END, utc("2024-10-27 01:15"), True),  # 02:15 CET, second reading
    (BERLIN_FOLD_END, utc("2024-10-27 01:45"), False),  # 02:45 CET
    # America/New_York fall back, 2024-11-03 02:00 EDT -> 01:00 EST (06:00 UTC): 01:00-02:00 twice
    (NY_FOLD_START, utc("2024-11-03 05:30"), True),  # 01:30 EDT
    (NY_FOLD_START, utc("2024-11-03 05:59:59"), True),  # 01:59:59 EDT
    (NY_FOLD_START, utc("2024-11-03 06:10"), False),  # 01:10 EST: the clock is before 01:30 again
    (NY_FOLD_START, utc("2024-11-03 06:30"), True),  # 01:30 EST
    (NY_FOLD_END, utc("2024-11-03 05:15"), True),  # 01:15 EDT
    (NY_FOLD_END, utc("2024-11-03 05:45"), False),  # 01:45 EDT
    (NY_FOLD_END, utc("2024-11-03 06:15"), True),  # 01:15 EST, the other reading of 01:15
    # America/New_York spring forward, 2024-03-10 02:00 EST -> 03:00 EDT (07:00 UTC)
    (NY_INSIDE_GAP, utc("2024-03-10 06:59:59"), False),  # 01:59:59 EST
    (NY_INSIDE_GAP, utc("2024-03-10 07:00"), False),  # 03:00 EDT: a window wholly in the gap never opens
    (NY_INSIDE_GAP, utc("2024-03-17 06:30"), True),  # 02:30 EDT a week later
]


@pytest.mark.parametrize(("win", "instant", "expected"), CONTAINS_CASES)
def test_window_contains_follows_wall_clock_days_wrap_and_dst(
    win: Window, instant: datetime, expected: bool
) -> None:
    assert win.contains(instant) is expected
    assert (win.next_open(instant) == instant) is expected


# --- next_open: table -------------------------------------------------------------------------

NEXT_OPEN_CASES = [
    (BUSINESS_LA, local("2019-04-04 12:00", LOS_ANGELES), utc("2019-04-04 19:00")),  # inside: itself
    (BUSINESS_LA, local("2019-04-06 12:00", LOS_ANGELES), utc("2019-04-08 16:00")),  # Saturday -> Monday 9am
    (BUSINESS_LA, local("2019-04-05 17:00:01", LOS_ANGELES), utc("2019-04-08 16:00")),
    (FRIDAY_NIGHT, local("2024-06-07 02:30", BERLIN), utc("2024-06-07 20:00")),
    (FRIDAY_NIGHT, local("2024-06-08 02:00:01", BERLIN), utc("2024-06-13 22:00")),  # next Friday 00:00
    (LEAP_THURSDAY, utc("2024-02-28 12:00"), utc("2024-02-29 00:00")),  # Thursday's early half
    (WEEKEND_NIGHTS, utc("2024-06-09 06:00:01"), utc("2024-06-09 22:00")),
    (WEEKEND_NIGHTS, utc("2024-06-09 23:00"), utc("2024-06-09 23:00")),
    (WEEKEND_NIGHTS, utc("2024-06-10 01:00"), utc("2024-06-15 00:00")),  # Monday: next Saturday 00:00
    (KOLKATA_MORNING, utc("2024-06-02 00:00"), utc("2024-06-03 03:30")),
    (TO_MIDNIGHT, utc("2024-06-04 00:00:01"), utc("2024-06-04 23:00")),
    # a start in the spring-forward gap opens at the end of the gap
    (BERLIN_GAP_START, utc("2024-03-30 12:00"), utc("2024-03-31 01:00")),
    (
        window("su", "02:00", "02:30", BERLIN),
        utc("2024-03-30 12:00"),
        utc("2024-04-07 00:00"),
    ),  # whole: skipped
    (NY_INSIDE_GAP, utc("2024-03-09 12:00"), utc("2024-03-17 06:00")),
    # the fold brings the clock back into a window
    (NY_FOLD_END, utc("2024-11-03 05:45"), utc("2024-11-03 06:00")),  # 01:45 EDT -> 01:00 EST
    (NY_FOLD_START, utc("2024-11-03 06:10"), utc("2024-11-03 06:30")),  # 01:10 EST -> 01:30 EST
    (NY_FOLD_START, utc("2024-11-02 12:00"), utc("2024-11-03 05:30")),  # first reading of 01:30
    (window("su", "02:30", "02:45", BERLIN), utc("2024-10-27 00:50"), utc("2024-10-27 01:30")),  # 02:30 CET
    # Samoa skipped Friday 2011-12-30 altogether: the next Friday is a week later
    (window("fr", "09:00", "17:00", APIA), local("2011-12-29 12:00", APIA), local("2012-01-06 09:00", APIA)),
]


@pytest.mark.parametrize(("win", "instant", "expected"), NEXT_OPEN_CASES)
def test_next_open_finds_the_first_instant_inside(win: Window, instant: datetime, expected: datetime) -> None:
    opened = win.next_open(instant)
    assert opened == expected
    assert opened.tzinfo is UTC
    assert win.contains(opened)
    if opened > instant:
        assert not win.contains(opened - timedelta(microseconds=1))


def test_always_window_contains_every_instant() -> None:
    always = Window.always()
    for instant in (utc("2024-01-01 00:00"), utc("2024-02-29 23:59:59.999999"), utc("2024-12-31 12:00")):
        assert always.contains(instant)
        assert always.next_open(instant) == instant


# --- properties -------------------------------------------------------------------------------

ZONES: list[tzinfo] = [UTC, BERLIN, NEW_YORK, LORD_HOWE, APIA, KATHMANDU, SAO_PAULO]
# Instants next to DST transitions of the zones above, where the edge cases live.
TRANSITIONS = [
    utc("2024-03-31 01:00"),  # Berlin spring
    utc("2024-10-27 01:00"),  # Berlin fall
    utc("2024-03-10 07:00"),  # New York spring
    utc("2024-11-03 06:00"),  # New York fall
    utc("2024-04-06 15:00"),  # Lord Howe: 30-minute fold
    utc("2024-10-05 15:30"),  # Lord Howe: 30-minute gap
    utc("2011-12-30 10:00"),  # Apia skips a day
    utc("2018-11-04 03:00"),  # Sao Paulo: midnight gap
    utc("2019-02-17 02:00"),  # Sao Paulo: midnight fold
]

wall_times = st.one_of(
    st.times(),
    st.builds(time, st.integers(0, 3), st.sampled_from([0, 15, 30, 59]), st.sampled_from([0, 59])),
)
windows = st.builds(
    lambda days, bounds, tz: Window(days=days, start=bounds[0], end=bounds[1], tz=tz),
    st.frozensets(st.integers(0, 6), min_size=1),
    st.tuples(wall_times, wall_times).filter(lambda pair: pair[0] != pair[1]),
    st.sampled_from(ZONES),
)
instants = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    st.builds(
        lambda base, seconds, micros: base + timedelta(seconds=seconds, microseconds=micros),
        st.sampled_from(TRANSITIONS),
        st.integers(-8 * 86400, 8 * 86400),
        st.integers(0, 999_999),
    ),
)


@given(windows, instants)
@example(NY_FOLD_END, utc("2024-11-03 05:45"))
@example(BERLIN_GAP_START, utc("2024-03-31 00:30"))
def test_next_open_is_the_earliest_contained_instant(win: Window, t: datetime) -> None:
    opened = win.next_open(t)
    assert opened >= t
    assert win.contains(opened)
    assert win.contains(t) == (opened == t)
    if opened > t:
        span = opened - t
        samples = [t + span * k / 64 for k in range(64)]
        samples += [opened - timedelta(microseconds=1), opened - timedelta(seconds=1)]
        for point in samples:
            if t <= point < opened:
                assert not win.contains(point), f"{point} is inside {win} before next_open {opened}"
