"""Injected time: every component that reads the time takes a `Clock`.

Rule: wall-clock time (`now`) is only for the maintenance window, timestamps written to the API
and display; durations, timeouts and staleness use `monotonic` (never compare another machine's
timestamps with the local clock). Tests and the simulator pass their own clock; production code
uses `SystemClock`. A leaf module: it imports nothing of rebootd.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock, for durations only."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class OffsetClock:
    """Real monotonic time, wall-clock shifted by a fixed offset (clock skew in chaos tests) and
    optionally started at another instant (a simulated calendar) that then advances in real time,
    `speed` times as fast."""

    offset: timedelta = timedelta(0)
    start_at: datetime | None = None
    speed: float = 1.0
    _origin_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    _origin_mono: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        base = self.start_at if self.start_at is not None else self._origin_wall
        elapsed = (time.monotonic() - self._origin_mono) * self.speed
        return base + timedelta(seconds=elapsed) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()
