"""Back-off delays: the one home of rebootd's exponential formula and its jitter.

Rule: every retry delay in rebootd is `Backoff.delay(attempt=N, rng=...)` (pure: the random
source is injected, nothing sleeps here). Attempt 1 is the first retry and waits about `base`
seconds; each further attempt doubles it (`factor`) up to `cap`. The jitter spreads the daemons
of a cluster that failed together (an apiserver restart) so they do not come back in step:

- `full`: uniform in [0, d] (AWS's "full jitter"; the API retries, lock write retries).
- `scaled`: d times uniform in [`low`, `high`] (e.g. 0.5-1.0: never much shorter than planned).
- `none`: exactly d (a wait whose length is part of a tested contract, or a single waiter).

`decorrelated` (AWS's "decorrelated jitter", each delay drawn from the previous one) is the
other formula; it needs the previous delay, so it is a function of its own. `spread` is the jitter
alone: a random point in [0, seconds], for many daemons' first move after the same event.

stamina was weighed and not taken: it owns the sleeping (wall clock, no stop event) and the
exception matching, where rebootd needs the delay alone, on an injected clock, interruptible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["Backoff", "Jitter", "decorrelated", "exponential", "scaled", "spread"]

Jitter = Literal["full", "scaled", "none"]


def exponential(*, attempt: int, base: float, cap: float, factor: float = 2.0) -> float:
    """`base * factor**(attempt-1)`, at most `cap` (attempt < 1 counts as 1; a cap below the
    base caps the first delay too); never overflows."""
    if not (math.isfinite(base) and base > 0 and cap > 0 and factor >= 1):
        raise ValueError(f"invalid back-off base={base!r} cap={cap!r} factor={factor!r}")
    steps = max(0, attempt - 1)
    if cap <= base:
        return cap
    if factor == 1 or steps == 0:
        return base
    # past this many doublings the cap is reached anyway: no float overflow for a huge attempt
    if steps >= math.log(cap / base, factor) + 1:
        return cap
    return min(cap, base * factor**steps)


def decorrelated(*, previous: float, base: float, cap: float, rng: random.Random) -> float:
    """Decorrelated jitter: uniform in [base, 3 * previous], at most `cap` (previous < base counts
    as base, so the first call may pass 0)."""
    if not (base > 0 and cap > 0):
        raise ValueError(f"invalid back-off base={base!r} cap={cap!r}")
    return min(cap, rng.uniform(base, 3 * max(base, previous)))


def spread(*, seconds: float, rng: random.Random) -> float:
    """Uniform in [0, seconds] (0 for seconds <= 0)."""
    return rng.uniform(0.0, seconds) if seconds > 0 else 0.0


def scaled(*, seconds: float, low: float, high: float, rng: random.Random) -> float:
    """`seconds` times a factor uniform in [low, high]: an interval spread around its mean, so
    that processes started together do not act in step."""
    if not 0 <= low <= high:
        raise ValueError(f"invalid jitter range [{low!r}, {high!r}]")
    return seconds * rng.uniform(low, high)


@dataclass(frozen=True)
class Backoff:
    """An exponential back-off with a cap and a jitter (see the module rule)."""

    base: float
    cap: float
    factor: float = 2.0
    jitter: Jitter = "full"
    low: float = 0.5  # the `scaled` jitter's range
    high: float = 1.0

    def __post_init__(self) -> None:
        exponential(attempt=1, base=self.base, cap=self.cap, factor=self.factor)  # validates
        if not 0 <= self.low <= self.high:
            raise ValueError(f"invalid jitter range [{self.low!r}, {self.high!r}]")

    def ceiling(self, *, attempt: int) -> float:
        """The delay before jitter."""
        return exponential(attempt=attempt, base=self.base, cap=self.cap, factor=self.factor)

    def delay(self, *, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number `attempt` (1 = the first retry). `rng` is needed unless
        the jitter is `none`."""
        ceiling = self.ceiling(attempt=attempt)
        if self.jitter == "none":
            return ceiling
        if rng is None:
            raise ValueError(f"a {self.jitter} jitter needs a random source")
        if self.jitter == "full":
            return rng.uniform(0.0, ceiling)
        return ceiling * rng.uniform(self.low, self.high)
