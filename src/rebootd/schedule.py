"""The maintenance window: on which days, between which wall-clock times, in which time zone.

Rule: pure. Nothing here reads the clock, the environment (except `parse_time_zone("Local")`,
which reads `TZ` / `/etc/localtime` the way Go's `time.Local` does) or logs; the caller passes
the instant. A leaf module: it imports nothing of rebootd.

Semantics (kured's `pkg/timewindow`, with its wrap rule made exact):

- The window is a wall-clock schedule, judged as kured's `TimeWindow.Contains` judges it: an
  instant is inside when the weekday of its local date is in `days` and its local time of day is
  between `start` (inclusive) and the end of the second `end` names (so the default 00:00 to
  23:59:59 is the whole day). If `start > end` the window wraps past midnight and each half
  belongs to the day it falls on: `sa,su 22:00-06:00` is open Saturday 00:00-06:00, Saturday
  22:00-24:00, Sunday 00:00-06:00 and Sunday 22:00-24:00, and never Monday 00:00-06:00 (kured's
  own timewindow tests: `mon,tue,wed,fri 11:59pm-00:01am` is closed Thursday 23:59 and open
  Friday 00:00). `start == end` is refused. An empty set of days never opens (kured's
  `--reboot-days=""`, its documented way to disable reboots).
- An instant is inside when its local wall-clock reading falls inside an occurrence.
- DST gap (spring forward): wall times in the gap never occur, so an occurrence whose start lies
  in the gap opens at the first real instant after the gap (the transition itself); an occurrence
  lying wholly inside the gap does not happen that day.
- DST fold (fall back): a repeated wall time has two readings (first and second pass). Because
  membership is judged on the wall-clock reading, an instant in the fold belongs to the window if
  either reading of its wall time is inside - and then both are. A window ending at 01:30 on the
  fall-back night in New York is therefore open during both 01:00-01:30 passes and closed in
  between (01:30-02:00 EDT); a window starting at 01:30 opens at the first 01:30 (EDT), closes
  at the fold (the clock reads 01:00 EST again) and reopens at the second 01:30.

Why hand-written: no well-kept library computes "next opening of a weekly wall-clock window with
midnight wrap" across DST transitions (croniter and dateutil.rrule enumerate wall times but do not
resolve gaps/folds this way), and kured's parsing rules are its own. `Local` is resolved by hand
for the same reason `tzlocal` exists, with Go's rules instead of tzlocal's (TZ="" means UTC).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAYS_EXPECTED",
    "NEVER",
    "TIME_EXPECTED",
    "TZ_EXPECTED",
    "Window",
    "format_days",
    "parse_days",
    "parse_time_of_day",
    "parse_time_zone",
]

DAYS_EXPECTED = (
    "expected day names (su, mon, tuesday...) or ranges (mo-fr), comma-separated, or * for every day"
)
TIME_EXPECTED = "expected a time of day: HH:MM, HH:MM:SS, 17, or 12-hour forms such as 5pm, 5:30pm"
TZ_EXPECTED = "expected UTC, Local, or an IANA time zone name such as Europe/Berlin"

ALL_DAYS: frozenset[int] = frozenset(range(7))

# Python weekday numbers: 0 = Monday .. 6 = Sunday.
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_WORDS: Mapping[str, int] = MappingProxyType(
    {form: number for number, name in enumerate(_DAY_NAMES) for form in (name, name[:3], name[:2])}
)
_EVERY_DAY_WORDS = frozenset({"*", "all"})
# `next_open` of a window without days (kured's `--reboot-days=""`): it never opens.
NEVER = datetime.max.replace(tzinfo=UTC)

_TIME_RE = re.compile(
    r"(?P<h>[0-9]{1,2})(?::(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2}))?)?\s*(?P<ampm>am|pm)?",
    re.IGNORECASE,
)

_ONE_SECOND = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)
# Offsets are sampled this far apart to find DST transitions; no zone has two within 3 hours.
_TRANSITION_PROBE = timedelta(hours=3)


# --- parsers ------------------------------------------------------------------------------------


def _parse_day(token: str, *, text: str) -> int:
    word = token.strip().lower()
    if word in _DAY_WORDS:
        return _DAY_WORDS[word]
    if word.isascii() and word.isdigit():
        # kured accepts Go weekday numbers: 0 = Sunday .. 6 = Saturday.
        number = int(word)
        if 0 <= number <= 6:
            return (number - 1) % 7
        raise ValueError(f"invalid day {token.strip()!r} in {text!r}: numbers run 0 (Sunday) to 6 (Saturday)")
    raise ValueError(f"invalid day {token.strip()!r} in {text!r}: {DAYS_EXPECTED}")


def parse_days(text: str) -> frozenset[int]:
    """Weekday numbers (0 = Monday .. 6 = Sunday) from kured's day list.

    Items are comma-separated; each is a day name (`su`, `sun`, `sunday`, any case), a Go weekday
    number as kured accepts (0 = Sunday .. 6 = Saturday), or a range `mo-fr` (inclusive, and
    wrapping: `fr-mo` is Friday to Monday). Empty items are skipped (kured). `*` or `all` mean
    every day; an empty string, or a list of empty items, means no day at all: kured's
    `--reboot-days=""`, its documented way to disable reboots.
    """
    raw = text.strip()
    if raw.lower() in _EVERY_DAY_WORDS:
        return ALL_DAYS
    days: set[int] = set()
    for item in raw.split(","):
        if not item.strip():
            continue
        first, sep, last = item.partition("-")
        if not sep:
            days.add(_parse_day(item, text=text))
            continue
        if not first.strip() or not last.strip():
            raise ValueError(f"invalid day range {item.strip()!r} in {text!r}: {DAYS_EXPECTED}")
        begin = _parse_day(first, text=text)
        end = _parse_day(last, text=text)
        days.update((begin + step) % 7 for step in range((end - begin) % 7 + 1))
    return frozenset(days)


def _day_runs(days: frozenset[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive days (cyclic), as (first, length), ordered by first day."""
    starts = sorted(d for d in days if (d - 1) % 7 not in days)
    for first in starts:
        length = 1
        while (first + length) % 7 in days:
            length += 1
        yield first, length


def format_days(days: Iterable[int]) -> str:
    """Short display form that `parse_days` reads back: `mon-fri`, `mon,wed,fri`, `fri-mon`,
    `mon-sun` for every day."""
    chosen = frozenset(days)
    if not chosen <= ALL_DAYS:
        raise ValueError(f"weekday numbers run 0 (Monday) to 6 (Sunday), got {sorted(chosen)}")
    if chosen == ALL_DAYS:
        return "mon-sun"
    parts: list[str] = []
    for first, length in _day_runs(chosen):
        last = (first + length - 1) % 7
        if length >= 3:
            parts.append(f"{_DAY_NAMES[first][:3]}-{_DAY_NAMES[last][:3]}")
        else:
            parts.extend(_DAY_NAMES[(first + i) % 7][:3] for i in range(length))
    return ",".join(parts)


def parse_time_of_day(text: str) -> time:
    """A wall-clock time: `HH:MM`, `HH:MM:SS`, `17`, `0:00`, or 12-hour `5pm`, `5:00pm`, `12am`
    (midnight), `12pm` (noon), `00:01am`. Hours run 0-23 (0-12 with am/pm); 24:00 and leap
    seconds are refused.
    """
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid time of day {text!r}: {TIME_EXPECTED}")
    hour = int(match["h"])
    minute = int(match["m"] or 0)
    second = int(match["s"] or 0)
    ampm = (match["ampm"] or "").lower()
    if ampm:
        if hour > 12:  # 0 is allowed, as Go's 12-hour layouts do (kured's tests use 00:01am)
            raise ValueError(f"invalid time of day {text!r}: 12-hour times run from 0 to 12 (am/pm)")
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"invalid time of day {text!r}: {TIME_EXPECTED} (00:00 to 23:59:59)")
    return time(hour, minute, second)


def _format_time(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second or value.microsecond else "%H:%M")


def _local_zone(*, environ: Mapping[str, str], localtime: Path) -> tzinfo:
    """Go's `time.Local`: TZ unset -> /etc/localtime; TZ="" -> UTC; TZ=":name" or "name" -> that
    zone, an absolute path -> that file; anything unreadable -> UTC (Go falls back silently)."""
    name = environ.get("TZ")
    try:
        if name is None:
            with localtime.open("rb") as handle:
                return ZoneInfo.from_file(handle, key="Local")
        name = name.removeprefix(":")
        if not name or name == "UTC":
            return UTC
        if name.startswith("/"):
            with Path(name).open("rb") as handle:
                return ZoneInfo.from_file(handle, key="Local")
        return ZoneInfo(name)
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return UTC


def parse_time_zone(text: str) -> tzinfo:
    """`UTC` (also empty, as in Go), `Local` (this process's zone: TZ, else /etc/localtime), or an
    IANA name looked up by zoneinfo (system database, else the tzdata package)."""
    name = text.strip()
    if name.upper() in ("", "UTC"):
        return UTC
    if name.lower() == "local":
        return _local_zone(environ=os.environ, localtime=Path("/etc/localtime"))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {text!r}: {TZ_EXPECTED}") from exc


# --- the window ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A weekly maintenance window; see the module docstring for the exact rules.

    `days` are Python weekday numbers (0 = Monday); `start`/`end` are naive wall-clock times in
    `tz`. `contains` and `next_open` take timezone-aware instants.
    """

    days: frozenset[int]
    start: time
    end: time
    tz: tzinfo

    def __post_init__(self) -> None:
        days = frozenset(self.days)
        if not days <= ALL_DAYS:
            raise ValueError(f"weekday numbers run 0 (Monday) to 6 (Sunday), got {sorted(days)}")
        object.__setattr__(self, "days", days)
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window start and end are wall-clock times; give the zone as tz")
        if self.start == self.end:
            raise ValueError(
                f"window start and end are both {_format_time(self.start)}: the window would be empty; "
                "use 00:00 to 23:59:59 for the whole day"
            )

    @classmethod
    def always(cls) -> Window:
        """Every day, all day (kured's defaults)."""
        return cls(days=ALL_DAYS, start=time(0, 0), end=time(23, 59, 59), tz=UTC)

    @property
    def wraps(self) -> bool:
        """True when an occurrence runs past midnight into the next day."""
        return self.start > self.end

    @property
    def is_always(self) -> bool:
        """True when the window never closes."""
        return self.days == ALL_DAYS and self._length() >= _ONE_DAY

    def describe(self) -> str:
        """One line for logs and `rebootd status`."""
        zone = str(self.tz)
        if not self.days:
            return "never (no reboot days)"
        if self.is_always:
            return f"any time ({zone})"
        days = "every day" if self.days == ALL_DAYS else format_days(self.days)
        text = f"{days} {_format_time(self.start)}-{_format_time(self.end)} {zone}"
        return f"{text} (each half on its own day)" if self.wraps else text

    def __str__(self) -> str:
        return self.describe()

    # -- membership ------------------------------------------------------------------------------

    def _length(self) -> timedelta:
        """Wall-clock length of one occurrence."""
        base = date(2000, 1, 3)
        opens = datetime.combine(base, self.start)
        return self._closes(base) - opens

    def _closes(self, day: date) -> datetime:
        """Naive wall-clock end (exclusive) of the occurrence starting on `day`."""
        end_day = day + _ONE_DAY if self.wraps else day
        return datetime.combine(end_day, self.end.replace(microsecond=0)) + _ONE_SECOND

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz).replace(tzinfo=None, fold=0)

    def _segments(self, day: date) -> list[tuple[datetime, datetime]]:
        """Naive wall-clock [open, close) spans of `day` itself (kured: each half of a wrapping
        window belongs to the day it falls on); none when `day` is not a window day."""
        if day.weekday() not in self.days:
            return []
        end = datetime.combine(day, self.end.replace(microsecond=0)) + _ONE_SECOND
        if not self.wraps:
            return [(datetime.combine(day, self.start), end)]
        return [
            (datetime.combine(day, time()), end),
            (datetime.combine(day, self.start), datetime.combine(day + _ONE_DAY, time())),
        ]

    def _wall_inside(self, wall: datetime) -> bool:
        return any(opens <= wall < closes for opens, closes in self._segments(wall.date()))

    def contains(self, t: datetime) -> bool:
        """Whether the aware instant `t` lies inside the window."""
        _require_aware(t)
        return self._wall_inside(self._wall(t))

    # -- next opening ----------------------------------------------------------------------------

    def _readings(self, wall: datetime) -> list[datetime]:
        """The real instants (UTC) whose wall-clock reading is `wall`: none in a gap, two in a fold."""
        found: list[datetime] = []
        for fold in (0, 1):
            instant = wall.replace(tzinfo=self.tz, fold=fold).astimezone(UTC)
            if self._wall(instant) == wall and instant not in found:
                found.append(instant)
        return found

    def _offset(self, seconds: int) -> timedelta | None:
        return datetime.fromtimestamp(seconds, UTC).astimezone(self.tz).utcoffset()

    def _transitions(self, lo: datetime, hi: datetime) -> Iterator[datetime]:
        """Instants in (lo, hi] where the zone's UTC offset changes, to the second (tzdata
        transitions fall on whole seconds)."""
        left = math.floor(lo.timestamp())
        limit = math.ceil(hi.timestamp())
        step = int(_TRANSITION_PROBE.total_seconds())
        left_offset = self._offset(left)
        while left < limit:
            right = min(left + step, limit)
            right_offset = self._offset(right)
            if right_offset != left_offset:
                a, b = left, right
                while b - a > 1:
                    mid = (a + b) // 2
                    if self._offset(mid) == left_offset:
                        a = mid
                    else:
                        b = mid
                yield datetime.fromtimestamp(b, UTC)
            left, left_offset = right, right_offset

    def _first_opening(self, t: datetime, *, first: date, last: date) -> datetime | None:
        """The earliest instant >= t inside the window among the occurrences starting on dates
        first..last and the zone transitions up to the end of that span (a transition is where an
        occurrence starting in a gap opens, or where a fold brings the clock back into one)."""
        candidates: list[datetime] = []
        day = first
        while day <= last:
            for opens, _ in self._segments(day):
                candidates.extend(self._readings(opens))
            day += _ONE_DAY
        horizon = datetime.combine(last + 2 * _ONE_DAY, time()).replace(tzinfo=self.tz)
        candidates.extend(self._transitions(t, horizon.astimezone(UTC)))
        valid = [c for c in candidates if c >= t and self.contains(c)]
        return min(valid, default=None)

    def next_open(self, t: datetime) -> datetime:
        """`t` (in UTC) if it is inside the window, else the first instant after `t` that is.

        Computed from the candidate openings of the occurrences starting on the local dates from
        the day before `t` to a week after it (no scan); only when DST skipped a whole occurrence
        (a window wholly inside a gap, or a date a zone skipped) does it look further ahead.
        """
        _require_aware(t)
        instant = t.astimezone(UTC)
        if self.contains(instant):
            return instant
        if not self.days:
            return NEVER
        today = self._wall(instant).date()
        for ahead in (7, 7 * 5):
            found = self._first_opening(instant, first=today - _ONE_DAY, last=today + timedelta(days=ahead))
            if found is not None:
                return found
        raise ValueError(f"the window {self.describe()} never opens in the five weeks after {instant}")


def _require_aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {t.isoformat()}")
