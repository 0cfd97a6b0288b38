"""The fault injector hits its configured rates, is reproducible from a seed, and keeps its
promises about writes-only conflicts, exempt clients and partitions on the injected clock."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from rebootd.emulator.faults import FAULT_KINDS, Fault, FaultConfig, FaultInjector

N = 10_000
ALPHA = 1e-6  # per checked count: the chance that a correct injector falls outside the bound


@dataclass
class ManualClock:
    """A clock that moves only when told to."""

    mono: float = 5_000.0

    def now(self) -> datetime:
        return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=self.mono)

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds


def binomial_bounds(*, n: int, p: float, alpha: float = ALPHA) -> tuple[int, int]:
    """The central (1 - alpha) interval of Binomial(n, p), computed exactly from the pmf: the
    count lies below `low` or above `high` with probability at most alpha/2 each."""
    if p <= 0.0:
        return 0, 0
    if p >= 1.0:
        return n, n
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n_fact = math.lgamma(n + 1)
    pmf = [
        math.exp(log_n_fact - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        for k in range(n + 1)
    ]
    below = 0.0
    low = 0
    for k in range(n + 1):
        if below + pmf[k] > alpha / 2:
            low = k
            break
        below += pmf[k]
    above = 0.0
    high = n
    for k in range(n, -1, -1):
        if above + pmf[k] > alpha / 2:
            high = k
            break
        above += pmf[k]
    return low, high


def test_binomial_bounds_are_tight_around_the_mean() -> None:
    low, high = binomial_bounds(n=N, p=0.05)
    sigma = math.sqrt(N * 0.05 * 0.95)
    # A 1e-6 two-sided normal interval is about +-4.9 sigma.
    assert 4.5 * sigma < 500 - low < 5.3 * sigma
    assert 4.5 * sigma < high - 500 < 5.3 * sigma
    assert binomial_bounds(n=N, p=0.0) == (0, 0)


RATES = FaultConfig(
    error500=0.03,
    error503=0.05,
    throttle429=0.07,
    retry_after_seconds=3,
    conflict409=0.1,
    latency=0.15,
    latency_seconds=0.25,
    watch_drop=0.2,
    watch_drop_after_seconds=(2.0, 4.0),
    watch_expire_on_resume=0.35,
    lost_reset=0.04,
    lost_504=0.06,
)


@pytest.mark.parametrize("seed", [1, 2, 20240601])
def test_each_fault_kind_appears_at_its_configured_rate_on_writes(seed: int) -> None:
    injector = FaultInjector(seed=seed, config=RATES)
    for i in range(N):
        injector.decide(client=f"node-{i % 7}", verb="update", write=True)
    for kind in FAULT_KINDS:
        low, high = binomial_bounds(n=N, p=getattr(RATES, kind))
        assert low <= injector.counts[kind] <= high, (kind, injector.counts[kind], low, high)


def test_reads_never_conflict_and_other_rates_are_unchanged() -> None:
    injector = FaultInjector(seed=7, config=RATES)
    for _ in range(N):
        injector.decide(client="daemon", verb="get", write=False)
    assert injector.counts["conflict409"] == 0
    assert injector.counts["lost_reset"] == injector.counts["lost_504"] == 0
    for kind in ("error500", "error503", "throttle429", "latency"):
        low, high = binomial_bounds(n=N, p=getattr(RATES, kind))
        assert low <= injector.counts[kind] <= high, (kind, injector.counts[kind], low, high)


def test_conflicts_only_on_writes_even_when_every_request_would_conflict() -> None:
    injector = FaultInjector(seed=3, config=FaultConfig(conflict409=1.0))
    assert all(injector.decide(client="c", verb="list", write=False) is None for _ in range(200))
    assert all(
        injector.decide(client="c", verb="patch", write=True) == Fault("conflict409") for _ in range(200)
    )


def test_lost_responses_only_on_writes_even_when_every_write_would_lose_its_answer() -> None:
    injector = FaultInjector(seed=3, config=FaultConfig(lost_reset=0.5, lost_504=0.5))
    assert all(injector.decide(client="c", verb="get", write=False) is None for _ in range(200))
    kinds = [injector.decide(client="c", verb="patch", write=True) for _ in range(2000)]
    assert all(fault is not None and fault.lost for fault in kinds)
    low, high = binomial_bounds(n=2000, p=0.5)
    assert low <= injector.counts["lost_reset"] <= high
    assert injector.counts["lost_reset"] + injector.counts["lost_504"] == 2000


def test_adding_lost_responses_leaves_a_seeds_other_faults_unchanged() -> None:
    """The lost-response intervals come after the older kinds: a draw that hit an older kind hits
    it still, so an older seed's faults are a subset of the same seed's faults now."""
    base = FaultConfig(error500=0.05, error503=0.05, throttle429=0.05, conflict409=0.1, latency=0.1)
    before = FaultInjector(seed=11, config=base)
    after = FaultInjector(seed=11, config=replace(base, lost_reset=0.1, lost_504=0.1))
    for _ in range(N):
        old = before.decide(client="node-1", verb="update", write=True)
        new = after.decide(client="node-1", verb="update", write=True)
        assert new == old or (old is None and new is not None and new.lost)
    assert after.counts["lost_reset"] > 0
    assert after.counts["lost_504"] > 0


def test_only_the_lost_kinds_are_lost() -> None:
    assert {kind for kind in FAULT_KINDS if Fault(kind).lost} == {"lost_reset", "lost_504"}


def test_fault_details_carry_retry_after_and_delay() -> None:
    throttled = FaultInjector(seed=1, config=FaultConfig(throttle429=1.0, retry_after_seconds=4))
    assert throttled.decide(client="c", verb="get", write=False) == Fault("throttle429", retry_after=4)
    slow = FaultInjector(seed=1, config=FaultConfig(latency=1.0, latency_seconds=0.3))
    assert slow.decide(client="c", verb="get", write=False) == Fault("latency", delay=0.3)
    broken = FaultInjector(seed=1, config=FaultConfig(error503=1.0))
    assert broken.decide(client="c", verb="get", write=False) == Fault(
        "error503", retry_after=None, delay=0.0
    )


def test_no_faults_with_the_none_preset() -> None:
    injector = FaultInjector(seed=1, config=FaultConfig.preset("none"))
    assert all(injector.decide(client="c", verb="update", write=True) is None for _ in range(1000))
    assert all(injector.watch_drop_after(client="c") is None for _ in range(100))
    assert not any(injector.expire_on_resume(client="c") for _ in range(100))
    assert sum(injector.counts.values()) == 0


def test_watch_drops_and_expiries_follow_their_rates_and_range() -> None:
    injector = FaultInjector(seed=11, config=RATES)
    drops = [injector.watch_drop_after(client=f"w{i % 3}") for i in range(N)]
    expiries = [injector.expire_on_resume(client=f"w{i % 3}") for i in range(N)]
    cut = [d for d in drops if d is not None]
    low, high = binomial_bounds(n=N, p=RATES.watch_drop)
    assert low <= len(cut) <= high
    assert all(2.0 <= d <= 4.0 for d in cut)
    assert max(cut) - min(cut) > 1.5  # drawn across the range, not a constant
    low, high = binomial_bounds(n=N, p=RATES.watch_expire_on_resume)
    assert low <= sum(expiries) <= high
    assert injector.counts["watch_drop"] == len(cut)
    assert injector.counts["watch_expire_on_resume"] == sum(expiries)


def _sequence(injector: FaultInjector, client: str, count: int) -> list[Fault | None]:
    return [injector.decide(client=client, verb="update", write=True) for _ in range(count)]


def test_same_seed_gives_the_same_fault_sequence() -> None:
    config = FaultConfig.preset("heavy")
    first = _sequence(FaultInjector(seed=42, config=config), "node-a", 500)
    second = _sequence(FaultInjector(seed=42, config=config), "node-a", 500)
    other_seed = _sequence(FaultInjector(seed=43, config=config), "node-a", 500)
    assert first == second
    assert first != other_seed
    assert sum(f is not None for f in first) > 100  # heavy means heavy


def test_a_clients_faults_do_not_depend_on_other_clients_interleaving() -> None:
    config = FaultConfig.preset("heavy")
    alone = FaultInjector(seed=5, config=config)
    expected = _sequence(alone, "node-a", 300)
    busy = FaultInjector(seed=5, config=config)
    seen: list[Fault | None] = []
    for i in range(300):
        for _ in range(i % 4):
            busy.decide(client="node-b", verb="get", write=False)
            busy.watch_drop_after(client="node-a")  # other streams of the same client too
        seen.append(busy.decide(client="node-a", verb="update", write=True))
    assert seen == expected


def test_exempt_clients_never_fault_and_do_not_shift_others() -> None:
    config = FaultConfig(error500=0.5, error503=0.5, watch_drop=1.0, watch_expire_on_resume=1.0)
    injector = FaultInjector(seed=9, config=config)
    injector.exempt(client="harness")
    for _ in range(1000):
        assert injector.decide(client="harness", verb="update", write=True) is None
    assert injector.watch_drop_after(client="harness") is None
    assert injector.expire_on_resume(client="harness") is False
    assert sum(injector.counts.values()) == 0
    reference = FaultInjector(seed=9, config=config)
    assert _sequence(injector, "node-a", 100) == _sequence(reference, "node-a", 100)


def test_partition_expires_on_the_injected_clock() -> None:
    clock = ManualClock()
    injector = FaultInjector(seed=1, config=FaultConfig(), clock=clock)
    assert not injector.is_partitioned(client="node-a")
    injector.partition(client="node-a", seconds=5.0)
    assert injector.is_partitioned(client="node-a")
    assert not injector.is_partitioned(client="node-b")
    clock.advance(4.9)
    assert injector.is_partitioned(client="node-a")
    clock.advance(0.1)
    assert not injector.is_partitioned(client="node-a")


def test_partition_extends_but_never_shortens_and_heal_ends_it() -> None:
    clock = ManualClock()
    injector = FaultInjector(seed=1, config=FaultConfig(), clock=clock)
    injector.partition(client="n", seconds=10.0)
    clock.advance(2.0)
    injector.partition(client="n", seconds=1.0)  # would end at 3.0: the longer one stands
    clock.advance(5.0)
    assert injector.is_partitioned(client="n")
    injector.partition(client="n", seconds=20.0)
    clock.advance(10.0)
    assert injector.is_partitioned(client="n")
    injector.heal(client="n")
    assert not injector.is_partitioned(client="n")


def test_exempt_clients_are_never_partitioned() -> None:
    clock = ManualClock()
    injector = FaultInjector(seed=1, config=FaultConfig(), clock=clock)
    injector.partition(client="harness", seconds=30.0)
    injector.exempt(client="harness")
    assert not injector.is_partitioned(client="harness")
    injector.partition(client="harness", seconds=30.0)
    assert not injector.is_partitioned(client="harness")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error500": -0.1}, "error500 must be a probability"),
        ({"latency": 1.5}, "latency must be a probability"),
        ({"watch_drop": math.nan}, "watch_drop must be a probability"),
        ({"watch_expire_on_resume": 2.0}, "watch_expire_on_resume must be a probability"),
        ({"error500": 0.6, "latency": 0.5}, "sum to 1.1"),
        ({"retry_after_seconds": 0}, "retry_after_seconds must be >= 1"),
        ({"latency_seconds": -1.0}, "latency_seconds must be >= 0"),
        ({"watch_drop_after_seconds": (5.0, 1.0)}, "watch_drop_after_seconds"),
    ],
)
def test_fault_config_rejects_out_of_range_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_presets_are_valid_and_ordered_by_severity() -> None:
    none, light, heavy = (FaultConfig.preset(name) for name in ("none", "light", "heavy"))
    for kind in (*FAULT_KINDS, "watch_drop", "watch_expire_on_resume"):
        assert getattr(none, kind) == 0.0
        assert 0.0 < getattr(light, kind) < getattr(heavy, kind) <= 1.0
    with pytest.raises(ValueError, match="unknown fault preset"):
        FaultConfig.preset("apocalypse")  # type: ignore[arg-type]


def test_partition_rejects_non_positive_durations() -> None:
    injector = FaultInjector(seed=1, config=FaultConfig(), clock=ManualClock())
    with pytest.raises(ValueError, match="must be > 0"):
        injector.partition(client="n", seconds=0.0)


def test_counts_is_a_read_only_snapshot() -> None:
    injector = FaultInjector(seed=1, config=FaultConfig(error500=1.0))
    before = injector.counts
    injector.decide(client="c", verb="get", write=False)
    assert before["error500"] == 0
    assert injector.counts["error500"] == 1
    with pytest.raises(TypeError):
        before["error500"] = 5  # type: ignore[index]
