"""pods.py: which pods a drain would evict, which budgets cover a pod, and whether a budget would
refuse an eviction now (the eviction API's rules, kube-api-contract section 5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rebootd.pods import covering_pdbs, evictable_pods, pdb_refusal, pod_is_ready

JsonObj = dict[str, Any]
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def pod(
    name: str,
    *,
    ready: bool = True,
    owner: str | None = "ReplicaSet",
    labels: dict[str, str] | None = None,
    namespace: str = "default",
    phase: str = "Running",
    deleting: bool = False,
) -> JsonObj:
    meta: JsonObj = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [
            {"kind": owner, "name": f"{owner.lower()}-x", "uid": "u", "controller": True}
        ]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-05T11:59:59Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": "n1", "containers": [{"name": "app"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pdb(
    *,
    healthy: int,
    desired: int,
    allowed: int,
    policy: str | None = None,
    selector: JsonObj | None = None,
    namespace: str = "default",
) -> JsonObj:
    spec: JsonObj = {"selector": {"matchLabels": {"app": "web"}} if selector is None else selector}
    if policy is not None:
        spec["unhealthyPodEvictionPolicy"] = policy
    return {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": spec,
        "status": {"currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed},
    }


def test_a_pod_is_ready_only_with_a_ready_true_condition() -> None:
    assert pod_is_ready(pod("a"))
    assert not pod_is_ready(pod("a", ready=False))
    assert not pod_is_ready({"status": {"conditions": [{"type": "ContainersReady", "status": "True"}]}})
    assert not pod_is_ready({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    assert not pod_is_ready({})
    assert not pod_is_ready({"status": None})


def test_the_first_ready_condition_decides() -> None:
    conditions = [{"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"}]
    assert not pod_is_ready({"status": {"conditions": conditions}})


def test_evictable_pods_are_what_the_drain_would_evict() -> None:
    pods = [
        pod("web", labels={"app": "web"}),
        pod("agent", owner="DaemonSet"),  # kept: its DaemonSet exists
        pod("done", phase="Succeeded"),  # nothing to disrupt
        pod("failed", phase="Failed"),
        pod("going", deleting=True),  # already terminating
        pod("bare", owner=None),  # evicted: kured drains with force
        pod("mirror", owner=None)
        | {"metadata": {"name": "mirror", "namespace": "default", "annotations": {}}},
    ]
    mirror = pods[-1]
    mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"] = "x"
    chosen = [p["metadata"]["name"] for p in evictable_pods(pods, pod_selector="", now=NOW)]
    assert chosen == ["web", "bare"]


def test_evictable_pods_respect_the_drain_pod_selector() -> None:
    pods = [pod("web", labels={"app": "web"}), pod("db", labels={"app": "db"}), pod("none")]
    chosen = [p["metadata"]["name"] for p in evictable_pods(pods, pod_selector="app!=db", now=NOW)]
    assert chosen == ["web", "none"]
    chosen = [p["metadata"]["name"] for p in evictable_pods(pods, pod_selector="app", now=NOW)]
    assert chosen == ["web", "db"]


def test_covering_pdbs_match_by_selector_within_the_namespace_only() -> None:
    web = pod("web", labels={"app": "web"})
    same = pdb(healthy=1, desired=1, allowed=0)
    other_ns = pdb(healthy=1, desired=1, allowed=0, namespace="other")
    other_app = pdb(healthy=1, desired=1, allowed=0, selector={"matchLabels": {"app": "db"}})
    everything = pdb(healthy=1, desired=1, allowed=0, selector={})
    nothing = pdb(healthy=1, desired=1, allowed=0) | {"spec": {"selector": None}}
    assert covering_pdbs(web, [same, other_ns, other_app, everything, nothing]) == [same, everything]


@pytest.mark.parametrize(
    ("ready", "budget", "refused"),
    [
        (True, {"healthy": 3, "desired": 2, "allowed": 1}, False),
        (True, {"healthy": 2, "desired": 2, "allowed": 0}, True),
        (True, {"healthy": 5, "desired": 2, "allowed": 3}, False),
        # Not Ready, IfHealthyBudget (the default): evictable while the budget is healthy.
        (False, {"healthy": 2, "desired": 2, "allowed": 0}, False),
        (False, {"healthy": 1, "desired": 2, "allowed": 0}, True),
        (False, {"healthy": 1, "desired": 2, "allowed": 1}, False),
        (False, {"healthy": 1, "desired": 2, "allowed": 0, "policy": "IfHealthyBudget"}, True),
        # Not Ready, AlwaysAllow: always evictable.
        (False, {"healthy": 0, "desired": 2, "allowed": 0, "policy": "AlwaysAllow"}, False),
        # AlwaysAllow does not help a Ready pod.
        (True, {"healthy": 2, "desired": 2, "allowed": 0, "policy": "AlwaysAllow"}, True),
    ],
)
def test_a_budget_refuses_an_eviction_by_the_eviction_apis_rules(
    ready: bool, budget: dict[str, Any], refused: bool
) -> None:
    reason = pdb_refusal(pod("web", ready=ready, labels={"app": "web"}), pdb(**budget))
    assert (reason is not None) == refused, reason


def test_a_refusal_names_the_budget_and_its_numbers() -> None:
    reason = pdb_refusal(pod("web"), pdb(healthy=2, desired=3, allowed=0))
    assert reason == "PodDisruptionBudget default/web allows 0 disruptions (needs 3 healthy pods, has 2)"


def test_a_budget_without_status_refuses() -> None:
    bare = {"metadata": {"name": "web", "namespace": "default"}, "spec": {}}
    assert pdb_refusal(pod("web"), bare) == (
        "PodDisruptionBudget default/web allows 0 disruptions (needs 0 healthy pods, has 0)"
    )
