"""kured's monitoring contract during a migration: the `kured_reboot_required` gauge beside
rebootd's with the compat switch; kured's node annotations and PreferNoSchedule taint, decided
as kured decides them (the rollouts that write them: tests/integration/test_kured_signs.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client.exposition import generate_latest

from rebootd.kured import KURED_MOST_RECENT_REBOOT_NEEDED, KURED_REBOOT_IN_PROGRESS
from rebootd.metrics import Metrics
from rebootd.signs import kured_annotation_patch, taint_wanted


def test_kured_reboot_required_gauge_follows_rebootds_with_the_compat_switch() -> None:
    metrics = Metrics.create(kured_compat=True)
    metrics.reboot_required.labels(node="n1").set(1)
    text = generate_latest(metrics.registry).decode()
    assert 'kured_reboot_required{node="n1"} 1.0' in text
    assert 'rebootd_reboot_required{node="n1"} 1.0' in text
    metrics.reboot_required.labels(node="n1").set(0)
    assert 'kured_reboot_required{node="n1"} 0.0' in generate_latest(metrics.registry).decode()


def test_no_kured_gauge_without_the_compat_switch() -> None:
    metrics = Metrics.create()
    metrics.reboot_required.labels(node="n1").set(1)
    assert "kured_reboot_required" not in generate_latest(metrics.registry).decode()


NOW = datetime(2026, 1, 3, 4, 5, 6, tzinfo=UTC)
STAMP = "2026-01-03T04:05:06Z"
EARLIER = {
    KURED_REBOOT_IN_PROGRESS: "2026-01-01T00:00:00Z",
    KURED_MOST_RECENT_REBOOT_NEEDED: "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("annotations", "required", "in_window", "rebooted", "patch"),
    [
        # kured sets both, to the same time, once a needed reboot is in its window (blocked or not)
        ({}, True, True, False, {KURED_REBOOT_IN_PROGRESS: STAMP, KURED_MOST_RECENT_REBOOT_NEEDED: STAMP}),
        # ... but not outside the window, nor when no reboot is needed
        ({}, True, False, False, {}),
        ({}, False, True, False, {}),
        # ... and only once per reboot: an in-progress mark keeps both times
        (EARLIER, True, True, False, {}),
        # after the reboot: the in-progress mark goes once no reboot is needed; the other stays
        (EARLIER, False, True, True, {KURED_REBOOT_IN_PROGRESS: None}),
        (EARLIER, True, True, True, {}),
        ({}, False, True, True, {}),
    ],
)
def test_kured_annotations_follow_kureds_timing(
    annotations: dict[str, str], required: bool, in_window: bool, rebooted: bool, patch: dict[str, str | None]
) -> None:
    assert (
        kured_annotation_patch(
            annotations=annotations, required=required, in_window=in_window, rebooted=rebooted, now=NOW
        )
        == patch
    )


@pytest.mark.parametrize(
    ("required", "waiting_for", "tainted"),
    [
        (True, "queued", True),  # another node holds the slot (or is first in line)
        (True, "concurrency", True),
        (True, "zone_concurrency", True),
        (True, None, False),  # this node holds the slot
        (True, "window", False),  # outside the maintenance window
        (True, "prometheus", False),  # blocked
        (True, "pdb", False),
        (True, "blocking_pods", False),
        (True, "paused", False),
        (True, "halted", False),
        (False, "queued", False),  # no reboot needed
        (False, None, False),
    ],
)
def test_prefer_no_schedule_taint_only_while_another_node_holds_the_slot(
    required: bool, waiting_for: str | None, tainted: bool
) -> None:
    assert taint_wanted(required=required, waiting_for=waiting_for) is tainted
