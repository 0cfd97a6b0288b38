"""Emulator integration tests: the emulator and kubectl fixtures (imported: pytest accepts
`pytest_plugins` only in the top-level conftest)."""

from tests.fixtures.emulator import emulator, emulator_factory, kubectl

__all__ = ["emulator", "emulator_factory", "kubectl"]
