"""The node mark: a holder record (with its grant) and the evidence, written on the node before it
is cordoned, read back the same way by the Lease's re-creation, the orphan clean-up, the
reclaimer and `rebootd unlock`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rebootd.lockstate import Holder
from rebootd.marks import (
    MAX_MARK_BYTES,
    NODE_MARK_ANNOTATION,
    Mark,
    cordoned_by,
    decode_mark,
    mark_of,
)


def node_with(annotations: Any, *, unschedulable: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "annotations": annotations}, "spec": {"unschedulable": unschedulable}}


def test_a_mark_round_trips_with_its_grant_and_evidence() -> None:
    holder = Holder(
        node="n1", zone="z1", phase="rebooting", seq=3, acquired="t", grant="g", pod="p", lease="u"
    )
    mark = Mark(holder=holder, evidence={"bootID": "b1", "wasUnschedulable": True})
    assert mark_of(node_with({NODE_MARK_ANNOTATION: mark.encode()})) == mark


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {NODE_MARK_ANNOTATION: ""},
        {NODE_MARK_ANNOTATION: "{not json"},
        {NODE_MARK_ANNOTATION: "[1, 2]"},
        {NODE_MARK_ANNOTATION: '{"seq": "not a number"}'},
    ],
    ids=[
        "annotations-null",
        "no-annotations",
        "empty-mark",
        "garbled-mark",
        "mark-not-an-object",
        "bad-field",
    ],
)
def test_a_node_without_a_readable_mark_has_no_holder(annotations: Any) -> None:
    assert mark_of(node_with(annotations)) is None


def test_the_mark_names_the_node_it_is_on_whatever_it_says() -> None:
    raw = Mark(holder=Holder(node="elsewhere", zone="z1", phase="draining", grant="g")).encode()
    held = mark_of(node_with({NODE_MARK_ANNOTATION: raw}))
    assert held is not None
    assert held.holder.node == "n1"


def test_a_mark_of_lock_format_1_reads_as_a_legacy_grant_with_its_evidence() -> None:
    raw = json.dumps({"node": "n1", "zone": "z", "phase": "draining", "seq": 1, "evidence": {"bootID": "b"}})
    mark = decode_mark("n1", raw)
    assert mark is not None
    assert mark.holder.legacy
    assert mark.evidence == {"bootID": "b"}
    # Format 1 has no ownership annotation: its evidence says whether rebootd cordoned the node.
    assert cordoned_by(node_with({NODE_MARK_ANNOTATION: raw}, unschedulable=True), "")
    admin = json.dumps({"node": "n1", "phase": "draining", "evidence": {"wasUnschedulable": True}})
    assert not cordoned_by(node_with({NODE_MARK_ANNOTATION: admin}, unschedulable=True), "")


def test_a_mark_stays_bounded_however_many_pods_were_evicted() -> None:
    """Failure 11: the evidence of a dense node (hundreds of evicted pods, a large baseline) must not
    push the node's annotations toward the apiserver's 256 KiB limit."""
    evicted = [{"namespace": "ns", "name": f"pod-{i:05d}-" + "x" * 60, "uid": "u" * 36} for i in range(2000)]
    owners = {f"ReplicaSet/ns/rs-{i}": {"ready": 3} for i in range(2000)}
    mark = Mark(
        holder=Holder(node="n1", zone="z", phase="rebooting", grant="g"),
        evidence={"bootID": "b", "evicted": evicted, "baseline": {"owners": owners, "pdbs": ["ns/p"]}},
    )
    raw = mark.encode()
    assert len(raw) <= MAX_MARK_BYTES
    back = decode_mark("n1", raw)
    assert back is not None
    assert back.evidence["bootID"] == "b"
    assert back.evidence["evictedCount"] == 2000
    assert back.evidence["baseline"]["pdbs"] == ["ns/p"]
