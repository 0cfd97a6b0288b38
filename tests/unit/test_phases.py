"""`rebootd.phases` names exactly the strings the code writes today, so it can replace them one
by one without changing a wire format."""

from __future__ import annotations

import json
import typing

from rebootd import admin, lockstate, marks, metrics
from rebootd.phases import (
    ALLOWANCE_PHASES,
    BOOTING_PHASES,
    CYCLE_PHASES,
    DISRUPTED_PHASES,
    Evidence,
    Phase,
)


def test_a_phase_is_its_wire_string() -> None:
    wire: str = Phase.DRAINING
    assert wire == "draining"
    assert "draining" in frozenset({Phase.DRAINING})
    assert json.dumps({"phase": Phase.RECLAIMING}) == '{"phase": "reclaiming"}'
    assert Phase("recovering") is Phase.RECOVERING


def test_the_phase_sets_are_the_ones_the_modules_use_today() -> None:
    assert tuple(CYCLE_PHASES) == metrics.PHASES
    assert lockstate.RECLAIMING == Phase.RECLAIMING
    assert BOOTING_PHASES == lockstate.BOOTING_PHASES
    assert ALLOWANCE_PHASES == lockstate.ALLOWANCE_PHASES
    assert DISRUPTED_PHASES == admin.DISRUPTED_PHASES
    assert set(Phase) == {*CYCLE_PHASES, Phase.RECLAIMING, Phase.ACQUIRING}


def test_no_metric_phase_is_exported_that_no_cycle_ever_sets() -> None:
    assert "acquiring" not in metrics.PHASES  # only the phase of a lock-format-1 record


def test_evidence_names_every_key_a_bounded_mark_keeps() -> None:
    evidence = {
        "bootID": "b1",
        "bootSource": "host",
        "wasUnschedulable": False,
        "baseline": {"owners": {"u": {}}, "pdbs": []},
        "evicted": [{"namespace": "ns", "name": "p", "uid": "u", "owner": None}],
        "rebootRequested": "2026-01-01T00:00:00+00:00",
        "reclaimedBy": "n2",
    }
    keys = set(typing.get_type_hints(Evidence))
    assert set(evidence) <= keys
    assert set(marks.bounded_evidence(evidence)) <= keys
