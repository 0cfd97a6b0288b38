"""A kubelet's liveness from its heartbeat Lease, judged on the observer's own clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rebootd.heartbeat import DEFAULT_LEASE_SECONDS, HeartbeatJudge, lease_seconds, lease_version


def test_the_first_look_proves_nothing_either_way() -> None:
    judge = HeartbeatJudge()
    assert judge.judge(node="n1", version="7", duration=40, now=100.0) == "unknown"
    assert judge.judge(node="n2", version=None, duration=40, now=100.0) == "unknown"


def test_a_renewal_seen_between_two_looks_one_renew_interval_apart_is_alive() -> None:
    judge = HeartbeatJudge()
    judge.judge(node="n1", version="7", duration=40, now=100.0)
    assert judge.judge(node="n1", version="8", duration=40, now=110.0) == "alive"  # 40 s / 4


def test_a_renewal_seen_after_a_longer_gap_is_not_proof_of_life() -> None:
    # the kubelet may have renewed right after the first look and died: 20 s ago, Ready still True
    judge = HeartbeatJudge()
    judge.judge(node="n1", version="7", duration=40, now=100.0)
    assert judge.judge(node="n1", version="8", duration=40, now=120.0) == "unknown"
    # ... but it is the new baseline: the next close renewal proves it
    assert judge.judge(node="n1", version="9", duration=40, now=122.0) == "alive"


def test_a_lease_that_stood_still_for_its_duration_is_dead() -> None:
    judge = HeartbeatJudge()
    judge.judge(node="n1", version="7", duration=40, now=100.0)
    assert judge.judge(node="n1", version="7", duration=40, now=139.9) == "unknown"
    assert judge.judge(node="n1", version="7", duration=40, now=140.0) == "dead"
    assert judge.still_for("n1", now=150.0) == 50.0


def test_a_lease_that_stays_absent_for_the_duration_is_dead_and_a_lease_appearing_is_not_life() -> None:
    judge = HeartbeatJudge()
    judge.judge(node="n1", version=None, duration=4, now=0.0)
    assert judge.judge(node="n1", version=None, duration=4, now=4.0) == "dead"
    other = HeartbeatJudge()
    other.judge(node="n1", version=None, duration=4, now=0.0)
    assert other.judge(node="n1", version="1", duration=4, now=1.0) == "alive"
    assert other.judge(node="n1", version=None, duration=4, now=2.0) == "unknown"


def test_forgotten_nodes_start_again_from_a_first_look() -> None:
    judge = HeartbeatJudge()
    judge.judge(node="n1", version="7", duration=4, now=0.0)
    judge.judge(node="n2", version="7", duration=4, now=0.0)
    judge.keep_only(["n2"])
    assert judge.still_for("n1", now=10.0) == 0.0
    assert judge.judge(node="n1", version="7", duration=4, now=10.0) == "unknown"
    assert judge.judge(node="n2", version="7", duration=4, now=10.0) == "dead"


@given(
    looks=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=50.0), st.booleans()), min_size=1, max_size=20
    ),
    duration=st.floats(min_value=0.5, max_value=40.0),
)
def test_alive_only_when_the_lease_changed_within_one_duration_of_the_previous_look(
    looks: list[tuple[float, bool]], duration: float
) -> None:
    judge = HeartbeatJudge()
    now, version = 0.0, 0
    previous_at: float | None = None
    for gap, renewed in looks:
        now += gap
        version += int(renewed)
        verdict = judge.judge(node="n", version=str(version), duration=duration, now=now)
        if verdict == "alive":
            assert renewed
            assert previous_at is not None
            assert now - previous_at <= duration / 4  # within one renew interval
        if verdict == "dead":
            assert not renewed
        previous_at = now


def test_the_lease_duration_and_version_are_read_from_the_lease() -> None:
    lease = {
        "metadata": {"resourceVersion": "42"},
        "spec": {"leaseDurationSeconds": 40, "renewTime": "2026-12-06T10:00:00.000000Z"},
    }
    assert lease_seconds(lease) == 40.0
    # the renewal, not any write: a label added to the Lease is no heartbeat
    assert lease_version(lease) == "2026-12-06T10:00:00.000000Z"
    assert lease_version({**lease, "metadata": {"resourceVersion": "43"}}) == lease_version(lease)
    assert lease_version(None) is None
    for bad in (None, {}, {"spec": {"leaseDurationSeconds": 0}}, {"spec": {"leaseDurationSeconds": True}}):
        assert lease_seconds(bad) == DEFAULT_LEASE_SECONDS
