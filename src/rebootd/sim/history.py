"""The emulator's append-only record of what happened, for invariant checks in tests and reports.

Rule: records are immutable and only appended; they say who did what (client identity, verb,
object) and carry the facts an invariant needs at that instant (a node's unschedulable value before
and after, a PDB's disruptionsAllowed when an eviction was admitted, reboot start and Ready).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HistoryRecord:
    monotonic: float  # the emulator clock's monotonic seconds
    time: datetime  # wall time from the emulator clock
    event: str  # "write" | "eviction" | "reboot_started" | "node_ready" | "node_not_ready"
    client: str  # token identity, "anonymous", or the simulated controller ("kubelet", ...)
    verb: str  # create | update | patch | delete | evict | "" (behaviours)
    kind: str  # Kind of the object: Node, Pod, Lease, ...
    namespace: str
    name: str
    resource_version: str = ""
    unschedulable_before: bool | None = None
    unschedulable_after: bool | None = None
    pdb: str | None = None
    disruptions_allowed: int | None = None
    # Lease writes: the `rebootd.io/state` annotation written (the lock state, for halt checks);
    # reboot_started: the bootID before the reboot; otherwise "".
    detail: str = ""
