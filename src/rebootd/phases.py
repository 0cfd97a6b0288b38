"""The vocabulary that crosses daemon versions: the node cycle's phases and the evidence a holder
keeps on its Node.

Rule: these strings are wire formats. A phase is written into the Lease's holder records, the
node mark and the `rebootd_phase{phase}` label; an evidence key into the node mark. During a
rolling update daemons of two versions read each other's, so a value never changes and a new one
is listed under CHANGELOG.md's Wire formats, with what an older daemon does when it meets it.
Pure: imports nothing of rebootd's, and no I/O library (an import contract).

`Phase` is a `StrEnum`: a member equals its string (`Phase.DRAINING == "draining"`, the same hash,
JSON as the plain string), so the sets below can replace today's sets of bare strings one by one.
`Evidence` types the node mark's evidence (today a `Mapping[str, Any]`): every key is optional,
since a mark grows through the cycle and a mark of an earlier version may lack any of them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict

__all__ = [
    "ALLOWANCE_PHASES",
    "BOOTING_PHASES",
    "CYCLE_PHASES",
    "DISRUPTED_PHASES",
    "PRE_REBOOT_PHASES",
    "Baseline",
    "Evidence",
    "Phase",
]


class Phase(StrEnum):
    """Where a node is in its reboot cycle (docs/design.md, "The node cycle")."""

    IDLE = "idle"
    REQUIRED = "required"  # needs a reboot, waits for the window, the blockers or a slot
    ACQUIRING = "acquiring"  # the phase of a record read without one (lock format 1)
    DRAINING = "draining"  # holds a slot: marked, cordoned, draining
    REBOOTING = "rebooting"  # the reboot was requested
    VERIFYING = "verifying"  # back up: proving the reboot (a new bootID)
    UNCORDONING = "uncordoning"
    RECOVERING = "recovering"  # uncordoned: waiting until the disrupted workloads are healthy
    RELEASING = "releasing"  # the release delay, then the slot goes back
    RECLAIMING = "reclaiming"  # another node judged this holder dead and is putting its node back


# Every phase a node's own cycle sets, in order: the `rebootd_phase` gauge's labels (metrics.PHASES).
# ACQUIRING is not one: no cycle is ever in it (a node queueing for a slot is `required`, one that
# took it `draining`); it only names the phase of a lock-format-1 record that carries none.
CYCLE_PHASES: tuple[Phase, ...] = (
    Phase.IDLE,
    Phase.REQUIRED,
    Phase.DRAINING,
    Phase.REBOOTING,
    Phase.VERIFYING,
    Phase.UNCORDONING,
    Phase.RECOVERING,
    Phase.RELEASING,
)
# Not rebooted yet: a stale holder in one of these whose node is up is reclaimed (lock.py).
PRE_REBOOT_PHASES = frozenset({Phase.ACQUIRING, Phase.DRAINING})
# The reboot was requested: never drain and reboot a second time (lockstate.BOOTING_PHASES).
BOOTING_PHASES = frozenset({Phase.REBOOTING})
# A holder in these gets the boot allowance on top of the TTL before it is stale (lockstate).
ALLOWANCE_PHASES = frozenset({Phase.REBOOTING, Phase.VERIFYING, Phase.UNCORDONING, Phase.RECOVERING})
# The node may be drained, down or not yet proven back: `rebootd unlock` refuses (admin.py).
DISRUPTED_PHASES = frozenset({Phase.DRAINING, Phase.REBOOTING, Phase.VERIFYING})


class Baseline(TypedDict, total=False):
    """What "healthy again" means for the recovery gate, read before the drain (recovery.py)."""

    owners: dict[str, Any]  # controller uid -> {kind, name, namespace, ready: its Ready pods}
    pdbs: list[Any]  # the PodDisruptionBudgets involved
    truncated: bool  # set when the mark had to drop `owners` to stay within its size bound


class Evidence(TypedDict, total=False):
    """The evidence in a holder's node mark (`rebootd.io/holder`, marks.py)."""

    bootID: str  # the boot id before the reboot: a different one after it is the proof
    bootSource: str  # where the boot id was read ("host": the boot id file; "node": nodeInfo)
    wasUnschedulable: bool  # cordoned before rebootd touched it: left cordoned afterwards
    baseline: Baseline
    evicted: list[dict[str, Any]]  # drain.EvictedPod.to_json() of each pod the drain removed
    evictedCount: int  # instead of `evicted` when the mark had to be bounded
    rebootRequested: str  # ISO 8601: when the reboot was requested
    reclaimedBy: str  # the node whose daemon is reclaiming this record (a `reclaiming` record)
