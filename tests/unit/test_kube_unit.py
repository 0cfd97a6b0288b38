"""Pure parts of the Kubernetes facade: MicroTime, retry policy, error mapping, paths."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from rebootd.kube import (
    Conflict,
    Expired,
    Invalid,
    KubeError,
    NotFound,
    RetryPolicy,
    TooManyRequests,
    error_from_response,
    format_microtime,
    is_retryable,
    parse_retry_after,
    resource_path,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def test_microtime_has_six_fraction_digits_even_on_a_whole_second() -> None:
    assert format_microtime(datetime(2026, 11, 23, 18, 0, tzinfo=UTC)) == "2026-11-23T18:00:00.000000Z"


def test_microtime_converts_other_zones_to_utc_z() -> None:
    cet = timezone(timedelta(hours=1))
    assert format_microtime(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=cet)) == "2026-01-02T02:04:05.000007Z"


def test_microtime_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_microtime(datetime(2026, 11, 23, 18, 0))


@pytest.mark.parametrize(
    ("status", "verb", "retry"),
    [
        (0, "get", True),
        (500, "get", True),
        (503, "update", True),
        (504, "evict", True),
        (500, "evict", False),  # more than one PDB: a configuration error, retrying cannot help
        (429, "list", True),
        (429, "evict", False),  # the PDB says no: the drain decides when to try again
        (400, "get", False),
        (401, "get", False),
        (403, "patch", False),
        (404, "get", False),
        (409, "update", False),
        (410, "list", False),
        (422, "patch", False),
    ],
)
def test_only_transient_failures_are_retried(status: int, verb: str, retry: bool) -> None:
    assert is_retryable(status=status, verb=verb) is retry


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    policy = RetryPolicy(attempts=10, base=0.2, cap=5.0)
    rng = random.Random(7)  # noqa: S311 - jitter, not crypto
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (5, 3.2), (6, 5.0), (9, 5.0)]:
        delays = [policy.backoff(attempt=attempt, rng=rng) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole interval
        assert min(delays) < ceiling * 0.2


def test_retry_after_wins_over_backoff_but_is_bounded() -> None:
    policy = RetryPolicy(max_retry_after=30.0)
    rng = random.Random(1)  # noqa: S311 - jitter, not crypto
    assert policy.delay(attempt=1, retry_after=7.0, rng=rng) == 7.0
    assert policy.delay(attempt=1, retry_after=3600.0, rng=rng) == 30.0
    assert 0.0 <= policy.delay(attempt=1, retry_after=None, rng=rng) <= 0.2


def test_invalid_retry_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(base=1.0, cap=0.5)


@pytest.mark.parametrize(
    ("value", "seconds"), [("3", 3.0), (" 10 ", 10.0), ("0", 0.0), ("-1", None), ("soon", None), (None, None)]
)
def test_retry_after_header_is_read_as_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def _status(code: int, reason: str, message: str, **details: object) -> bytes:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip
    if details:
        body["details"] = details
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (404, NotFound),
        (409, Conflict),
        (410, Expired),
        (422, Invalid),
        (429, TooManyRequests),
        (500, KubeError),
    ],
)
def test_status_bodies_become_typed_errors(code: int, cls: type[KubeError]) -> None:
    err = error_from_response(
        status=code, http_reason="X", raw=_status(code, "Why", 'leases "l" says no'), retry_after_header=None
    )
    assert type(err) is cls
    assert (err.status, err.reason, err.message) == (code, "Why", 'leases "l" says no')
    assert err.body["kind"] == "Status"
    assert err.retry_after is None


def test_retry_after_comes_from_header_or_status_details() -> None:
    from_header = error_from_response(
        status=429, http_reason="Too Many Requests", raw=_status(429, "TooManyRequests", "slow"),
        retry_after_header="4",
    )  # fmt: skip
    from_details = error_from_response(
        status=503, http_reason="", raw=_status(503, "ServiceUnavailable", "x", retryAfterSeconds=2),
        retry_after_header=None,
    )  # fmt: skip
    assert from_header.retry_after == 4.0
    assert from_details.retry_after == 2.0


def test_a_non_json_error_body_keeps_its_text() -> None:
    err = error_from_response(
        status=502, http_reason="Bad Gateway", raw=b"<html>proxy</html>", retry_after_header=None
    )
    assert (err.status, err.reason, err.message) == (502, "Bad Gateway", "<html>proxy</html>")


def test_resource_paths_of_every_kind_rebootd_touches() -> None:
    assert resource_path("nodes", name="n1") == "/api/v1/nodes/n1"
    assert resource_path("pods") == "/api/v1/pods"
    assert resource_path("pods", namespace="kube-system", name="a", sub="eviction") == (
        "/api/v1/namespaces/kube-system/pods/a/eviction"
    )
    assert resource_path("leases", namespace="rebootd", name="rebootd") == (
        "/apis/coordination.k8s.io/v1/namespaces/rebootd/leases/rebootd"
    )
    assert resource_path("poddisruptionbudgets") == "/apis/policy/v1/poddisruptionbudgets"
    assert resource_path("daemonsets", namespace="x", name="ds") == "/apis/apps/v1/namespaces/x/daemonsets/ds"
    assert resource_path("events", namespace="default") == "/api/v1/namespaces/default/events"
    assert resource_path("nodes", name="a/b") == "/api/v1/nodes/a%2Fb"  # never escapes the path


def test_resource_paths_refuse_scope_mistakes() -> None:
    with pytest.raises(ValueError, match="cluster-scoped"):
        resource_path("nodes", namespace="default")
    with pytest.raises(ValueError, match="needs a namespace"):
        resource_path("pods", name="a")
