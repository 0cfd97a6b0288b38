"""Test-suite wide configuration: fixture plugins and hypothesis profiles."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins: list[str] = [
    "tests.fixtures.prometheus",
    "tests.fixtures.emulator",
    "tests.fixtures.cluster",
    "tests.fixtures.controlplane",
]

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
