"""Prometheus collectors for rebootd, all on an injected `CollectorRegistry`.

Rule: no collector is registered on prometheus-client's global REGISTRY; each daemon instance
(several run in one process in the simulator and the tests) gets its own `Metrics`. Label values
are bounded (node name, phase, result, reason kind): never an error text. With `kured_compat`,
`rebootd_reboot_required` is also published under kured's name `kured_reboot_required` (same
`node` label, same value), so kured's alerts and dashboards keep working during a migration.
A leaf module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rebootd.phases import CYCLE_PHASES

PHASES = tuple(phase.value for phase in CYCLE_PHASES)


class _Children:
    def __init__(self, children: list[Gauge]) -> None:
        self._children = children

    def set(self, value: float) -> None:
        for child in self._children:
            child.set(value)


class GaugePair:
    """One gauge published under two names (rebootd's and kured's): `.labels(...).set(v)` sets both."""

    def __init__(self, *gauges: Gauge) -> None:
        self.gauges = gauges

    def labels(self, *values: Any, **labels: Any) -> _Children:
        return _Children([gauge.labels(*values, **labels) for gauge in self.gauges])


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    reboot_required: Gauge | GaugePair
    sentinel_errors: Counter
    lock_held: Gauge
    phase: Gauge
    reboots: Counter
    drain_seconds: Histogram
    reboot_seconds: Histogram
    blocked: Gauge
    rollout_halted: Gauge
    api_requests: Counter

    @classmethod
    def create(cls, *, registry: CollectorRegistry | None = None, kured_compat: bool = False) -> Metrics:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        rebootd_required = Gauge(
            "rebootd_reboot_required",
            "1 when this node's sentinel says a reboot is required.",
            ["node"],
            registry=reg,
        )
        if kured_compat:
            kured = Gauge(
                "kured_reboot_required", "OS requires reboot due to software updates.", ["node"], registry=reg
            )
            reboot_required: Gauge | GaugePair = GaugePair(rebootd_required, kured)
        else:
            reboot_required = rebootd_required
        return cls(
            registry=reg,
            reboot_required=reboot_required,
            sentinel_errors=Counter(
                "rebootd_sentinel_errors",
                "Sentinel checks that failed (command timeout, missing binary).",
                ["node"],
                registry=reg,
            ),
            lock_held=Gauge(
                "rebootd_lock_held",
                "1 while this node holds a slot in the reboot lock.",
                ["node"],
                registry=reg,
            ),
            phase=Gauge(
                "rebootd_phase",
                "1 for the phase this node's reboot cycle is in.",
                ["node", "phase"],
                registry=reg,
            ),
            reboots=Counter(
                "rebootd_reboots", "Reboot cycles finished, by result.", ["node", "result"], registry=reg
            ),
            drain_seconds=Histogram(
                "rebootd_drain_duration_seconds",
                "Time to drain the node.",
                ["node"],
                registry=reg,
                buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            ),
            reboot_seconds=Histogram(
                "rebootd_reboot_duration_seconds",
                "Time from reboot request to the node back Ready.",
                ["node"],
                registry=reg,
                buckets=(10, 30, 60, 120, 180, 300, 600, 900, 1800),
            ),
            blocked=Gauge(
                "rebootd_blocked",
                "1 while a reboot is required but waits for this reason.",
                ["node", "reason"],
                registry=reg,
            ),
            rollout_halted=Gauge(
                "rebootd_rollout_halted",
                "1 while the rollout is halted (see `rebootd status`).",
                registry=reg,
            ),
            api_requests=Counter(
                "rebootd_api_requests",
                "Kubernetes API requests made, by verb and response code.",
                ["verb", "code"],
                registry=reg,
            ),
        )

    def set_phase(self, *, node: str, phase: str) -> None:
        for name in PHASES:
            self.phase.labels(node=node, phase=name).set(1 if name == phase else 0)
