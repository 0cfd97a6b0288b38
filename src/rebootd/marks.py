"""What the reboot lock writes on a holder's own Node: pure readings and encodings, no I/O.

Rule: the Lease holds only what the limits need; everything else about a grant lives on the
Node it concerns, in annotations whose value names the grant, so that every write made on a
grant's behalf can be scoped to it:

  rebootd.io/holder       the mark: the holder record (with its grant, pod and Lease uid) and the
                          evidence (bootID before the reboot, the recovery baseline, the pods
                          evicted, whether an admin had cordoned the node first). Written before
                          the node is disrupted; a Lease re-created from scratch copies it back.
  rebootd.io/cordoned-by  the grant whose cordon this is, written in the same guarded write as the
                          cordon itself. "Already unschedulable" is an admin's cordon only when
                          this annotation does not name our grant (a cordon whose response was
                          lost is recognised as ours on the re-read).
  rebootd.io/halted       a copy of the halt recorded for this node, so that a Lease re-created
                          after a deletion is born halted.
  rebootd.io/queued       the node's place in the queue: `{"since": <when it first needed the
                          reboot>, "zone": ...}`, written with `rebootd.io/reboot-required` (and
                          its label, which lets the queue be listed by a label selector); the
                          queue is the nodes with a record whose `rebootd.io/waiting-for` is a
                          slot, ordered by `since`, ties by name. The Lease names only its head.

Evidence is bounded: a mark larger than MAX_MARK_BYTES drops the per-pod details of the
recovery baseline and the eviction list (counts stay), far below the 256 KiB that a real
kube-apiserver allows for all annotations of an object together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from rebootd.lockstate import Holder, Waiter
from rebootd.phases import Evidence

NODE_MARK_ANNOTATION = "rebootd.io/holder"
CORDON_ANNOTATION = "rebootd.io/cordoned-by"
HALT_ANNOTATION = "rebootd.io/halted"
QUEUE_ANNOTATION = "rebootd.io/queued"
REQUIRED_ANNOTATION = "rebootd.io/reboot-required"
REQUIRED_LABEL = "rebootd.io/reboot-required"  # the same, as a label: the queue's list selector
WAITING_ANNOTATION = "rebootd.io/waiting-for"
SLOT_WAIT_PREFIX = "slot:"  # rebootd.io/waiting-for of a node that waits for a slot and nothing else
MAX_MARK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Mark:
    """A holder's mark on its Node: the record as the holder last wrote it, and the evidence."""

    holder: Holder
    evidence: Evidence = field(default_factory=lambda: Evidence())

    @property
    def phase(self) -> str:
        return self.holder.phase

    @property
    def grant(self) -> str:
        return self.holder.grant

    def encode(self) -> str:
        record = {k: v for k, v in self.holder.to_json().items() if k != "evidence"}
        body = {"node": self.holder.node, **record, "evidence": dict(self.evidence)}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if len(raw) <= MAX_MARK_BYTES:
            return raw
        body["evidence"] = bounded_evidence(self.evidence)
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


def bounded_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence without its unbounded parts: the eviction list and the baseline's owners are
    replaced by their sizes (the recovery gate then checks the PDBs and this node's pods only)."""
    out = dict(evidence)
    if isinstance(out.get("evicted"), list):
        out["evictedCount"] = len(out["evicted"])
        out["evicted"] = []
    baseline = out.get("baseline")
    if isinstance(baseline, Mapping):
        out["baseline"] = {"owners": {}, "pdbs": list(baseline.get("pdbs") or [])[:200], "truncated": True}
    return out


def annotations_of(node: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((node.get("metadata") or {}).get("annotations")) or {}


def mark_of(node: Mapping[str, Any]) -> Mark | None:
    """The mark a Node carries, or None (no mark, or one that does not parse)."""
    name = str((node.get("metadata") or {}).get("name", ""))
    return decode_mark(name, annotations_of(node).get(NODE_MARK_ANNOTATION))


def _json_object(raw: object) -> dict[str, Any] | None:
    """An annotation's value as a JSON object; None when absent, empty or anything else."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def decode_mark(node: str, raw: object) -> Mark | None:
    data = _json_object(raw)
    if data is None:
        return None
    evidence = data.get("evidence")
    record = {k: v for k, v in data.items() if k not in ("evidence", "node")}
    try:
        holder = Holder.from_json(node, record)
    except (TypeError, ValueError):
        return None
    # Read as written: keys of a newer version are kept (and carried), never interpreted.
    return Mark(
        holder=holder, evidence=cast(Evidence, dict(evidence) if isinstance(evidence, Mapping) else {})
    )


def cordon_owner(node: Mapping[str, Any]) -> str:
    """The grant that cordoned this Node ("" when none of rebootd's grants did)."""
    return str(annotations_of(node).get(CORDON_ANNOTATION) or "")


def cordoned_by(node: Mapping[str, Any], grant: str) -> bool:
    """Is the Node unschedulable by the cordon of `grant`? For a mark of lock format 1 (no grant,
    no ownership annotation) the old evidence decides: cordoned and not cordoned by an admin."""
    if not (node.get("spec") or {}).get("unschedulable"):
        return False
    if grant:
        return cordon_owner(node) == grant
    mark = mark_of(node)
    return mark is not None and not mark.evidence.get("wasUnschedulable", False)


def halt_mirror(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """The halt copied onto this Node, if any (None when absent or unreadable)."""
    return _json_object(annotations_of(node).get(HALT_ANNOTATION))


def encode_halt(halted: Mapping[str, Any]) -> str:
    return json.dumps(dict(halted), sort_keys=True, separators=(",", ":"))


def encode_queue_record(*, since: datetime, zone: str) -> str:
    return json.dumps({"since": since.isoformat(), "zone": zone}, sort_keys=True, separators=(",", ":"))


def ticket_of(raw: object) -> int | None:
    """The queue ticket of a queue record: when the node first needed its reboot, in ms since the
    epoch (None when the record is absent or unreadable)."""
    data = _json_object(raw)
    if data is None:
        return None
    try:
        since = datetime.fromisoformat(str(data.get("since", "")))
    except ValueError:
        return None
    return int(since.timestamp() * 1000)


def queued_waiter(node: Mapping[str, Any]) -> Waiter | None:
    """This Node's entry in the queue, or None: it must need a reboot, carry a readable queue
    record, wait for a slot and nothing else, and hold no mark (a holder is not queued)."""
    annotations = annotations_of(node)
    if annotations.get(REQUIRED_ANNOTATION) != "true" or NODE_MARK_ANNOTATION in annotations:
        return None
    if not str(annotations.get(WAITING_ANNOTATION) or "").startswith(SLOT_WAIT_PREFIX):
        return None
    raw = annotations.get(QUEUE_ANNOTATION)
    ticket = ticket_of(raw)
    if ticket is None:
        return None
    zone = str((_json_object(raw) or {}).get("zone", ""))
    return Waiter(node=str((node.get("metadata") or {}).get("name", "")), zone=zone, ticket=ticket)


def queue_of(nodes: Iterable[Mapping[str, Any]]) -> list[Waiter]:
    """The whole queue as the Nodes record it, first served first (ticket, then name)."""
    waiters = [w for w in map(queued_waiter, nodes) if w is not None]
    return sorted(waiters, key=lambda w: (w.ticket, w.node))
