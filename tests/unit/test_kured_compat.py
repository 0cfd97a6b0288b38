"""kured's monitoring contract during a migration: the `kured_reboot_required` gauge beside
rebootd's with the compat switch, and kured's node annotation names."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from rebootd.kured import KURED_MOST_RECENT_REBOOT_NEEDED, KURED_REBOOT_IN_PROGRESS, kured_annotations
from rebootd.metrics import Metrics


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


def test_kured_annotations_mark_a_reboot_in_progress_and_clear_it_after() -> None:
    now = "2026-01-01T00:00:00+00:00"
    needed = kured_annotations(phase="required", reboot_required=True, now_iso=now)
    assert needed == {KURED_REBOOT_IN_PROGRESS: None, KURED_MOST_RECENT_REBOOT_NEEDED: now}
    draining = kured_annotations(phase="draining", reboot_required=True, now_iso=now)
    assert draining[KURED_REBOOT_IN_PROGRESS] == now
    done = kured_annotations(phase="idle", reboot_required=False, now_iso=now)
    assert done == {KURED_REBOOT_IN_PROGRESS: None}
