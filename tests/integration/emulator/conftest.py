"""Emulator integration tests: a raw HTTP client for exact contract checks. (The `emulator`,
`emulator_factory` and `kubectl` fixtures come from the `tests.fixtures.emulator` plugin.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from rebootd.sim.emulator import Emulator
from tests.integration.emulator.http import RawApi


@pytest.fixture
async def raw(emulator: Emulator) -> AsyncIterator[RawApi]:
    async with aiohttp.ClientSession() as session:
        yield RawApi(session, emulator.url)
