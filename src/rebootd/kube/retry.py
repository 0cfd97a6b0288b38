"""Which failed calls are retried, and after how long.

Rule: 429 (not for evictions: the drain decides), 5xx (not 500 for evictions: that is the "more
than one PodDisruptionBudget" configuration error) and transport failures (status 0) are retried;
400/403/404/409/410/422 never are. The delay is full-jitter exponential backoff, or the server's
`Retry-After` when it sends one. Pure: the random source is the caller's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rebootd.backoff import Backoff


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: `attempts` in all, full-jitter exponential backoff from `base` up to `cap`
    seconds, or the server's Retry-After (at most `max_retry_after`)."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base <= 0 or self.cap < self.base or self.max_retry_after < 0:
            raise ValueError(f"invalid retry policy {self!r}")

    @property
    def backoff_policy(self) -> Backoff:
        """The exponential back-off with full jitter these retries use (also the follower's)."""
        return Backoff(base=self.base, cap=self.cap, jitter="full")

    def backoff(self, *, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        return self.backoff_policy.delay(attempt=attempt, rng=rng)

    def delay(self, *, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt=attempt, rng=rng)


def is_retryable(*, status: int, verb: str) -> bool:
    """Status 0 is a transport failure (connection refused/reset, timeout)."""
    if status == 0:
        return True
    if status == 429:
        return verb != "evict"
    if status == 500 and verb == "evict":
        return False
    return status >= 500
