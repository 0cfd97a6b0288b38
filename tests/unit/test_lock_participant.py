"""The participant algorithm's pure judgements (lockstate): what a daemon does with its node's
record, and what an observer does with a holder that stopped renewing."""

from __future__ import annotations

import pytest

from rebootd.lockstate import (
    ADOPT,
    FREE,
    HALT,
    OURS,
    RECLAIM,
    STAND_BY,
    TAKE_OVER,
    Holder,
    claim_own_record,
    judge_stale_holder,
)
from rebootd.phases import Phase

RECORD = Holder(node="n1", zone="z", phase=Phase.DRAINING, grant="g1", pod="pod-a")


@pytest.mark.parametrize(
    ("record", "grant", "pod", "silent_for", "expected"),
    [
        (RECORD, "g1", "pod-b", 0.0, OURS),
        (RECORD, "", "pod-a", 0.0, ADOPT),  # our container before a restart: same Pod uid
        (RECORD, "", "pod-b", 9.9, STAND_BY),  # another daemon, still renewing
        (RECORD, "", "pod-b", 10.0, TAKE_OVER),  # silent for a whole TTL
        (Holder(node="n1", zone="z", phase=Phase.DRAINING), "", "", 0.0, TAKE_OVER),  # format 1
        (Holder(node="n1", zone="z", phase=Phase.DRAINING), "", "pod-a", 0.0, TAKE_OVER),
    ],
)
def test_a_daemon_takes_its_nodes_record_only_when_ours_or_its_writer_is_silent_or_of_format_1(
    record: Holder, grant: str, pod: str, silent_for: float, expected: str
) -> None:
    assert claim_own_record(record, grant=grant, pod=pod, silent_for=silent_for, ttl=10.0) == expected


@pytest.mark.parametrize("phase", [Phase.ACQUIRING, Phase.DRAINING, Phase.RECLAIMING])
def test_a_stale_holder_not_yet_rebooted_on_a_ready_node_is_a_reclaim_candidate(phase: Phase) -> None:
    holder = Holder(node="n2", zone="z", phase=phase, grant="g2")
    assert judge_stale_holder(holder, node_exists=True, ready=True) == (RECLAIM, "")


@pytest.mark.parametrize("phase", [Phase.REBOOTING, Phase.VERIFYING, Phase.UNCORDONING, Phase.RECOVERING])
def test_a_stale_holder_past_its_reboot_request_halts_even_on_a_ready_node(phase: Phase) -> None:
    action, why = judge_stale_holder(Holder(node="n2", zone="z", phase=phase), node_exists=True, ready=True)
    assert action == HALT
    assert why == f"node n2 is up but its rebootd stopped renewing (phase {phase})"


def test_a_stale_holder_on_a_node_not_ready_halts_and_one_whose_node_is_gone_is_freed() -> None:
    holder = Holder(node="n2", zone="z", phase=Phase.DRAINING)
    assert judge_stale_holder(holder, node_exists=True, ready=False) == (
        HALT,
        "node n2 is not Ready and its rebootd stopped renewing (phase draining)",
    )
    assert judge_stale_holder(holder, node_exists=False, ready=False) == (FREE, "")
