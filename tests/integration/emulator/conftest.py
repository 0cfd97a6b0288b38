"""Emulator integration tests: the emulator and kubectl fixtures (imported: pytest accepts
`pytest_plugins` only in the top-level conftest) and a raw HTTP client for contract checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from rebootd.sim.emulator import Emulator
from tests.fixtures.emulator import emulator, emulator_factory, kubectl
from tests.integration.emulator.http import RawApi

__all__ = ["emulator", "emulator_factory", "kubectl", "raw"]


@pytest.fixture
async def raw(emulator: Emulator) -> AsyncIterator[RawApi]:
    async with aiohttp.ClientSession() as session:
        yield RawApi(session, emulator.url)
