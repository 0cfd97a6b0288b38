"""The daemon process: sentinel to metric, health probes, crash handling, clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rebootd.daemon import Daemon
from rebootd.emulator.emulator import Emulator
from rebootd.sentinel import CommandSentinel
from rebootd.settings import Settings, env_name, load_settings
from tests.fixtures.tools import free_port


def rebootd_argv() -> list[str]:
    """The installed console script when present (nox installs the package), else `python -m rebootd`."""
    script = Path(sys.executable).with_name("rebootd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rebootd"]


def test_settings(tmp_path: Path, emulator: Emulator, **extra: str) -> Settings:
    if emulator.get_object(kind="Node", name="node-a") is None:
        emulator.add_node(name="node-a", zone="z1")
    return load_settings(
        environ={
            "REBOOTD_NODE_ID": "node-a",
            "REBOOTD_KUBECONFIG": str(emulator.write_kubeconfig(tmp_path / "kubeconfig")),
            "REBOOTD_REBOOT_SENTINEL": str(tmp_path / "reboot-required"),
            "REBOOTD_METRICS_HOST": "127.0.0.1",
            "REBOOTD_METRICS_PORT": "1",  # replaced below: port 0 is not a valid operator setting
            **extra,
        }
    ).model_copy(update={"metrics_port": 0})


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[int]]]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop=stop))
    await asyncio.wait_for(daemon.started.wait(), timeout=5)
    try:
        yield stop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def scrape(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


def gauge(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


async def wait_for_gauge(
    session: aiohttp.ClientSession, port: int, name: str, value: float, *, within: float
) -> float:
    """Seconds until `name` reads `value` on /metrics; fails after `within` seconds."""
    start = time.monotonic()
    deadline = start + within
    while time.monotonic() < deadline:
        _, text = await scrape(session, port, "/metrics")
        if gauge(text, name) == value:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    pytest.fail(f"{name} did not become {value} within {within}s")


async def test_sentinel_file_drives_reboot_required_metric_within_one_period(
    tmp_path: Path, emulator: Emulator
) -> None:
    period = 1.0
    settings = test_settings(tmp_path, emulator, REBOOTD_PERIOD=f"{period}s")
    daemon = Daemon(settings=settings)
    async with running(daemon), aiohttp.ClientSession() as session:
        assert daemon.server is not None
        port = daemon.server.port
        await wait_for_gauge(session, port, "rebootd_reboot_required", 0, within=period + 0.5)
        settings.reboot_sentinel.touch()
        took = await wait_for_gauge(session, port, "rebootd_reboot_required", 1, within=period + 0.5)
        assert took <= period + 0.5
        settings.reboot_sentinel.unlink()
        await wait_for_gauge(session, port, "rebootd_reboot_required", 0, within=period + 0.5)
        status, text = await scrape(session, port, "/metrics")
        assert status == 200
        assert 'rebootd_reboot_required{node="node-a"} 0.0' in text


async def test_healthz_and_readyz_answer_200_while_everything_runs(
    tmp_path: Path, emulator: Emulator
) -> None:
    daemon = Daemon(settings=test_settings(tmp_path, emulator, REBOOTD_PERIOD="100ms"))
    async with running(daemon), aiohttp.ClientSession() as session:
        assert daemon.server is not None
        status, body = await scrape(session, daemon.server.port, "/healthz")
        assert status == 200
        assert json.loads(body)["ok"] is True
        for _ in range(100):
            status, body = await scrape(session, daemon.server.port, "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200, body


def crashing_task(trigger: asyncio.Event) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    async def doomed(stop: asyncio.Event) -> None:
        await trigger.wait()
        raise RuntimeError("simulated bug in a supervised task")

    return doomed


async def test_crashed_task_turns_healthz_503_naming_it_and_exits_nonzero(
    tmp_path: Path, emulator: Emulator
) -> None:
    trigger = asyncio.Event()
    daemon = Daemon(
        settings=test_settings(tmp_path, emulator, REBOOTD_PERIOD="100ms"),
        extra_tasks={"doomed": crashing_task(trigger)},
        linger=2.0,
    )
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop=stop))
    await asyncio.wait_for(daemon.started.wait(), timeout=5)
    assert daemon.server is not None
    async with aiohttp.ClientSession() as session:
        status, _ = await scrape(session, daemon.server.port, "/healthz")
        assert status == 200
        doomed = next(t for t in asyncio.all_tasks() if t.get_name() == "doomed")
        trigger.set()
        await asyncio.wait([doomed], timeout=10)  # crashed: the next scrape must say so
        status, body = await scrape(session, daemon.server.port, "/healthz")
    assert status == 503
    detail = json.loads(body)
    assert detail["ok"] is False
    assert "doomed" in detail["failed"]
    assert "simulated bug" in detail["failed"]["doomed"]
    code = await asyncio.wait_for(run, timeout=10)
    assert code == 1


async def test_killing_the_sentinel_task_is_a_failure_not_a_silent_stop(
    tmp_path: Path, emulator: Emulator
) -> None:
    daemon = Daemon(settings=test_settings(tmp_path, emulator, REBOOTD_PERIOD="100ms"), linger=2.0)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop=stop))
    await asyncio.wait_for(daemon.started.wait(), timeout=5)
    assert daemon.server is not None
    sentinel_task = next(t for t in asyncio.all_tasks() if t.get_name() == "sentinel")
    sentinel_task.cancel()
    await asyncio.wait([sentinel_task], timeout=10)
    async with aiohttp.ClientSession() as session:
        status, body = await scrape(session, daemon.server.port, "/healthz")
    assert status == 503
    assert json.loads(body)["failed"] == {"sentinel": "cancelled"}
    assert await asyncio.wait_for(run, timeout=10) == 1


def test_installed_command_lists_every_option_with_env_var_and_default() -> None:
    result = subprocess.run(
        [*rebootd_argv(), "run", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text
        assert f"env {env_name(name)};" in help_text
    assert "default 1m]" in help_text
    assert "default /var/run/reboot-required]" in help_text


def test_installed_command_rejects_bad_config_with_exit_2_and_no_traceback() -> None:
    env = {**os.environ, "REBOOTD_NODE_ID": "n", "REBOOTD_LOCK_TTL": "forever"}
    result = subprocess.run(
        [*rebootd_argv(), "run"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 2
    assert "REBOOTD_LOCK_TTL (--lock-ttl): got 'forever'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_sigterm_stops_the_daemon_cleanly_within_five_seconds(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.add_node(name="node-a", zone="z1")
    env = {
        **os.environ,
        "REBOOTD_NODE_ID": "node-a",
        "REBOOTD_KUBECONFIG": str(emulator.write_kubeconfig(tmp_path / "kubeconfig")),
        "REBOOTD_REBOOT_SENTINEL": str(tmp_path / "reboot-required"),
        "REBOOTD_METRICS_HOST": "127.0.0.1",
        "REBOOTD_METRICS_PORT": str(free_port()),
        "REBOOTD_LOG_FORMAT": "json",
        "REBOOTD_PERIOD": "100ms",
    }
    proc = await asyncio.create_subprocess_exec(
        *rebootd_argv(), "run", env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        assert proc.stderr is not None
        port = None
        async with asyncio.timeout(30):
            while port is None:
                line = await proc.stderr.readline()
                if not line:
                    break
                event = json.loads(line)
                if event["event"] == "rebootd.daemon.started":
                    port = event["metrics_port"]
        assert port, "daemon did not report its port"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                status, _body = await scrape(session, port, "/readyz")
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            assert status == 200
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), timeout=10)
        code = await asyncio.wait_for(proc.wait(), timeout=10)
        assert time.monotonic() - sent < 5.0
        assert code == 0
        assert b"rebootd.daemon.stopped" in rest
        assert b"Traceback" not in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_sentinel_command_runs_on_the_host_through_nsenter_like_the_reboot_command(
    tmp_path: Path,
) -> None:
    base = {"REBOOTD_NODE_ID": "n", "REBOOTD_REBOOT_SENTINEL_COMMAND": "sh -c '! needs-restarting -r'"}
    on_host = Daemon(settings=load_settings(environ=base))
    assert isinstance(on_host.checker, CommandSentinel)
    assert tuple(on_host.checker.argv[:2]) == ("/usr/bin/nsenter", "-m/proc/1/ns/mnt")
    assert tuple(on_host.checker.argv[-3:]) == ("sh", "-c", "! needs-restarting -r")
    in_container = Daemon(settings=load_settings(environ={**base, "REBOOTD_REBOOT_NSENTER": "false"}))
    assert isinstance(in_container.checker, CommandSentinel)
    assert tuple(in_container.checker.argv) == ("sh", "-c", "! needs-restarting -r")
