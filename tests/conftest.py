"""Test-suite wide configuration: fixture plugins, hypothesis profiles, the leaked-task check."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from types import FrameType

import pytest
from hypothesis import HealthCheck, settings

from tests.fixtures.tasks import leaked_tasks

pytest_plugins: list[str] = [
    "tests.fixtures.prometheus",
    "tests.fixtures.emulator",
    "tests.fixtures.cluster",
    "tests.fixtures.controlplane",
]

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped with SIGTERM (`timeout`, `kill`, CI's limit) ends as Ctrl-C does: fixtures
    are torn down, so the control planes, Prometheus servers and daemons they started are
    stopped rather than left running with no parent."""
    signal.signal(signal.SIGTERM, _interrupt)


# A task still pending when its test is over gets this long to finish on its own.
LEAK_GRACE_SECONDS = 1.0


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks running: every task a test (or the code under test)
    starts must be awaited or cancelled by the end of the test and its fixtures (autouse, so torn
    down after them). The leaked tasks are cancelled before the failure is reported."""
    before = asyncio.all_tasks()
    yield
    leaked = await leaked_tasks(before=before, grace=LEAK_GRACE_SECONDS)
    if leaked:
        pytest.fail(f"the test leaked {len(leaked)} asyncio task(s): " + "; ".join(leaked), pytrace=False)
