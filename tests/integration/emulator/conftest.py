"""Emulator integration tests: a raw HTTP client for exact contract checks, and the contract
suite's two backends. (The `emulator`, `emulator_factory` and `kubectl` fixtures come from the
`tests.fixtures.emulator` plugin, `control_plane` from `tests.fixtures.controlplane`.)

Rule: a test that takes `cluster` runs once on the emulator and once on the real kube-apiserver
(the `real` case is marked `controlplane`: the default test run deselects it, `nox -s
controlplane` runs it); `raw` is the raw client of whichever backend the test runs on. At the
end of a run that had both, the fidelity figure is printed: contract tests passing on both
backends out of those run on both, with every test that differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from rebootd.controlplane import ControlPlane
from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.backends import Cluster, real_raw_api
from tests.integration.emulator.http import RawApi


@pytest.fixture(params=["emulator", pytest.param("real", marks=pytest.mark.controlplane)])
def backend(request: pytest.FixtureRequest) -> Emulator | ControlPlane:
    """The server a `cluster` test runs on (fetched here, outside the test's event loop)."""
    if request.param == "emulator":
        emulator: Emulator = request.getfixturevalue("emulator")
        return emulator
    plane: ControlPlane = request.getfixturevalue("control_plane")
    return plane


@pytest.fixture
async def cluster(backend: Emulator | ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if isinstance(backend, Emulator):
        async with aiohttp.ClientSession() as session:
            yield Cluster(
                backend="emulator", raw=RawApi(session, backend.url), emulator=backend, request=request
            )
        return
    async with real_raw_api(backend) as raw:
        cluster = Cluster(backend="real", raw=raw, emulator=None, request=request)
        await cluster.empty()  # whatever an earlier (failed) test left
        try:
            yield cluster
        finally:
            await cluster.empty()


@pytest.fixture
async def emulator_raw(emulator: Emulator) -> AsyncIterator[RawApi]:
    async with aiohttp.ClientSession() as session:
        yield RawApi(session, emulator.url)


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> RawApi:
    """The raw client of the test's backend: the cluster's, else the emulator's."""
    if "cluster" in request.fixturenames:
        cluster: Cluster = request.getfixturevalue("cluster")
        return cluster.raw
    emulator_raw: RawApi = request.getfixturevalue("emulator_raw")
    return emulator_raw


# --- the fidelity figure --------------------------------------------------------------------------


@dataclass
class _Fidelity:
    outcomes: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)


_FIDELITY = _Fidelity()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    params = getattr(getattr(item, "callspec", None), "params", {})
    backend = params.get("backend")
    if backend is None or not (report.when == "call" or report.outcome != "passed"):
        return report
    others = ",".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k != "backend")
    key = (
        f"{item.nodeid.split('::')[0].rsplit('/', 1)[-1]}::{getattr(item, 'originalname', item.name)}",
        others,
    )
    outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
    seen = _FIDELITY.outcomes.setdefault(key, {})
    if seen.get(backend, "passed") == "passed":  # a failed setup or teardown wins over a passed call
        seen[backend] = outcome
    if hasattr(report, "wasxfail"):
        _FIDELITY.reasons[key] = str(report.wasxfail)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    both = {key: seen for key, seen in _FIDELITY.outcomes.items() if {"emulator", "real"} <= seen.keys()}
    if not both:
        return
    passing = [key for key, seen in both.items() if seen["emulator"] == seen["real"] == "passed"]
    write = terminalreporter.write_line
    terminalreporter.section("contract fidelity: the emulator against the real kube-apiserver")
    write(f"contract fidelity: {len(passing)} of {len(both)} contract tests pass on both backends")
    for key, seen in sorted(both.items()):
        if key not in passing:
            name = key[0] + (f"[{key[1]}]" if key[1] else "")
            reason = _FIDELITY.reasons.get(key, "")
            write(
                f"  differs: {name}: emulator {seen['emulator']}, real {seen['real']}"
                + (f" ({reason})" if reason else "")
            )
