"""The shape of a simulated rollout, common to both backends (the emulator and the real plane).

Rule: one definition of the flags both `rebootd simulate` backends share (the cluster's size and
zones, the lock's limits, the scaled per-node durations, the scenario and its seed), validated
in one place, so that the same flags mean the same rollout whichever backend runs it. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from rebootd.sim.report import PerNodeMinimum


@dataclass(frozen=True, kw_only=True)
class RolloutShape:
    """What both backends run: nodes and zones, limits, durations (seconds), scenario, seed."""

    nodes: int = 10
    zones: int = 3
    concurrency: int = 1
    zone_concurrency: int = 0
    drain_seconds: float = 0.5
    boot_seconds: float = 1.0
    recovery_seconds: float = 0.25
    release_delay: float = 0.25
    seed: int = 0
    scenario: str = "default"

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.zones < 1 or self.concurrency < 1 or self.zone_concurrency < 0:
            raise ValueError("nodes, zones and concurrency must be >= 1, zone concurrency >= 0")
        if min(self.drain_seconds, self.boot_seconds, self.recovery_seconds, self.release_delay) < 0:
            raise ValueError("durations must be >= 0")
        if self.boot_seconds <= 0:
            raise ValueError("boot seconds must be > 0")

    @property
    def minimum(self) -> PerNodeMinimum:
        """The least one node's turn can take: drain + boot + recovery + release delay."""
        return PerNodeMinimum(
            drain=self.drain_seconds,
            boot=self.boot_seconds,
            recovery=self.recovery_seconds,
            release_delay=self.release_delay,
        )


def shape_values(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The shared fields' values from the command's parsed flags (`vars(args)`)."""
    return {f.name: flags[f.name] for f in fields(RolloutShape)}
