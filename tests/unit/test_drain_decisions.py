"""The drain's pure decisions at their edges (objects missing fields, limits met exactly), written
to kill the mutants `nox -s mutants` found surviving tests/unit/test_drain_filters.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rebootd.drain import describe_pending, describe_refusal, is_multiple_pdbs, pdbs_selecting
from rebootd.kube import KubeError
from rebootd.pods import Owner, controller_of, deletion_time, has_local_storage, pod_key, terminating_too_long

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_a_controller_reference_missing_its_fields_reads_as_empty_strings() -> None:
    pod = {"metadata": {"ownerReferences": [{"controller": True}]}}
    assert controller_of(pod) == Owner(kind="", name="", uid="", api_version="")


def test_a_pod_missing_its_namespace_or_name_has_an_empty_part_in_its_key() -> None:
    assert pod_key({"metadata": {"name": "a"}}) == "/a"
    assert pod_key({"metadata": {"namespace": "ns"}}) == "ns/"
    assert pod_key({}) == "/"


def test_a_deletion_timestamp_that_is_not_an_aware_time_string_is_no_deletion() -> None:
    assert deletion_time({"metadata": {"deletionTimestamp": 1736078400}}) is None
    assert deletion_time({"metadata": {"deletionTimestamp": "2026-01-05T12:00:00"}}) is None  # naive
    assert deletion_time({"metadata": {"deletionTimestamp": "soon"}}) is None
    aware = deletion_time({"metadata": {"deletionTimestamp": "2026-01-05T12:00:00Z"}})
    assert aware == NOW


def test_skip_wait_for_delete_of_one_second_skips_pods_terminating_for_two() -> None:
    pod = {"metadata": {"deletionTimestamp": (NOW - timedelta(seconds=2)).isoformat()}}
    assert terminating_too_long(pod, now=NOW, skip_wait_for_delete_timeout=1)
    assert not terminating_too_long(pod, now=NOW, skip_wait_for_delete_timeout=2)
    assert not terminating_too_long(pod, now=NOW, skip_wait_for_delete_timeout=0)


def test_only_an_empty_dir_volume_is_local_storage() -> None:
    assert not has_local_storage({"spec": {"volumes": [{"name": "c", "configMap": {"name": "x"}}]}})
    assert not has_local_storage({"spec": {"volumes": ["not-a-volume"]}})
    assert has_local_storage({"spec": {"volumes": [{"name": "s", "emptyDir": {}}]}})


def test_multiple_pdbs_needs_both_the_500_and_the_text() -> None:
    text = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    assert is_multiple_pdbs(KubeError(status=500, reason="InternalError", message=text))
    assert not is_multiple_pdbs(KubeError(status=500, reason="InternalError", message="etcd timeout"))
    assert not is_multiple_pdbs(KubeError(status=429, reason="TooManyRequests", message=text))


def test_a_refusal_cause_without_a_message_falls_back_to_the_status() -> None:
    error = KubeError(
        status=429,
        reason="TooManyRequests",
        message="Cannot evict pod",
        body={"details": {"causes": [{"reason": "DisruptionBudget"}]}},
    )
    assert describe_refusal(error) == "eviction refused (429 TooManyRequests): Cannot evict pod"


def test_budgets_selecting_a_pod_skip_bad_selectors_without_stopping_and_name_unnamed_ones_empty() -> None:
    pod = {"metadata": {"labels": {"app": "web"}}}
    pdbs: list[dict[str, Any]] = [
        {
            "metadata": {"name": "bad"},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Nope"}]}},
        },
        {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}},
        {"spec": {"selector": {}}},
    ]
    assert pdbs_selecting(pod, pdbs) == ["", "web"]


def test_pending_pods_are_listed_up_to_the_limit_with_a_count_of_the_rest() -> None:
    pending = {f"ns/p{i}": "terminating" for i in range(3)}
    assert describe_pending(pending, limit=3) == "ns/p0: terminating; ns/p1: terminating; ns/p2: terminating"
    assert describe_pending(pending, limit=2) == "ns/p0: terminating; ns/p1: terminating; +1 more"
    assert describe_pending({}, limit=2) == ""
