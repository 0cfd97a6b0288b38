"""The node mark: a holder record written on the node before it is cordoned, read back the same way
by the Lease's re-creation, the orphan clean-up, the reclaimer and `rebootd unlock`."""

from __future__ import annotations

from typing import Any

import pytest

from rebootd.lock import NODE_MARK_ANNOTATION, holder_mark, mark_of
from rebootd.lockstate import Holder


def node_with(annotations: Any) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "annotations": annotations}}


def test_a_mark_round_trips_with_its_evidence() -> None:
    holder = Holder(
        node="n1",
        zone="z1",
        phase="rebooting",
        seq=3,
        acquired="t",
        evidence={"bootID": "b1", "wasUnschedulable": True},
    )
    assert mark_of(node_with({NODE_MARK_ANNOTATION: holder_mark(holder)})) == holder


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {NODE_MARK_ANNOTATION: ""},
        {NODE_MARK_ANNOTATION: "{not json"},
        {NODE_MARK_ANNOTATION: "[1, 2]"},
    ],
    ids=["annotations-null", "no-annotations", "empty-mark", "garbled-mark", "mark-not-an-object"],
)
def test_a_node_without_a_readable_mark_has_no_holder(annotations: Any) -> None:
    assert mark_of(node_with(annotations)) is None


def test_the_mark_names_the_node_it_is_on_whatever_it_says() -> None:
    mark = holder_mark(Holder(node="elsewhere", zone="z1", phase="draining"))
    held = mark_of(node_with({NODE_MARK_ANNOTATION: mark}))
    assert held is not None
    assert held.node == "n1"
