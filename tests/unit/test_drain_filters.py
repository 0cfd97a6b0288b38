"""Table tests of the drain's pure logic: kubectl's pod filters (force, ignore-daemonsets and
delete-emptydir-data on), the reading of eviction refusals, and the result's records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rebootd.drain import (
    DrainOptions,
    DrainResult,
    EvictedPod,
    describe_pending,
    describe_refusal,
    is_multiple_pdbs,
    is_namespace_terminating,
    pdbs_selecting,
)
from rebootd.kube import KubeError, TooManyRequests
from rebootd.pods import (
    Owner,
    Verdict,
    controller_of,
    daemonset_to_check,
    filter_pod,
    pod_uid,
    terminating_too_long,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def owner_ref(kind: str, name: str = "owner", *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name,
        "uid": f"uid-{name}",
        "controller": controller,
    }


def pod(
    *,
    owner: dict[str, Any] | None = None,
    phase: str = "Running",
    annotations: dict[str, str] | None = None,
    empty_dir: bool = False,
    deleted_ago: float | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "u1", "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    if annotations:
        meta["annotations"] = annotations
    if deleted_ago is not None:
        meta["deletionTimestamp"] = (NOW - timedelta(seconds=deleted_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec: dict[str, Any] = {"containers": [{"name": "c"}]}
    if empty_dir:
        spec["volumes"] = [{"name": "v", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}]
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


MIRROR = {"kubernetes.io/config.mirror": "hash"}
NO_CONTROLLER = "deleting Pods that declare no controller"
LOCAL = "deleting Pods with local storage (emptyDir)"


@pytest.mark.parametrize(
    ("the_pod", "skip_after", "ds_exists", "expected"),
    [
        pytest.param(pod(owner=owner_ref("ReplicaSet")), 0, None, Verdict(evict=True), id="replicaset-pod"),
        pytest.param(pod(owner=owner_ref("DaemonSet", "ds")), 0, True,
                     Verdict(evict=False, reason="DaemonSet-managed (DaemonSet ds)"),
                     id="daemonset-pod-skipped"),
        pytest.param(pod(owner=owner_ref("DaemonSet", "ds")), 0, False,
                     Verdict(evict=True, warnings=("orphaned: DaemonSet ds not found",)),
                     id="orphaned-daemonset-pod"),
        pytest.param(pod(owner=owner_ref("DaemonSet", "ds"), phase="Succeeded"), 0, None, Verdict(evict=True),
                     id="finished-daemonset-pod-removed-without-lookup"),
        pytest.param(pod(owner=owner_ref("DaemonSet", "ds", controller=False)), 0, None,
                     Verdict(evict=True, warnings=(NO_CONTROLLER,)), id="daemonset-owner-not-controller"),
        pytest.param(pod(annotations=MIRROR), 0, None,
                     Verdict(evict=False, reason="mirror pod (static pod managed by the kubelet)"),
                     id="mirror-pod"),
        pytest.param(pod(), 0, None, Verdict(evict=True, warnings=(NO_CONTROLLER,)), id="bare-pod-forced"),
        pytest.param(pod(phase="Failed"), 0, None, Verdict(evict=True), id="finished-bare-pod-no-warning"),
        pytest.param(pod(owner=owner_ref("StatefulSet"), empty_dir=True), 0, None,
                     Verdict(evict=True, warnings=(LOCAL,)), id="emptydir-deleted"),
        pytest.param(pod(empty_dir=True), 0, None, Verdict(evict=True, warnings=(LOCAL, NO_CONTROLLER)),
                     id="bare-emptydir-both-warnings"),
        pytest.param(pod(owner=owner_ref("ReplicaSet"), deleted_ago=100), 60, None,
                     Verdict(evict=False, reason="terminating for more than 60s"), id="terminating-too-long"),
        pytest.param(pod(owner=owner_ref("ReplicaSet"), deleted_ago=60), 60, None, Verdict(evict=True),
                     id="terminating-exactly-the-limit-kept"),
        pytest.param(pod(owner=owner_ref("ReplicaSet"), deleted_ago=1000), 0, None, Verdict(evict=True),
                     id="terminating-option-off"),
        pytest.param(pod(owner=owner_ref("DaemonSet", "ds"), deleted_ago=100), 60, None,
                     Verdict(evict=False, reason="terminating for more than 60s"),
                     id="first-filter-wins-before-daemonset-lookup"),
        pytest.param(pod(owner=owner_ref("DaemonSet", "ds"), annotations=MIRROR), 0, True,
                     Verdict(evict=False, reason="DaemonSet-managed (DaemonSet ds)"),
                     id="daemonset-filter-before-mirror-filter"),
    ],
)  # fmt: skip
def test_filter_pod_follows_kubectl_drain_filters_in_order(
    the_pod: dict[str, Any], skip_after: int, ds_exists: bool | None, expected: Verdict
) -> None:
    assert (
        filter_pod(the_pod, now=NOW, skip_wait_for_delete_timeout=skip_after, daemonset_exists=ds_exists)
        == expected
    )


def test_filter_pod_refuses_to_guess_an_unlooked_up_daemonset() -> None:
    with pytest.raises(ValueError, match="DaemonSet ds must be looked up first"):
        filter_pod(pod(owner=owner_ref("DaemonSet", "ds")), now=NOW, skip_wait_for_delete_timeout=0)


@pytest.mark.parametrize(
    ("the_pod", "expected"),
    [
        (pod(owner=owner_ref("DaemonSet", "ds")), "ds"),
        (pod(owner=owner_ref("DaemonSet", "ds"), phase="Failed"), None),
        (pod(owner=owner_ref("ReplicaSet")), None),
        (pod(), None),
    ],
)
def test_daemonset_to_check_names_only_running_daemonset_pods(
    the_pod: dict[str, Any], expected: str | None
) -> None:
    assert daemonset_to_check(the_pod) == expected


def test_controller_of_ignores_non_controller_owner_references() -> None:
    the_pod = pod()
    the_pod["metadata"]["ownerReferences"] = [
        owner_ref("ConfigMap", "cm", controller=False),
        owner_ref("Job", "j"),
    ]
    assert controller_of(the_pod) == Owner(kind="Job", name="j", uid="uid-j", api_version="apps/v1")
    assert controller_of(pod()) is None


def test_terminating_too_long_compares_whole_seconds_like_kubectl() -> None:
    assert not terminating_too_long(
        pod(deleted_ago=10), now=NOW + timedelta(seconds=0.9), skip_wait_for_delete_timeout=10
    )
    assert terminating_too_long(pod(deleted_ago=11), now=NOW, skip_wait_for_delete_timeout=10)
    assert not terminating_too_long(pod(), now=NOW, skip_wait_for_delete_timeout=10)
    future = pod(deleted_ago=-30)  # deletionTimestamp = now + grace while the grace runs
    assert not terminating_too_long(future, now=NOW, skip_wait_for_delete_timeout=10)


def status_error(status: int, *, reason: str, message: str, causes: list[dict[str, str]]) -> KubeError:
    body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message, "code": status,
            "details": {"name": "p", "kind": "pods", "causes": causes}}  # fmt: skip
    cls = TooManyRequests if status == 429 else KubeError
    return cls(status=status, reason=reason, message=message, body=body)


PDB_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.mark.parametrize(
    ("causes", "expected"),
    [
        ([{"reason": "DisruptionBudget",
           "message": "The disruption budget db-pdb needs 2 healthy pods and has 2 currently"}],
         "PodDisruptionBudget db-pdb allows 0 disruptions (needs 2 healthy pods, has 2)"),
        ([{"reason": "DisruptionBudget",
           "message": "The disruption budget web is still being processed by the server."}],
         "PodDisruptionBudget web is still being processed by the server"),
        ([], f"eviction refused (429 TooManyRequests): {PDB_MESSAGE}"),
    ],
)  # fmt: skip
def test_describe_refusal_names_the_budget_from_the_status_cause(
    causes: list[dict[str, str]], expected: str
) -> None:
    exc = status_error(429, reason="TooManyRequests", message=PDB_MESSAGE, causes=causes)
    assert describe_refusal(exc) == expected


def test_namespace_terminating_and_multiple_pdbs_are_recognised_from_the_status() -> None:
    terminating = status_error(403, reason="Forbidden", message="namespace x is being terminated",
                               causes=[{"reason": "NamespaceTerminating", "message": "m"}])  # fmt: skip
    plain_forbidden = status_error(403, reason="Forbidden", message="no", causes=[])
    multiple = status_error(
        500,
        reason="InternalError",
        message="This pod has more than one PodDisruptionBudget, which the eviction subresource "
        "does not support.",
        causes=[],
    )
    assert is_namespace_terminating(terminating)
    assert not is_namespace_terminating(plain_forbidden)
    assert is_multiple_pdbs(multiple)
    assert not is_multiple_pdbs(plain_forbidden)


def test_pdbs_selecting_uses_policy_v1_selector_semantics() -> None:
    pdbs: list[dict[str, Any]] = [
        {"metadata": {"name": "all"}, "spec": {"selector": {}}},
        {"metadata": {"name": "none"}, "spec": {}},
        {"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}},
        {"metadata": {"name": "web"}, "spec": {"selector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web"]}]}}},
    ]  # fmt: skip
    assert pdbs_selecting(pod(labels={"app": "db"}), pdbs) == ["all", "db"]


def test_describe_pending_lists_a_bounded_number_of_pods() -> None:
    pending = {f"ns/p{i:02d}": "why" for i in range(12)}
    text = describe_pending(pending, limit=3)
    assert text == "ns/p00: why; ns/p01: why; ns/p02: why; +9 more"


def test_result_owners_are_distinct_and_records_round_trip_through_json() -> None:
    rs = Owner(kind="ReplicaSet", name="web-1", uid="u-rs", api_version="apps/v1")
    pods = (
        EvictedPod(namespace="a", name="web-1-x", uid="1", owner=rs),
        EvictedPod(namespace="a", name="web-1-y", uid="2", owner=rs),
        EvictedPod(namespace="a", name="bare", uid="3", owner=None),
    )
    result = DrainResult(evicted=pods)
    assert result.owners == (rs,)
    assert [EvictedPod.from_json(p.to_json()) for p in pods] == list(pods)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grace_period": -2},
        {"timeout": -1.0},
        {"poll": 0.0},
        {"retry_429": 0.0},
        {"concurrency": 0},
        {"pod_selector": "app in (a"},
    ],
)
def test_drain_options_reject_invalid_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        DrainOptions(**kwargs)


def test_pod_uid_is_the_metadata_uid_or_empty() -> None:
    assert pod_uid({"metadata": {"uid": "u-1"}}) == "u-1"
    assert pod_uid({"metadata": {"uid": None}}) == ""
    assert pod_uid({"metadata": None}) == ""
    assert pod_uid({}) == ""
