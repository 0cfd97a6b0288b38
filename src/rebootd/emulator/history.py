"""The emulator's append-only record of what happened, for invariant checks in tests and reports.

Rule: records are immutable and only appended, in the order the emulator serialised them; they say
who did what (client identity, verb, object) and carry the facts an invariant needs at that instant,
so that an invariant can be judged from the records alone: a node's unschedulable value before and
after, a Pod's readiness and labels after each write, a PDB's spec and status after each write,
every eviction request (granted or refused) with the covering PDBs as they were when it arrived,
every DELETE of a pod, every reboot a daemon asked for (`reboot_requested`), every machine reboot
(`reboot_started`), Ready transitions, and when a node's reboot need began (`reboot_needed`).

Events:
  write             a stored object changed (create | update | patch | delete; `removed` when gone)
  eviction          an eviction the server granted (the pod is being deleted)
  eviction_refused  an eviction the server refused (`code`: 429, 404, 500, ...)
  pod_delete        a client's DELETE of a pod (a direct delete, not an eviction)
  reboot_needed     the node's reboot-required sentinel appeared (client: the simulator)
  reboot_requested  a daemon called its reboot method (client: that daemon), before the machine goes down
  reboot_started    the machine went down for a reboot (detail: the bootID before it)
  node_ready / node_not_ready   the node's Ready condition changed
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rebootd.emulator.objects import controller_ref, is_pod_ready


@dataclass(frozen=True)
class PodFacts:
    """What an invariant needs to know of a Pod at one instant."""

    uid: str
    node: str
    labels: Mapping[str, str]
    ready: bool
    terminating: bool
    owner_kind: str  # the controller's kind ("" for none)
    owner: str = ""  # the controller as "Kind/name" ("" for none)

    @property
    def healthy(self) -> bool:
        """Counted by a PDB: Ready and not being deleted (as the disruption controller counts)."""
        return self.ready and not self.terminating

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodFacts:
        meta = pod.get("metadata") or {}
        owner = controller_ref(pod)
        return cls(
            uid=str(meta.get("uid", "")),
            node=str((pod.get("spec") or {}).get("nodeName") or ""),
            labels=dict(meta.get("labels") or {}),
            ready=is_pod_ready(pod),
            terminating=bool(meta.get("deletionTimestamp")),
            owner_kind=str((owner or {}).get("kind", "")),
            owner=f"{owner.get('kind', '')}/{owner.get('name', '')}" if owner else "",
        )


@dataclass(frozen=True)
class BudgetFacts:
    """A PodDisruptionBudget at one instant: its spec (for an independent judgement) and its
    status as the emulator's disruption controller computed it (for the report)."""

    namespace: str
    name: str
    selector: Mapping[str, Any] | None
    min_available: int | str | None
    max_unavailable: int | str | None
    disruptions_allowed: int | None
    current_healthy: int | None
    desired_healthy: int | None

    @classmethod
    def of(cls, pdb: Mapping[str, Any]) -> BudgetFacts:
        meta = pdb.get("metadata") or {}
        spec = pdb.get("spec") or {}
        status = pdb.get("status") or {}

        def number(key: str) -> int | None:
            value = status.get(key)
            return int(value) if value is not None else None

        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            selector=spec.get("selector"),
            min_available=spec.get("minAvailable"),
            max_unavailable=spec.get("maxUnavailable"),
            disruptions_allowed=number("disruptionsAllowed"),
            current_healthy=number("currentHealthy"),
            desired_healthy=number("desiredHealthy"),
        )

    def describe(self) -> str:
        return (
            f"{self.namespace}/{self.name} disruptionsAllowed={self.disruptions_allowed} "
            f"currentHealthy={self.current_healthy} desiredHealthy={self.desired_healthy}"
        )


@dataclass(frozen=True)
class HistoryRecord:
    monotonic: float  # the emulator clock's monotonic seconds
    time: datetime  # wall time from the emulator clock
    event: str  # see the module docstring
    client: str  # token identity, "anonymous", or the simulated controller ("kubelet", ...)
    verb: str  # create | update | patch | delete | evict | reboot | "" (behaviours)
    kind: str  # Kind of the object: Node, Pod, Lease, ...
    namespace: str
    name: str
    resource_version: str = ""
    unschedulable_before: bool | None = None
    unschedulable_after: bool | None = None
    pdb: str | None = None
    disruptions_allowed: int | None = None
    # Lease writes: the `rebootd.io/state` annotation written (the lock state, for halt checks);
    # Node writes: the `rebootd.io/queued` annotation after the write ("" when absent: not queued);
    # reboot_started: the bootID before the reboot; eviction_refused: the refusal's message.
    detail: str = ""
    # Pod writes: the pod after the write; eviction requests and pod deletes: the pod as it was
    # when the request arrived (None when it did not exist).
    pod: PodFacts | None = None
    # Eviction requests: the PDBs covering the pod when the request arrived; PDB writes: the PDB.
    budgets: tuple[BudgetFacts, ...] = field(default=())
    code: int = 0  # requests: the HTTP status answered (0 for writes and behaviours)
    removed: bool = False  # write/delete: the object is gone from the store (not only terminating)
    replicas: int | None = None  # ReplicaSet and StatefulSet writes: spec.replicas (a PDB's expected pods)
