"""Pure pieces of the emulator: request attributes, MicroTime parsing, Table ages, continue tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from rebootd.emulator.apiserver import request_info, truthy
from rebootd.emulator.errors import ApiError
from rebootd.emulator.listing import Pager
from rebootd.emulator.tables import human_duration
from rebootd.emulator.validation import parse_micro_time


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/nodes", {}, ("list", "", "", "nodes", "", "")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "", "", "nodes", "", "n1")),
        ("PATCH", "/api/v1/nodes/n1/status", {}, ("patch", "", "", "nodes", "status", "n1")),
        ("GET", "/api/v1/pods", {"watch": "true"}, ("watch", "", "", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "0"}, ("list", "", "ns", "pods", "", "")),
        ("POST", "/api/v1/namespaces/ns/pods/p/eviction", {}, ("create", "", "ns", "pods", "eviction", "p")),
        (
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
            {"watch": "1", "fieldSelector": "metadata.name=lock"},
            ("watch", "coordination.k8s.io", "ns", "leases", "", "lock"),
        ),
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "", "namespaces", "", "ns")),
        ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/watch/namespaces/ns/pods/p", {}, ("watch", "", "ns", "pods", "", "p")),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/daemonsets/d",
            {},
            ("update", "apps", "ns", "daemonsets", "", "d"),
        ),
    ],
)
def test_request_attributes_match_the_request_info_factory(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    info = request_info(method, path, query)
    assert info.is_resource
    assert (info.verb, info.group, info.namespace, info.resource, info.subresource, info.name) == expected


def test_non_resource_paths_and_query_booleans() -> None:
    for path in ("/version", "/api", "/apis", "/apis/apps", "/api/v1", "/apis/apps/v1", "/openapi/v2"):
        assert not request_info("GET", path, {}).is_resource
    assert [truthy(v) for v in ("1", "true", "True", "", "yes")] == [True] * 5
    assert [truthy(v) for v in ("0", "false", "False", None)] == [False] * 4


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-01-01T00:00:00.000000Z", ""),
        ("2026-01-01T00:00:00.000000+05:30", ""),
        ("2026-01-01T00:00:00Z", 'cannot parse "Z" as ".000000"'),
        ("2026-01-01T00:00:00.12345Z", 'cannot parse ".12345Z" as ".000000"'),
        ("2026-01-01T00:00:00.1234567Z", 'cannot parse "7Z" as "Z07:00"'),
        ("2026-01-01T00:00:00.123456", 'cannot parse "" as "Z07:00"'),
        ("2026-02-30T00:00:00.000000Z", "day out of range"),
        ("yesterday", 'cannot parse "yesterday" as "2006"'),
    ],
)
def test_micro_time_is_strict_rfc3339_micro(value: str, problem: str) -> None:
    message = parse_micro_time(value)
    if not problem:
        assert message == ""
    else:
        assert message.startswith(f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": ')
        assert message.endswith(problem)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (9 * 3600, "9h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (3 * 365 * 86400, "3y"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


@dataclass
class FakeClock:
    mono: float = 0.0

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.mono


def test_continue_tokens_expire_after_their_ttl() -> None:
    clock = FakeClock()
    pager = Pager(clock=clock, ttl=10.0)
    items = [{"metadata": {"namespace": "", "name": f"n{i}"}} for i in range(5)]
    first = pager.first(items, resource_version=7, limit=2)
    assert [i["metadata"]["name"] for i in first.items] == ["n0", "n1"]
    assert first.remaining == 3
    second = pager.next(first.continue_token, limit=2, current=lambda: (items, 9))
    assert second.resource_version == 7
    assert [i["metadata"]["name"] for i in second.items] == ["n2", "n3"]
    clock.mono = 11.0
    with pytest.raises(ApiError) as expired:
        pager.next(second.continue_token, limit=2, current=lambda: (items, 9))
    assert expired.value.code == 410
    assert expired.value.continue_token
    rest = pager.next(expired.value.continue_token, limit=10, current=lambda: (items, 9))
    assert [i["metadata"]["name"] for i in rest.items] == ["n4"]
    assert rest.resource_version == 9
    with pytest.raises(ApiError) as garbage:
        pager.next("not-a-token", limit=2, current=lambda: (items, 9))
    assert garbage.value.code == 400
