"""The scale bench's harness (bench/scale.py) on the emulator: daemons that start their waits a
few at a time join the queue with about one write each, and the hand-offs are measured."""

from __future__ import annotations

import time

from bench.scale import measure


async def test_daemons_starting_a_few_at_a_time_join_with_one_write_each_and_hand_off() -> None:
    started = time.monotonic()
    point = await measure(nodes=40, handoffs=2, starts_per_second=100.0, within=60.0)
    assert point.note == "", point.note
    assert time.monotonic() - started >= 39 / 100.0, "the starts are spread"
    assert point.join_writes_per_node <= 1.2, point.join_by_verb
    assert len(point.gaps) == 2
    assert all(0.0 <= gap < 2.0 for gap in point.gaps), point.gaps
    assert point.handoff_writes == [6, 6]
    assert 0 < point.lease_bytes_max <= 4096
