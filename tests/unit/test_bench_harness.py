"""The benchmark's own arithmetic: hand-off pairing and write counting, per-hour extrapolation,
judging figures, and parsing /proc and `-X importtime` output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from bench.imports import parse_importtime
from bench.procfs import parse_cpu_seconds, parse_status
from bench.simulated import lease_waiters, measured_handoffs, queue_formed_at
from bench.stats import Figure, Request, handoff_costs, pair_handoffs, per_hour, render_table, slope

from rebootd.emulator.history import HistoryRecord

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_each_release_is_paired_with_the_next_start_oldest_release_first() -> None:
    pairs = pair_handoffs(releases=[10.0, 20.0, 21.0], starts=[5.0, 10.5, 25.0, 26.0])
    # the start at 5.0 came before any release: the first holder, not a hand-off
    assert pairs == [(10.0, 10.5), (20.0, 25.0), (21.0, 26.0)]


def test_a_release_without_a_later_start_is_no_hand_off() -> None:
    assert pair_handoffs(releases=[10.0, 30.0], starts=[12.0]) == [(10.0, 12.0)]


def request(at: float, verb: str, resource: str = "nodes", client: str = "rebootd@n1") -> Request:
    return Request(at=at, client=client, verb=verb, resource=resource)


def test_hand_off_writes_count_the_window_the_release_and_lease_writes_apart() -> None:
    requests = [
        request(9.9, "update", "leases", "rebootd@n0"),  # the release itself, arrived before its commit
        request(10.1, "get", "leases", "rebootd@n1"),  # a read: not a write
        request(10.2, "update", "leases", "rebootd@n1"),  # acquire
        request(10.3, "update", "leases", "rebootd@n2"),  # a refused attempt (409) still counts
        request(10.4, "patch", "nodes", "rebootd@n1"),  # mark
        request(10.5, "patch", "nodes", "rebootd@n1"),  # the cordon, committed at 10.6
        request(10.7, "create", "events", "rebootd@n1"),  # after the cordon: not this hand-off
    ]
    [cost] = handoff_costs(requests=requests, pairs=[(10.0, 10.6)], waiters=[2], lease_commits=[10.0, 10.25])
    assert cost.writes == 1 + 4
    assert cost.lease_writes == 1 + 2
    assert cost.lease_committed == 1 + 1
    assert cost.other_writes == 2
    assert cost.by_client == {"rebootd@n1": 3, "rebootd@n2": 1}
    assert cost.waiters == 2
    assert cost.gap == pytest.approx(0.6)


def test_an_eviction_is_a_write() -> None:
    assert Request(at=0.0, client="c", verb="create", resource="pods", subresource="eviction").is_write


def test_per_hour_extrapolates_a_scaled_window() -> None:
    # 10 requests in 10 real seconds standing for 600 daemon seconds: 60 an hour
    assert per_hour(10, seconds=10, scale=60) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="must be > 0"):
        per_hour(1, seconds=0)


def test_slope_is_zero_when_flat_and_none_without_two_x_values() -> None:
    assert slope([(1, 5), (10, 5), (100, 5)]) == pytest.approx(0.0)
    assert slope([(1, 7), (10, 25), (100, 205)]) == pytest.approx(2.0)
    assert slope([(5, 1), (5, 2)]) is None


def test_a_figure_passes_its_target_fails_it_or_is_a_figure_only() -> None:
    rss = Figure(key="rss", label="rss", value=55.0, unit="MiB", op="<=", limit=64.0, stretch=50.0)
    assert rss.passed is True
    assert rss.stretch_met is False
    assert rss.verdict == "pass"
    assert Figure(key="g", label="g", value=1.0, unit="s", op="<", limit=1.0).passed is False
    assert Figure(key="n", label="n", value=0.0, unit="", op="<=", limit=0.0).passed is True
    missing = Figure(key="m", label="m", value=None, unit="", op="<=", limit=1.0)
    assert missing.passed is False
    assert missing.verdict == "FAIL (not measured)"
    info = Figure(key="i", label="i", value=3.0, unit="req/s")
    assert info.passed is None
    assert info.target == "figure only"


def test_the_table_shows_every_figure_with_its_target_and_verdict() -> None:
    table = render_table(
        [
            Figure(key="a", label="daemon RSS", value=49.5, unit="MiB", op="<=", limit=64, stretch=50),
            Figure(key="b", label="gap p99", value=1.5, unit="s", op="<", limit=1.0, note="slow"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["figure", "target"]
    assert "daemon RSS" in lines[2]
    assert "<= 64 (stretch 50)" in lines[2]
    assert "49.5 MiB" in lines[2]
    assert "pass (stretch)" in lines[2]
    assert lines[3].split()[-2:] == ["FAIL", "slow"]


def test_proc_status_fields_are_read_in_bytes() -> None:
    text = "Name:\trebootd\nVmHWM:\t   58004 kB\nVmRSS:\t   55940 kB\nThreads:\t3\n"
    assert parse_status(text) == {"VmHWM": 58004 * 1024, "VmRSS": 55940 * 1024}


def test_cpu_seconds_survive_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]  # state, ..., utime (14), stime (15)
    stat = "4242 (reb (oo) td) " + " ".join(fields)
    assert parse_cpu_seconds(stat, ticks_per_second=100) == pytest.approx(3.0)


def test_import_time_is_summed_per_top_level_package() -> None:
    text = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     aiohttp.http",
            "import time:       250 |        350 |   aiohttp",
            "import time:        40 |         40 | rebootd.kube",
        ]
    )
    assert parse_importtime(text) == {"aiohttp": 350, "rebootd": 40}


def lease_write(at: float, *, holders: list[str], waiters: list[str], client: str) -> HistoryRecord:
    state = {
        "version": 1,
        "holders": {n: {"zone": "z", "phase": "draining"} for n in holders},
        "waiters": {n: {"zone": "z", "ticket": i} for i, n in enumerate(waiters, 1)},
    }
    return HistoryRecord(
        monotonic=at,
        time=T0,
        event="write",
        client=client,
        verb="update",
        kind="Lease",
        namespace="kube-system",
        name="rebootd",
        detail=json.dumps(state),
    )


def cordon(at: float, node: str) -> HistoryRecord:
    return HistoryRecord(
        monotonic=at,
        time=T0,
        event="write",
        client=f"rebootd@{node}",
        verb="patch",
        kind="Node",
        namespace="",
        name=node,
        unschedulable_before=False,
        unschedulable_after=True,
    )


def test_hand_offs_are_read_from_the_history_with_the_waiters_left_at_each_release() -> None:
    history = [
        lease_write(1.0, holders=["a"], waiters=[], client="rebootd@a"),
        cordon(1.1, "a"),
        lease_write(1.2, holders=["a"], waiters=["b", "c"], client="rebootd@b"),
        lease_write(5.0, holders=[], waiters=["b", "c"], client="rebootd@a"),  # a releases
        lease_write(5.1, holders=["b"], waiters=["c"], client="rebootd@b"),
        cordon(5.3, "b"),
        lease_write(9.0, holders=[], waiters=["c"], client="rebootd@b"),  # b releases
        lease_write(9.1, holders=["c"], waiters=[], client="rebootd@c"),
        cordon(9.2, "c"),
    ]
    requests = [
        Request(at=4.99, client="rebootd@a", verb="update", resource="leases"),
        Request(at=5.05, client="rebootd@b", verb="update", resource="leases"),
        Request(at=5.2, client="rebootd@b", verb="patch", resource="nodes"),
        Request(at=5.25, client="rebootd@b", verb="patch", resource="nodes"),
    ]
    first, second = measured_handoffs(history=history, requests=requests, needed=["a", "b", "c"])
    assert (first.waiters, second.waiters) == (2, 1)
    assert first.gap == pytest.approx(0.3)
    assert first.writes == 4  # the release, the acquire, two node patches
    assert first.lease_writes == 2
    assert first.lease_committed == 2
    assert queue_formed_at(history, needed=["a", "b", "c"]) == 1.2
    assert queue_formed_at(history, needed=["a", "b", "c", "d"]) is None


def queue_record(at: float, node: str, *, queued: bool) -> HistoryRecord:
    """A Node write as the history records it: `detail` is its queue record after the write."""
    return HistoryRecord(
        monotonic=at,
        time=T0,
        event="write",
        client=f"rebootd@{node}",
        verb="patch",
        kind="Node",
        namespace="",
        name=node,
        detail='{"since":"2026-12-06T10:00:00.000000Z","zone":"z"}' if queued else "",
    )


def test_under_lock_format_3_the_waiters_are_the_head_and_the_queue_records_on_the_nodes() -> None:
    """As `rebootd status` reads the queue: the Lease names only the head; the rest of the
    queue is the Nodes' queue records."""
    history = [
        *(queue_record(0.1 * i, n, queued=True) for i, n in enumerate("abcde", 1)),
        lease_write(1.0, holders=["a"], waiters=["b", "c"], client="rebootd@a"),
        queue_record(5.0, "a", queued=False),  # a's release clears its record...
        lease_write(5.1, holders=[], waiters=["b", "c"], client="rebootd@a"),  # ...and its slot
        lease_write(5.2, holders=["b"], waiters=["c", "d"], client="rebootd@b"),
    ]
    assert list(lease_waiters(history).values()) == [4, 4, 3]
    assert queue_formed_at(history, needed=list("abcde")) == pytest.approx(0.5), "e never in the Lease"


def test_the_scale_growth_exponent_is_the_log_log_slope() -> None:
    from bench.scale import growth, node_name

    assert growth([(100, 5.0), (1000, 50.0), (10000, 500.0)]) == pytest.approx(1.0)
    assert growth([(100, 7.0), (5000, 7.0)]) == pytest.approx(0.0)
    assert growth([(100, 1.0)]) is None
    assert len(node_name(4999)) >= 40, "cloud-style names, as the issue's arithmetic assumes"
