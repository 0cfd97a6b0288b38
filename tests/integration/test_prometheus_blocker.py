"""The Prometheus alert blocker against a real Prometheus server (kured's alert semantics).

Alert semantics, TLS and basic auth are proven against the real `prometheus` binary; the hung
endpoint, malformed answers and the exact credential headers against small aiohttp servers on
loopback, because a real Prometheus can do none of those on demand (and accepts no bearer token).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from rebootd.blockers import (
    Blocker,
    BlockReason,
    PrometheusAlertBlocker,
    PrometheusQueryBlocker,
    prometheus_blockers,
)
from tests.fixtures.prometheus import (
    TEST_BASIC_AUTH,
    PrometheusFactory,
    PrometheusServer,
    firing_rule,
    free_loopback_port,
    inactive_rule,
    pending_rule,
)

ALERTING_RULES = [
    firing_rule("RebootdTestFiring"),
    firing_rule("RebootdTestFiring"),  # a second alert of the same name: listed once
    firing_rule("NoisyBenignAlert"),
    pending_rule("RebootdTestPending"),
    inactive_rule("RebootdTestNever"),
]


@pytest.fixture(scope="module")
def alerting(prometheus_module_factory: PrometheusFactory) -> PrometheusServer:
    """Two firing alerts (one rule name twice), one pending, one inactive rule."""
    return prometheus_module_factory.start(rules=ALERTING_RULES)


@pytest.fixture(scope="module")
def secured(prometheus_module_factory: PrometheusFactory) -> PrometheusServer:
    """HTTPS with a self-signed certificate and basic auth; one firing alert."""
    return prometheus_module_factory.start(
        rules=[firing_rule("SecuredFiring")], basic_auth=TEST_BASIC_AUTH, tls=True
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[Any]]:
    """structlog events and stdlib records (aiohttp's too) of the test, for leak checks."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        yield events


def blocker_for(
    session: aiohttp.ClientSession,
    url: str,
    *,
    filter_regexp: str | None = None,
    filter_match_only: bool = False,
    firing_only: bool = False,
    **kwargs: Any,
) -> PrometheusAlertBlocker:
    return PrometheusAlertBlocker(
        session=session,
        url=url,
        filter_regexp=re.compile(filter_regexp) if filter_regexp is not None else None,
        filter_match_only=filter_match_only,
        firing_only=firing_only,
        **kwargs,
    )


def alerts_reason(detail: str) -> BlockReason:
    return BlockReason(kind="prometheus_alerts", detail=detail)


# --- alert semantics against the real Prometheus -------------------------------------------


async def test_firing_and_pending_alerts_block_each_name_listed_once(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    status, payload = alerting.get_json("/api/v1/alerts")
    assert status == 200
    assert isinstance(payload, dict)
    raw_names = sorted(alert["labels"]["alertname"] for alert in payload["data"]["alerts"])
    assert raw_names == ["NoisyBenignAlert", "RebootdTestFiring", "RebootdTestFiring", "RebootdTestPending"]

    blocker: Blocker = blocker_for(session, alerting.url)

    assert blocker.name == "prometheus"
    assert await blocker.check() == alerts_reason(
        "3 active alerts: NoisyBenignAlert, RebootdTestFiring, RebootdTestPending"
    )


async def test_pending_alert_blocks_unless_firing_only(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    ignore_firing = "^(RebootdTestFiring|NoisyBenignAlert)$"

    pending_counts = blocker_for(session, alerting.url, filter_regexp=ignore_firing)
    firing_only = blocker_for(session, alerting.url, filter_regexp=ignore_firing, firing_only=True)

    assert await pending_counts.check() == alerts_reason("1 active alert: RebootdTestPending")
    assert await firing_only.check() is None
    assert await blocker_for(session, alerting.url, firing_only=True).check() == alerts_reason(
        "2 active alerts: NoisyBenignAlert, RebootdTestFiring"
    )


async def test_filter_regexp_ignores_matching_alerts(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    # Unanchored search, like Go's MatchString: "Benign" finds "NoisyBenignAlert".
    partly = blocker_for(session, alerting.url, filter_regexp="Benign")
    everything = blocker_for(session, alerting.url, filter_regexp="^(NoisyBenignAlert|RebootdTest.*)$")

    assert await partly.check() == alerts_reason("2 active alerts: RebootdTestFiring, RebootdTestPending")
    assert await everything.check() is None


async def test_filter_match_only_blocks_only_on_matching_alerts(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    only_firing_rule = blocker_for(
        session, alerting.url, filter_regexp="^RebootdTest", filter_match_only=True
    )

    assert await only_firing_rule.check() == alerts_reason(
        "2 active alerts: RebootdTestFiring, RebootdTestPending"
    )


async def test_filter_match_only_lets_non_matching_firing_alerts_pass(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    unrelated = blocker_for(session, alerting.url, filter_regexp="^DiskFull$", filter_match_only=True)
    pending_match_but_firing_only = blocker_for(
        session, alerting.url, filter_regexp="Pending", filter_match_only=True, firing_only=True
    )

    assert await unrelated.check() is None
    assert await pending_match_but_firing_only.check() is None


async def test_no_active_alerts_does_not_block(
    prometheus_factory: PrometheusFactory, session: aiohttp.ClientSession
) -> None:
    quiet = prometheus_factory.start(rules=[inactive_rule("RebootdTestNever")])

    assert await blocker_for(session, quiet.url).check() is None


async def test_detail_names_ten_alerts_then_counts_the_rest(
    prometheus_factory: PrometheusFactory, session: aiohttp.ClientSession
) -> None:
    many = prometheus_factory.start(rules=[firing_rule(f"Many{index:02d}") for index in range(12)])

    reason = await blocker_for(session, many.url).check()

    names = ", ".join(f"Many{index:02d}" for index in range(10))
    assert reason == alerts_reason(f"12 active alerts: {names}, +2 more")


# --- fail safe: unreachable, wrong answers, hung servers ----------------------------------


async def test_stopped_prometheus_blocks_as_unreachable(
    prometheus_factory: PrometheusFactory, session: aiohttp.ClientSession
) -> None:
    server = prometheus_factory.start(rules=[inactive_rule("RebootdTestNever")])
    blocker = blocker_for(session, server.url, timeout=5.0)
    assert await blocker.check() is None

    server.stop()
    reason = await blocker.check()

    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert reason.detail.startswith(f"prometheus {server.url}: ClientConnectorError")


async def test_port_with_nothing_listening_blocks_as_unreachable(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}"
    started = time.monotonic()

    reason = await blocker_for(session, url, timeout=5.0).check()

    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert "Cannot connect to host" in reason.detail
    assert time.monotonic() - started < 5.0


async def test_non_2xx_answer_from_prometheus_blocks_as_unreachable(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    reason = await blocker_for(session, f"{alerting.url}/no/such/prefix").check()

    assert reason == BlockReason(
        kind="prometheus_unreachable", detail=f"prometheus {alerting.url}/no/such/prefix: HTTP 404 Not Found"
    )


async def test_hung_endpoint_blocks_after_the_timeout(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    app = web.Application()
    released = asyncio.Event()

    async def never_answer(request: web.Request) -> web.Response:
        await asyncio.wait_for(released.wait(), timeout=30)
        return web.json_response({"status": "success", "data": {"alerts": []}})

    async def release(app: web.Application) -> None:
        released.set()

    app.router.add_get("/api/v1/alerts", never_answer)
    app.on_shutdown.append(release)
    server = await aiohttp_server(app)
    started = time.monotonic()

    reason = await blocker_for(session, str(server.make_url("/")), timeout=0.3).check()

    elapsed = time.monotonic() - started
    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert reason.detail.endswith("no answer within 0.3s")
    assert 0.3 <= elapsed < 2.0


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error"),
    [
        (200, "<html>login</html>", "text/html", "answer is not JSON (JSONDecodeError)"),
        (200, '{"status": "success", "data": {}}', "application/json", "answer has no data.alerts list"),
        (200, '["not", "an", "object"]', "application/json", "answer is not a JSON object"),
        (
            422,
            '{"status": "error", "errorType": "execution", "error": "query timed out"}',
            "application/json",
            "HTTP 422 Unprocessable Entity: status 'error' execution query timed out",
        ),
        (503, "Service Unavailable", "text/plain", "HTTP 503 Service Unavailable"),
        (302, "", "text/plain", "HTTP 302 Found (redirects are not followed: configure the final URL)"),
    ],
)
async def test_answer_that_is_not_a_successful_alert_list_blocks_as_unreachable(
    aiohttp_server: AiohttpServer,
    session: aiohttp.ClientSession,
    status: int,
    body: str,
    content_type: str,
    error: str,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        headers = {"Location": "/elsewhere"} if status == 302 else None
        return web.Response(status=status, text=body, content_type=content_type, headers=headers)

    app = web.Application()
    app.router.add_get("/api/v1/alerts", answer)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")

    reason = await blocker_for(session, url).check()

    assert reason == BlockReason(kind="prometheus_unreachable", detail=f"prometheus {url}: {error}")


# --- credentials and TLS -------------------------------------------------------------------

TOKEN = "tok-9f8e7d6c5b4a"
PASSWORD = "pw-1a2b3c4d5e6f"


@pytest.fixture
async def auth_echo(aiohttp_server: AiohttpServer) -> tuple[str, list[str]]:
    """A loopback endpoint that records Authorization headers and answers 503 quoting them."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        seen.append(header)
        body = {"status": "error", "errorType": "unavailable", "error": f"rejected {header}"}
        return web.json_response(body, status=503)

    app = web.Application()
    app.router.add_get("/prom/api/v1/alerts", answer)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/prom/", seen


def assert_nothing_leaks(secrets: list[str], *, shown: list[str], logs: list[Any], log_text: str) -> None:
    for secret in secrets:
        for text in shown:
            assert secret not in text
        assert secret not in repr(logs)
        assert secret not in log_text


async def test_bearer_token_is_sent_and_never_shown(
    auth_echo: tuple[str, list[str]],
    session: aiohttp.ClientSession,
    captured_logs: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, seen = auth_echo
    blocker = blocker_for(session, url, bearer_token=TOKEN)

    reason = await blocker.check()

    assert seen == [f"Bearer {TOKEN}"]
    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert (
        reason.detail
        == f"prometheus {url}: HTTP 503 Service Unavailable: status 'error' unavailable rejected Bearer ***"
    )
    assert [event["event"] for event in captured_logs] == ["rebootd.blockers.prometheus_unreachable"]
    assert_nothing_leaks(
        [TOKEN], shown=[reason.detail, repr(blocker)], logs=captured_logs, log_text=caplog.text
    )


@pytest.mark.parametrize("source", ["argument", "url"])
async def test_basic_auth_is_sent_and_never_shown(
    auth_echo: tuple[str, list[str]],
    session: aiohttp.ClientSession,
    captured_logs: list[Any],
    caplog: pytest.LogCaptureFixture,
    source: str,
) -> None:
    url, seen = auth_echo
    if source == "url":
        blocker = blocker_for(session, url.replace("http://", f"http://ops:{PASSWORD}@"))
    else:
        blocker = blocker_for(session, url, basic_auth=("ops", PASSWORD))

    reason = await blocker.check()

    encoded = aiohttp.encode_basic_auth("ops", PASSWORD)
    assert seen == [encoded]
    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert reason.detail.startswith(f"prometheus {url}: HTTP 503")
    assert "ops" not in repr(blocker)
    secrets = [PASSWORD, encoded.removeprefix("Basic ")]
    assert_nothing_leaks(
        secrets, shown=[reason.detail, repr(blocker)], logs=captured_logs, log_text=caplog.text
    )


async def test_real_prometheus_accepts_basic_auth_over_tls_with_the_given_ca(
    secured: PrometheusServer, session: aiohttp.ClientSession, captured_logs: list[Any]
) -> None:
    assert secured.url.startswith("https://")
    credentials = (TEST_BASIC_AUTH.username, TEST_BASIC_AUTH.password)
    blocker = blocker_for(session, secured.url, basic_auth=credentials, ca_file=secured.ca_file)

    assert await blocker.check() == alerts_reason("1 active alert: SecuredFiring")
    assert captured_logs == [
        {
            "event": "rebootd.blockers.prometheus_blocked",
            "log_level": "info",
            "blocker": "prometheus",
            "url": secured.url,
            "count": 1,
            "alerts": ["SecuredFiring"],
        }
    ]
    assert TEST_BASIC_AUTH.password not in repr(captured_logs)


async def test_real_prometheus_rejecting_credentials_blocks_without_leaking_them(
    secured: PrometheusServer,
    session: aiohttp.ClientSession,
    captured_logs: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = blocker_for(
        session, secured.url, basic_auth=("rebootd-test", PASSWORD), ca_file=secured.ca_file
    )

    reason = await blocker.check()

    assert reason == BlockReason(
        kind="prometheus_unreachable", detail=f"prometheus {secured.url}: HTTP 401 Unauthorized"
    )
    assert_nothing_leaks(
        [PASSWORD], shown=[reason.detail, repr(blocker)], logs=captured_logs, log_text=caplog.text
    )


async def test_certificate_from_an_untrusted_ca_blocks_as_unreachable(
    secured: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    credentials = (TEST_BASIC_AUTH.username, TEST_BASIC_AUTH.password)

    reason = await blocker_for(session, secured.url, basic_auth=credentials).check()

    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert "certificate verify failed" in reason.detail


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        ("ftp://prometheus:9090", {}, "must be http(s)"),
        ("http://prometheus:9090/?x=1", {}, "must not carry a query"),
        ("http://u:pw-in-url@prometheus:9090", {"bearer_token": TOKEN}, "has user info"),
        ("http://prometheus:9090", {"bearer_token": TOKEN, "basic_auth": ("u", PASSWORD)}, "either"),
        ("http://prometheus:9090", {"bearer_token": f"{TOKEN}\n"}, "line break"),
        ("http://prometheus:9090", {"basic_auth": ("u", f"{PASSWORD}\r\n")}, "line break"),
        ("http://prometheus:9090", {"timeout": 0}, "must be positive"),
    ],
)
async def test_invalid_configuration_is_rejected_without_showing_credentials(
    session: aiohttp.ClientSession, url: str, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as excinfo:
        blocker_for(session, url, **extra)

    for secret in ("pw-in-url", TOKEN, PASSWORD):
        assert secret not in str(excinfo.value)


async def test_missing_ca_file_is_a_configuration_error(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        blocker_for(session, "https://prometheus:9090", ca_file=tmp_path / "absent.pem")


# --- kured's ALERTS query and REBOOTD_PROMETHEUS_QUERY against the real Prometheus -----------


async def test_alerts_query_mode_blocks_on_the_same_alerts_as_kured(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    status, payload = alerting.get_json("/api/v1/query?query=ALERTS")
    assert status == 200
    assert isinstance(payload, dict)
    assert payload["data"]["resultType"] == "vector"

    blocker = blocker_for(session, alerting.url, source="query")

    assert await blocker.check() == alerts_reason(
        "3 active alerts: NoisyBenignAlert, RebootdTestFiring, RebootdTestPending"
    )
    firing_only = blocker_for(session, alerting.url, source="query", firing_only=True)
    assert await firing_only.check() == alerts_reason("2 active alerts: NoisyBenignAlert, RebootdTestFiring")
    ignore_all = blocker_for(session, alerting.url, source="query", filter_regexp="")  # kured's empty filter
    assert await ignore_all.check() is None
    only_pending = blocker_for(
        session, alerting.url, source="query", filter_regexp="Pending$", filter_match_only=True
    )
    assert await only_pending.check() == alerts_reason("1 active alert: RebootdTestPending")


async def test_promql_query_blocks_while_its_result_is_not_empty(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    firing = PrometheusQueryBlocker(
        session=session, url=alerting.url, query='ALERTS{alertname="RebootdTestFiring",alertstate="firing"}'
    )
    reason = await firing.check()
    assert reason is not None
    assert reason.kind == "prometheus_query"
    assert reason.detail.startswith(
        'query \'ALERTS{alertname="RebootdTestFiring",alertstate="firing"}\': 1 series:'
    )
    assert firing.name == "prometheus-query"

    empty = PrometheusQueryBlocker(session=session, url=alerting.url, query="vector(0) > 1")
    assert await empty.check() is None
    nothing_of_that_name = PrometheusQueryBlocker(
        session=session, url=alerting.url, query='ALERTS{alertname="Nope"}'
    )
    assert await nothing_of_that_name.check() is None
    scalar_zero = PrometheusQueryBlocker(session=session, url=alerting.url, query="scalar(vector(0))")
    assert await scalar_zero.check() is None
    scalar_one = PrometheusQueryBlocker(session=session, url=alerting.url, query="scalar(vector(1))")
    assert (await scalar_one.check()) is not None


async def test_promql_query_prometheus_refuses_blocks_and_names_the_error(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    broken = PrometheusQueryBlocker(session=session, url=alerting.url, query="sum(")
    reason = await broken.check()
    assert reason is not None
    assert reason.kind == "prometheus_unreachable"
    assert "HTTP 400" in reason.detail
    assert "bad_data" in reason.detail


async def test_prometheus_blockers_from_settings_values_build_both_blockers(
    alerting: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    blockers = prometheus_blockers(
        session=session,
        url=alerting.url,
        alerts_source="query",
        query='ALERTS{alertname="NoisyBenignAlert"}',
        filter_regexp=re.compile("."),  # every alert ignored: only the query blocks
        filter_match_only=False,
        firing_only=False,
    )
    assert [b.name for b in blockers] == ["prometheus", "prometheus-query"]
    assert await blockers[0].check() is None
    reason = await blockers[1].check()
    assert reason is not None
    assert reason.kind == "prometheus_query"
