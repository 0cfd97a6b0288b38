"""Notifications delivered by the real apprise to real HTTP endpoints on loopback.

The receiver is an aiohttp app reached through apprise's `json://127.0.0.1:PORT/path` scheme, so
every byte goes through apprise's JSON plugin and requests, as in production. The failure cases
use a port with nothing listening (connection refused) and a TCP server that accepts and never
answers (hung). Logs are captured from the notifier's own structlog logger, from stdlib logging
(caplog) and from the process' stdout/stderr (capfd).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr
from structlog.typing import FilteringBoundLogger

from rebootd.notify import Notifier, load_apprise
from tests.fixtures.tools import free_port

TEMPLATES = {
    "drain": "Draining node %s",  # kured's syntax
    "reboot": "Rebooting node {node}",
    "uncordon": "Node {node} is back",
    "halt": "Rollout halted at {node}: {reason}",
    "block": "Node {node} blocked: {reason}",
}
RECEIVE_TIMEOUT = 10.0
HUNG = 60.0  # seconds: a notifier timeout no test waits for (waiting for it would fail the test)


@dataclass
class Receiver:
    """A JSON webhook on 127.0.0.1 that records what apprise posts to it."""

    port: int
    received: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def url(self, path: str = "hook") -> SecretStr:
        return SecretStr(f"json://127.0.0.1:{self.port}/{path}")

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), timeout=RECEIVE_TIMEOUT)


@dataclass
class LogCapture:
    logger: FilteringBoundLogger
    stream: io.StringIO

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == event]


@pytest.fixture(scope="module")
def apprise_import_seconds() -> float:
    """Load apprise and its plugins once (the notifier does this lazily in its delivery thread);
    the figure is printed so a `-s` run shows what the first notification costs."""
    started = time.perf_counter()
    apprise = load_apprise()
    apprise.Apprise.instantiate("json://127.0.0.1:1/warm-up")
    seconds = time.perf_counter() - started
    print(f"apprise import + plugin load: {seconds:.3f}s")
    return seconds


@pytest.fixture
def logs() -> LogCapture:
    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(file=stream),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    return LogCapture(logger=logger, stream=stream)


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any], apprise_import_seconds: float) -> Receiver:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        payload = await request.json()
        payload["_path"] = request.path
        payload["_authorization"] = request.headers.get("Authorization", "")
        await queue.put(payload)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Receiver(port=int(server.port), received=queue)


@pytest.fixture
async def hung_port(apprise_import_seconds: float) -> AsyncIterator[int]:
    """A TCP server that accepts connections, reads the request and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def make_notifier(urls: list[SecretStr], logs: LogCapture, **kwargs: Any) -> Notifier:
    return Notifier(urls=urls, templates=TEMPLATES, log=logs.logger, **kwargs)


def send_without_waiting(notifier: Notifier, kind: str, values: dict[str, str]) -> None:
    """send() completes without suspending once: it cannot have waited for any delivery, however
    slow the endpoint and however loaded the machine (no wall-clock budget to flake)."""
    step = notifier.send(kind, values).__await__()
    with pytest.raises(StopIteration):
        next(step)


async def test_drain_reboot_and_halt_messages_arrive_rendered_at_a_real_json_endpoint(
    receiver: Receiver, logs: LogCapture
) -> None:
    notifier = make_notifier([receiver.url("hook")], logs)
    await notifier.send("drain", {"node": "worker-1"})
    await notifier.send("reboot", {"node": "worker-1"})
    await notifier.send("halt", {"node": "worker-1", "reason": "bootID unchanged after 15m"})

    got = [await receiver.next() for _ in range(3)]
    await notifier.close(within=5.0)

    assert [g["message"] for g in got] == [
        "Draining node worker-1",
        "Rebooting node worker-1",
        "Rollout halted at worker-1: bootID unchanged after 15m",
    ]
    assert [g["type"] for g in got] == ["info", "info", "failure"]
    assert {g["_path"] for g in got} == {"/hook"}
    assert notifier.delivered == 3
    assert notifier.failed == 0
    assert [e["kind"] for e in logs.named("rebootd.notify.sent")] == ["drain", "reboot", "halt"]


async def test_close_flushes_queued_messages_before_returning(receiver: Receiver, logs: LogCapture) -> None:
    notifier = make_notifier([receiver.url()], logs)
    for node in ("a", "b", "c"):
        await notifier.send("uncordon", {"node": node})

    await notifier.close(within=RECEIVE_TIMEOUT)

    assert receiver.received.qsize() == 3
    assert [receiver.received.get_nowait()["message"] for _ in range(3)] == [
        "Node a is back",
        "Node b is back",
        "Node c is back",
    ]
    assert not logs.named("rebootd.notify.undelivered")


async def test_dead_endpoint_neither_delays_send_nor_leaks_its_secret_into_any_log(
    logs: LogCapture,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    apprise_import_seconds: float,
) -> None:
    dead = free_port()  # nothing listens there: connection refused
    notifier = make_notifier([SecretStr(f"json://alice:pa55w0rd-xyz@127.0.0.1:{dead}/t0ken-abc")], logs)

    for kind in ("drain", "halt"):
        send_without_waiting(notifier, kind, {"node": "n1", "reason": "r"})
    await notifier.close(within=RECEIVE_TIMEOUT)

    assert notifier.failed == 2  # both were tried within close's bound, neither hung
    failed = logs.named("rebootd.notify.failed")
    assert [(f["kind"], f["scheme"], f["reason"]) for f in failed] == [
        ("drain", "json", "rejected"),
        ("halt", "json", "rejected"),
    ]
    out, err = capfd.readouterr()
    everything = logs.stream.getvalue() + caplog.text + out + err
    for secret in ("pa55w0rd-xyz", "t0ken-abc", "alice"):
        assert secret not in everything


async def test_hung_endpoint_times_out_after_the_notify_timeout(
    hung_port: int, logs: LogCapture, capfd: pytest.CaptureFixture[str]
) -> None:
    notifier = make_notifier([SecretStr(f"json://127.0.0.1:{hung_port}/s3cret-path")], logs, timeout=0.3)

    send_without_waiting(notifier, "block", {"node": "n1", "reason": "alert"})
    await notifier.flush(within=RECEIVE_TIMEOUT)  # returns once the delivery has ended, one way or another
    assert notifier.failed == 1
    await notifier.close(within=RECEIVE_TIMEOUT)

    failed = logs.named("rebootd.notify.failed")
    assert [f["reason"] for f in failed] == ["timeout"]
    assert failed[0]["seconds"] >= 0.25  # not before its timeout (how much later depends on the load)
    assert notifier.delivered == 0
    out, err = capfd.readouterr()
    assert "s3cret-path" not in logs.stream.getvalue() + out + err


async def test_close_abandons_what_a_hung_endpoint_still_holds_after_its_bound(
    hung_port: int, logs: LogCapture
) -> None:
    """Four messages to an endpoint that never answers, a timeout no one waits for: close(0.2)
    returns (long before even one delivery could time out) and says what it abandoned."""
    notifier = make_notifier([SecretStr(f"json://127.0.0.1:{hung_port}/x")], logs, timeout=HUNG)
    for i in range(4):
        send_without_waiting(notifier, "block", {"node": f"n{i}", "reason": "alert"})

    async with asyncio.timeout(HUNG / 2):  # close waiting for a delivery would take HUNG
        await notifier.close(within=0.2)

    undelivered = logs.named("rebootd.notify.undelivered")
    assert len(undelivered) == 1
    assert undelivered[0]["count"] >= 3  # the first may be in flight, the three behind it are queued
    assert notifier.delivered == 0
    assert notifier.failed == 0


async def test_a_hung_endpoint_does_not_hold_back_the_other_urls(
    receiver: Receiver, hung_port: int, logs: LogCapture
) -> None:
    notifier = make_notifier(
        [SecretStr(f"json://127.0.0.1:{hung_port}/x"), receiver.url("live")], logs, timeout=HUNG
    )
    await notifier.send("reboot", {"node": "n1"})

    got = await receiver.next()

    # The live URL got the message while the hung one is still inside its timeout.
    assert got["message"] == "Rebooting node n1"
    assert not logs.named("rebootd.notify.failed")
    await notifier.close(within=0.2)
    assert not logs.named("rebootd.notify.failed")  # abandoned, not timed out


async def test_a_full_queue_drops_the_oldest_messages_and_says_so(
    receiver: Receiver, logs: LogCapture
) -> None:
    notifier = make_notifier([receiver.url()], logs, queue_size=2)
    # send() never yields, so the delivery task cannot take anything off the queue in between.
    for node in ("n1", "n2", "n3", "n4"):
        await notifier.send("drain", {"node": node})

    await notifier.close(within=RECEIVE_TIMEOUT)

    assert [receiver.received.get_nowait()["message"] for _ in range(receiver.received.qsize())] == [
        "Draining node n3",
        "Draining node n4",
    ]
    assert [e["why"] for e in logs.named("rebootd.notify.dropped")] == ["queue_full", "queue_full"]
    assert notifier.dropped == 2


async def test_basic_auth_credentials_reach_the_endpoint_but_not_the_logs(
    receiver: Receiver, logs: LogCapture, capfd: pytest.CaptureFixture[str]
) -> None:
    notifier = make_notifier([SecretStr(f"json://bob:hunter2-secret@127.0.0.1:{receiver.port}/h")], logs)
    await notifier.send("halt", {"node": "n9", "reason": "workloads not healthy"})

    got = await receiver.next()
    await notifier.close(within=5.0)

    assert got["_authorization"].startswith("Basic ")
    assert got["message"] == "Rollout halted at n9: workloads not healthy"
    out, err = capfd.readouterr()
    assert "hunter2-secret" not in logs.stream.getvalue() + out + err
    assert [e["scheme"] for e in logs.named("rebootd.notify.sent")] == ["json"]


async def test_an_unknown_scheme_is_reported_by_scheme_only(
    logs: LogCapture, apprise_import_seconds: float
) -> None:
    notifier = make_notifier([SecretStr("nosuchservice://token-q1w2e3@somewhere/x")], logs)
    await notifier.send("drain", {"node": "n1"})
    await notifier.close(within=5.0)

    failed = logs.named("rebootd.notify.failed")
    assert [(f["scheme"], f["reason"]) for f in failed] == [("nosuchservice", "invalid_url")]
    assert "token-q1w2e3" not in logs.stream.getvalue()
