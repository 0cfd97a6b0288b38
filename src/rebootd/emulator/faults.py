"""Seeded fault injection for the API emulator and the chaos suite.

Rule: every fault comes from a seeded `random.Random`, never from the global RNG, so a seed
reproduces a run. Each client gets its own streams (one for request faults, one for watch drops,
one for watch expiry), derived from the seed and the client name: a client's sequence of faults
depends only on the seed and on that client's own sequence of calls, not on how the concurrent
clients happened to interleave. Partitions are measured on an injected monotonic clock.

Request faults are drawn with ONE uniform number per decision against disjoint intervals laid out
in a fixed order (500, 503, 429, 409, latency, lost response by reset, lost response by 504), so
each kind occurs with exactly its configured probability; that is why the request rates must sum
to at most 1. A read that lands in the 409 or a lost-response interval gets no fault (those are
for writes only) rather than shifting the other kinds' rates. The lost-response kinds come last,
so adding them leaves every earlier kind's interval, and so a seed's other faults, unchanged.

A lost response (`lost_reset`, `lost_504`) is a write the server APPLIES whose answer never
reaches the client: the connection is reset, or a proxy answers 504 Gateway Timeout. The client
cannot tell it from a write that never happened; a retry meets its own earlier write.
An exempt client (the test harness itself) never gets a fault, is never partitioned and consumes
no random numbers, so adding harness calls does not change the faults the daemons see.

A test that picks the very write to lose (a Hypothesis state machine) arms it with `lose_next`:
that client's next write is applied and its answer lost, whatever the rates say, and no random
number is drawn for it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Literal

from rebootd.clock import Clock, SystemClock

__all__ = ["FAULT_KINDS", "LOST_KINDS", "Fault", "FaultConfig", "FaultInjector", "FaultKind"]

FaultKind = Literal["error500", "error503", "throttle429", "conflict409", "latency", "lost_reset", "lost_504"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "error500",
    "error503",
    "throttle429",
    "conflict409",
    "latency",
    "lost_reset",
    "lost_504",
)
LOST_KINDS: frozenset[FaultKind] = frozenset({"lost_reset", "lost_504"})
_WRITE_ONLY: frozenset[FaultKind] = frozenset({"conflict409", *LOST_KINDS})
_REQUEST_RATES: tuple[FaultKind, ...] = FAULT_KINDS
_WATCH_COUNTERS = ("watch_drop", "watch_expire_on_resume", "watch_end_at_once")


@dataclass(frozen=True)
class FaultConfig:
    """Fault probabilities in [0, 1] per request (or per watch for the watch_* rates)."""

    error500: float = 0.0
    error503: float = 0.0
    throttle429: float = 0.0
    retry_after_seconds: int = 1
    conflict409: float = 0.0
    latency: float = 0.0
    latency_seconds: float = 0.05
    watch_drop: float = 0.0
    watch_drop_after_seconds: tuple[float, float] = (1.0, 30.0)
    watch_expire_on_resume: float = 0.0
    # a watch the server ends cleanly at once, no event sent (a proxy closing streams, an apiserver
    # going away): a client that resumes at once without a back-off spins on the API
    watch_end_at_once: float = 0.0
    lost_reset: float = 0.0  # a write applied, then the connection reset before the answer
    lost_504: float = 0.0  # a write applied, then 504 Gateway Timeout instead of the answer

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in (*_REQUEST_RATES, *_WATCH_COUNTERS) and not (
                isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0
            ):
                raise ValueError(f"{f.name} must be a probability in [0, 1], got {value!r}")
        total = sum(getattr(self, name) for name in _REQUEST_RATES)
        if total > 1.0 + 1e-12:
            raise ValueError(
                f"request fault rates ({', '.join(_REQUEST_RATES)}) sum to {total:g}; they must sum to <= 1"
            )
        if self.retry_after_seconds < 1:
            raise ValueError(f"retry_after_seconds must be >= 1, got {self.retry_after_seconds!r}")
        if not (math.isfinite(self.latency_seconds) and self.latency_seconds >= 0):
            raise ValueError(f"latency_seconds must be >= 0, got {self.latency_seconds!r}")
        low, high = self.watch_drop_after_seconds
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError(
                f"watch_drop_after_seconds must be (low, high) with 0 <= low <= high, got {(low, high)!r}"
            )

    @classmethod
    def preset(cls, name: Literal["none", "light", "heavy"]) -> FaultConfig:
        """`none`: no faults. `light`: what a busy but healthy control plane does now and then.
        `heavy`: a control plane in trouble (half of all requests hit something)."""
        if name == "none":
            return cls()
        if name == "light":
            return cls(
                error500=0.005,
                error503=0.005,
                throttle429=0.01,
                conflict409=0.02,
                latency=0.05,
                latency_seconds=0.05,
                watch_drop=0.05,
                watch_drop_after_seconds=(1.0, 30.0),
                watch_expire_on_resume=0.1,
                lost_reset=0.002,
                lost_504=0.002,
            )
        if name == "heavy":
            return cls(
                error500=0.05,
                error503=0.05,
                throttle429=0.1,
                conflict409=0.1,
                latency=0.2,
                latency_seconds=0.2,
                watch_drop=0.3,
                watch_drop_after_seconds=(0.5, 10.0),
                watch_expire_on_resume=0.5,
                lost_reset=0.02,
                lost_504=0.02,
            )
        raise ValueError(f"unknown fault preset {name!r}; expected none, light or heavy")


@dataclass(frozen=True)
class Fault:
    """What the emulator does to one request instead of (error kinds) or before (latency)
    serving it. `retry_after` is set for 429 (the Retry-After header); `delay` for latency."""

    kind: FaultKind
    retry_after: int | None = None
    delay: float = 0.0

    @property
    def lost(self) -> bool:
        """The write is applied and its response lost (reset or 504), not refused."""
        return self.kind in LOST_KINDS


class FaultInjector:
    """Decides, per client and request, whether and how to misbehave."""

    def __init__(self, *, seed: int, config: FaultConfig, clock: Clock | None = None) -> None:
        self._seed = seed
        self._config = config
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._streams: dict[tuple[str, str], random.Random] = {}
        self._partitioned_until: dict[str, float] = {}
        self._exempt: set[str] = set()
        self._armed: dict[str, FaultKind] = {}  # client -> the lost-response kind of its next write
        self._counts: dict[str, int] = dict.fromkeys((*FAULT_KINDS, *_WATCH_COUNTERS), 0)

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def counts(self) -> Mapping[str, int]:
        """Faults injected so far per kind (plus the watch faults); a snapshot."""
        return MappingProxyType(dict(self._counts))

    def _stream(self, client: str, purpose: str) -> random.Random:
        key = (client, purpose)
        stream = self._streams.get(key)
        if stream is None:
            # A str seed is hashed with SHA-512 by random.Random: stable across processes and
            # independent of PYTHONHASHSEED.
            stream = random.Random(f"{self._seed}\x00{client}\x00{purpose}")  # noqa: S311 - simulation, not crypto
            self._streams[key] = stream
        return stream

    def exempt(self, *, client: str) -> None:
        """`client` never gets faults from now on (the test harness, an operator command)."""
        self._exempt.add(client)
        self._partitioned_until.pop(client, None)

    def lose_next(self, *, client: str, kind: FaultKind = "lost_reset") -> None:
        """`client`'s next write is applied and its answer lost (`kind`: a lost-response kind);
        once, drawing no random number. Ignored for an exempt client."""
        if kind not in LOST_KINDS:
            raise ValueError(f"{kind!r} is not a lost-response kind ({', '.join(sorted(LOST_KINDS))})")
        if client not in self._exempt:
            self._armed[client] = kind

    def decide(self, *, client: str, verb: str, write: bool) -> Fault | None:
        """The fault for this request, or None to serve it normally. `verb` is recorded for
        symmetry with the API (get, list, watch, create, update, patch, delete); only `write`
        changes the outcome. A lost-response fault is returned BEFORE the write is served: the
        server applies the write and then loses its answer."""
        del verb  # the kinds do not depend on the verb beyond `write`
        if client in self._exempt:
            return None
        if write and client in self._armed:
            kind = self._armed.pop(client)
            self._counts[kind] += 1
            return Fault(kind)
        draw = self._stream(client, "decide").random()
        config = self._config
        edge = 0.0
        for kind in _REQUEST_RATES:
            edge += getattr(config, kind)
            if draw < edge:
                if kind in _WRITE_ONLY and not write:
                    return None
                self._counts[kind] += 1
                if kind == "throttle429":
                    return Fault(kind, retry_after=config.retry_after_seconds)
                if kind == "latency":
                    return Fault(kind, delay=config.latency_seconds)
                return Fault(kind)
        return None

    def watch_drop_after(self, *, client: str) -> float | None:
        """Seconds after which to cut a newly started watch stream, or None to leave it alone.
        Called once per watch."""
        if client in self._exempt:
            return None
        stream = self._stream(client, "watch_drop")
        if stream.random() >= self._config.watch_drop:
            return None
        low, high = self._config.watch_drop_after_seconds
        self._counts["watch_drop"] += 1
        return stream.uniform(low, high)

    def expire_on_resume(self, *, client: str) -> bool:
        """Whether a watch started from a resourceVersion gets `410 Expired` instead of events.
        Called once per such watch."""
        if client in self._exempt:
            return False
        if self._stream(client, "expire").random() >= self._config.watch_expire_on_resume:
            return False
        self._counts["watch_expire_on_resume"] += 1
        return True

    def end_watch_at_once(self, *, client: str) -> bool:
        """Whether a watch is ended cleanly at once, with no event. Called once per watch."""
        if client in self._exempt:
            return False
        if self._stream(client, "end_at_once").random() >= self._config.watch_end_at_once:
            return False
        self._counts["watch_end_at_once"] += 1
        return True

    def partition(self, *, client: str, seconds: float) -> None:
        """Cut `client` off the API for `seconds` on the injected monotonic clock (extends, never
        shortens, a running partition). No effect on an exempt client."""
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"partition seconds must be > 0, got {seconds!r}")
        if client in self._exempt:
            return
        until = self._clock.monotonic() + seconds
        self._partitioned_until[client] = max(until, self._partitioned_until.get(client, until))

    def heal(self, *, client: str) -> None:
        """End `client`'s partition now."""
        self._partitioned_until.pop(client, None)

    def is_partitioned(self, *, client: str) -> bool:
        until = self._partitioned_until.get(client)
        if until is None:
            return False
        if self._clock.monotonic() >= until:
            del self._partitioned_until[client]
            return False
        return True
