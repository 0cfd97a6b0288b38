"""The one back-off formula: exponential from `base`, capped, with each jitter in its range."""

from __future__ import annotations

import random

import pytest

from rebootd.backoff import Backoff, decorrelated, exponential, scaled, spread


def test_exponential_doubles_from_base_and_stops_at_the_cap() -> None:
    delays = [exponential(attempt=n, base=0.2, cap=5.0) for n in range(1, 9)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_exponential_counts_attempts_below_one_as_the_first() -> None:
    assert exponential(attempt=0, base=0.5, cap=30.0) == exponential(attempt=-3, base=0.5, cap=30.0) == 0.5


def test_a_cap_below_the_base_caps_every_delay() -> None:
    assert [exponential(attempt=n, base=10.0, cap=3.0) for n in (1, 2, 9)] == [3.0, 3.0, 3.0]


def test_exponential_never_overflows_for_a_huge_attempt() -> None:
    assert exponential(attempt=10**6, base=0.05, cap=2.0) == 2.0
    assert exponential(attempt=10**6, base=1.0, cap=1.0, factor=3.0) == 1.0


@pytest.mark.parametrize(
    ("base", "cap", "factor"), [(0.0, 1.0, 2.0), (-1.0, 1.0, 2.0), (1.0, 0.0, 2.0), (1.0, 2.0, 0.5)]
)
def test_exponential_refuses_a_meaningless_policy(base: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="invalid back-off"):
        exponential(attempt=1, base=base, cap=cap, factor=factor)


def test_full_jitter_stays_between_zero_and_the_exponential_delay() -> None:
    policy = Backoff(base=0.2, cap=5.0, jitter="full")
    rng = random.Random(1)  # noqa: S311 - seeded test jitter, not crypto
    for attempt in range(1, 12):
        draws = [policy.delay(attempt=attempt, rng=rng) for _ in range(200)]
        ceiling = exponential(attempt=attempt, base=0.2, cap=5.0)
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.8 * ceiling  # spread over the range, not stuck low


def test_scaled_jitter_stays_within_its_share_of_the_exponential_delay() -> None:
    policy = Backoff(base=1.0, cap=60.0, jitter="scaled", low=0.8, high=1.2)
    rng = random.Random(2)  # noqa: S311 - seeded test jitter, not crypto
    draws = [policy.delay(attempt=3, rng=rng) for _ in range(200)]
    assert all(3.2 <= d <= 4.8 for d in draws)


def test_no_jitter_is_exact_and_needs_no_random_source() -> None:
    assert Backoff(base=0.5, cap=30.0, jitter="none").delay(attempt=4) == 4.0


def test_a_jittered_delay_without_a_random_source_is_refused() -> None:
    with pytest.raises(ValueError, match="random source"):
        Backoff(base=0.5, cap=30.0).delay(attempt=1)


def test_an_inverted_jitter_range_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter range"):
        Backoff(base=0.5, cap=30.0, jitter="scaled", low=1.2, high=0.8)


def test_decorrelated_jitter_grows_from_the_previous_delay_within_base_and_cap() -> None:
    rng = random.Random(3)  # noqa: S311 - seeded test jitter, not crypto
    previous = 0.0
    for _ in range(100):
        delay = decorrelated(previous=previous, base=0.1, cap=2.0, rng=rng)
        assert 0.1 <= delay <= min(2.0, 3 * max(0.1, previous))
        previous = delay


def test_spread_is_a_point_between_zero_and_its_seconds_and_zero_for_none() -> None:
    rng = random.Random(4)  # noqa: S311 - seeded test jitter, not crypto
    draws = [spread(seconds=2.0, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= 2.0 for d in draws)
    assert max(draws) > 1.5
    assert spread(seconds=0.0, rng=rng) == spread(seconds=-1.0, rng=rng) == 0.0


def test_scaled_spreads_an_interval_around_its_mean_within_its_range() -> None:
    rng = random.Random(5)  # noqa: S311 - seeded test jitter, not crypto
    draws = [scaled(seconds=10.0, low=0.5, high=1.5, rng=rng) for _ in range(200)]
    assert all(5.0 <= d <= 15.0 for d in draws)
    assert min(draws) < 6.0
    assert max(draws) > 14.0
    with pytest.raises(ValueError, match="jitter range"):
        scaled(seconds=10.0, low=1.5, high=0.5, rng=rng)
