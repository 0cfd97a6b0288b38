"""Integration-test fixtures: real external components (Prometheus).

Rule: fixtures live in `tests.fixtures.*`; this file only makes them visible here. (pytest refuses
`pytest_plugins` outside the top-level conftest, so the fixtures are imported instead.)
"""

from tests.fixtures.prometheus import prometheus_factory, prometheus_module_factory

__all__ = ["prometheus_factory", "prometheus_module_factory"]
