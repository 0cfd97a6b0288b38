"""The recovery gate's decisions (recovery.py, pure part): what "healthy again" means after a drain
(the baseline), and each of the three conditions that hold the slot: pods on the node, the
controllers of evicted pods back to their Ready count, the covering PDBs back to desired health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rebootd.recovery import baseline, container_trouble, node_pods_problem, owners_problem, pdbs_problem

JsonObj = dict[str, Any]
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


def pod(
    name: str,
    *,
    node: str = "n1",
    owner: tuple[str, str] | None = ("ReplicaSet", "web-abc"),
    ready: bool = True,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    waiting: str | None = None,
    phase: str = "Running",
    deleting: bool = False,
) -> JsonObj:
    meta: JsonObj = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": f"uid-{owner[1]}",
                "controller": True,
            }
        ]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-05T11:59:00Z"
    status: JsonObj = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if waiting is not None:
        status["containerStatuses"] = [{"name": "app", "state": {"waiting": {"reason": waiting}}}]
    return {"metadata": meta, "spec": {"nodeName": node, "containers": [{"name": "app"}]}, "status": status}


def pdb(
    name: str, *, healthy: int, desired: int, match: dict[str, str], namespace: str = "default"
) -> JsonObj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": match}},
        "status": {"currentHealthy": healthy, "desiredHealthy": desired},
    }


WEB = {"uid-web-abc": {"kind": "ReplicaSet", "name": "web-abc", "namespace": "default", "ready": 3}}


# --- baseline ---------------------------------------------------------------------------------


def test_baseline_counts_ready_pods_of_each_evicted_pods_controller_across_the_namespace() -> None:
    on_node = [
        pod("web-1", labels={"app": "web"}),
        pod("db-0", owner=("StatefulSet", "db"), labels={"app": "db"}),
    ]
    elsewhere = [
        *on_node,
        pod("web-2", node="n2", labels={"app": "web"}),
        pod("web-3", node="n3", ready=False, labels={"app": "web"}),  # not Ready: not counted
        pod("web-4", node="n3", deleting=True, labels={"app": "web"}),  # terminating: not counted
        pod("other", node="n2", owner=("ReplicaSet", "other")),  # not evicted from n1: ignored
    ]
    base = baseline(
        node_pods=on_node,
        namespace_pods=elsewhere,
        pdbs=[
            pdb("web", healthy=2, desired=1, match={"app": "web"}),
            pdb("x", healthy=1, desired=1, match={"app": "x"}),
        ],
        pod_selector="",
        clock=FixedClock(),
    )
    assert base["owners"] == {
        "uid-web-abc": {"kind": "ReplicaSet", "name": "web-abc", "namespace": "default", "ready": 2},
        "uid-db": {"kind": "StatefulSet", "name": "db", "namespace": "default", "ready": 1},
    }
    assert base["pdbs"] == ["default/web"]  # only budgets covering an evicted pod


def test_baseline_leaves_out_daemonset_pods_pods_the_selector_spares_and_finished_pods() -> None:
    on_node = [
        pod("agent-x", owner=("DaemonSet", "agent"), labels={"app": "agent"}),
        pod("db-0", owner=("StatefulSet", "db"), labels={"app": "db"}),
        pod("job-1", owner=("Job", "job"), phase="Succeeded", labels={"app": "job"}),
        pod("web-1", labels={"app": "web"}),
    ]
    base = baseline(
        node_pods=on_node,
        namespace_pods=on_node,
        pdbs=[
            pdb("agent", healthy=3, desired=3, match={"app": "agent"}),
            pdb("db", healthy=1, desired=1, match={"app": "db"}),
        ],
        pod_selector="app!=db",
        clock=FixedClock(),
    )
    assert set(base["owners"]) == {"uid-web-abc"}
    assert base["pdbs"] == []


def test_baseline_skips_a_bare_pod_before_the_owned_ones() -> None:
    on_node = [pod("a-bare", owner=None), pod("b-web")]  # a bare pod is evicted (force), owns nothing
    base = baseline(node_pods=on_node, namespace_pods=on_node, pdbs=[], pod_selector="", clock=FixedClock())
    assert base["owners"] == {
        "uid-web-abc": {"kind": "ReplicaSet", "name": "web-abc", "namespace": "default", "ready": 1}
    }


def test_baseline_of_objects_without_a_namespace_uses_the_empty_one() -> None:
    bare = pod("web-1", labels={"app": "web"})
    del bare["metadata"]["namespace"]
    budget = pdb("web", healthy=1, desired=1, match={"app": "web"})
    del budget["metadata"]["namespace"]
    budget_elsewhere = pdb("other", healthy=1, desired=1, match={"app": "web"}, namespace="x")
    base = baseline(
        node_pods=[bare],
        namespace_pods=[bare],
        pdbs=[budget, budget_elsewhere],
        pod_selector="",
        clock=FixedClock(),
    )
    assert base["owners"]["uid-web-abc"]["namespace"] == ""
    assert base["pdbs"] == ["/web"]
    short = {**budget, "status": {"currentHealthy": 0, "desiredHealthy": 1}}
    assert pdbs_problem([short], names=["/web"]) == "PodDisruptionBudget /web has 0 healthy pods, needs 1"


def test_baseline_of_a_node_with_nothing_to_evict_is_empty() -> None:
    base = baseline(node_pods=[], namespace_pods=[], pdbs=[], pod_selector="", clock=FixedClock())
    assert base == {"owners": {}, "pdbs": []}


# --- (a) the pods on the node -----------------------------------------------------------------


@pytest.mark.parametrize(
    "reason", ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerError"]
)
def test_a_pod_on_the_node_waiting_in_a_crash_reason_is_named_with_its_container(reason: str) -> None:
    problem = node_pods_problem([pod("ok"), pod("db-0", ready=False, waiting=reason)], node="n1")
    assert problem == f"pod default/db-0 on n1: container app is in {reason}"


def test_a_pod_on_the_node_that_is_not_ready_is_named() -> None:
    assert (
        node_pods_problem([pod("b"), pod("a", ready=False)], node="n1") == "pod default/a on n1 is not Ready"
    )


def test_a_pod_still_creating_its_container_is_not_ready_but_not_trouble() -> None:
    assert container_trouble(pod("x", ready=False, waiting="ContainerCreating")) is None
    assert node_pods_problem([pod("x", ready=False, waiting="ContainerCreating")], node="n1") == (
        "pod default/x on n1 is not Ready"
    )


def test_finished_and_terminating_pods_on_the_node_do_not_hold_the_gate() -> None:
    pods = [
        pod("done", ready=False, phase="Succeeded"),
        pod("failed", ready=False, phase="Failed"),
        pod("going", ready=False, deleting=True, waiting="CrashLoopBackOff"),
        pod("fine"),
    ]
    assert node_pods_problem(pods, node="n1") is None


def test_a_finished_pod_before_a_broken_one_does_not_hide_it() -> None:
    pods = [pod("a-done", ready=False, phase="Succeeded"), pod("b", ready=False)]
    assert node_pods_problem(pods, node="n1") == "pod default/b on n1 is not Ready"


def test_the_first_pod_in_name_order_is_named() -> None:
    pods = [pod("z", ready=False), pod("a", ready=False, namespace="zz"), pod("b", ready=False)]
    assert node_pods_problem(pods, node="n1") == "pod default/b on n1 is not Ready"


# --- (b) the controllers of evicted pods ---------------------------------------------------


def test_a_controller_back_to_its_ready_count_passes_even_on_other_nodes() -> None:
    pods = [pod(f"web-{i}", node=f"n{i}") for i in range(3)]
    assert owners_problem(pods, owners=WEB) is None


def test_a_controller_with_more_ready_pods_than_before_passes() -> None:
    assert owners_problem([pod(f"web-{i}") for i in range(4)], owners=WEB) is None


def test_a_controller_one_ready_pod_short_is_named_with_both_counts() -> None:
    pods = [pod("web-1"), pod("web-2"), pod("web-3", ready=False)]
    assert (
        owners_problem(pods, owners=WEB)
        == "ReplicaSet default/web-abc has 2 Ready pods, had 3 before the drain"
    )


def test_a_controller_short_because_a_replacement_cannot_pull_its_image_says_so() -> None:
    pods = [pod("web-1"), pod("web-2"), pod("web-9", node="n2", ready=False, waiting="ImagePullBackOff")]
    assert owners_problem(pods, owners=WEB) == (
        "ReplicaSet default/web-abc has 2 Ready pods, had 3 before the drain; "
        "pod default/web-9: container app is in ImagePullBackOff"
    )


def test_terminating_and_foreign_pods_do_not_count_towards_a_controller() -> None:
    pods = [
        pod("web-1"),
        pod("web-2"),
        pod("web-old", deleting=True),
        pod("imposter", owner=("ReplicaSet", "other")),
        pod("bare", owner=None),
    ]
    assert (
        owners_problem(pods, owners=WEB)
        == "ReplicaSet default/web-abc has 2 Ready pods, had 3 before the drain"
    )


def test_a_controller_whose_pods_are_all_gone_is_named_with_zero() -> None:
    owners = {"uid-db": {"kind": "StatefulSet", "name": "db", "namespace": "data", "ready": 1}}
    assert owners_problem([], owners=owners) == "StatefulSet data/db has 0 Ready pods, had 1 before the drain"


def test_the_first_short_controller_by_namespace_and_name_is_named() -> None:
    owners = {  # uids in another order than names: the order is by namespace, then name
        "uid-1": {"kind": "ReplicaSet", "name": "b", "namespace": "default", "ready": 1},
        "uid-2": {"kind": "ReplicaSet", "name": "a", "namespace": "default", "ready": 1},
        "uid-0": {"kind": "ReplicaSet", "name": "a", "namespace": "zz", "ready": 1},
    }
    assert (
        owners_problem([], owners=owners) == "ReplicaSet default/a has 0 Ready pods, had 1 before the drain"
    )


def test_pods_of_no_known_controller_before_the_others_do_not_stop_the_count() -> None:
    pods = [pod("bare", owner=None), pod("other", owner=("ReplicaSet", "other"))]
    pods += [pod(f"web-{i}") for i in range(3)]
    assert owners_problem(pods, owners=WEB) is None


def test_a_controller_with_no_ready_pods_before_the_drain_never_holds_the_gate() -> None:
    owners = {"uid-web-abc": {"kind": "ReplicaSet", "name": "web-abc", "namespace": "default", "ready": 0}}
    assert owners_problem([pod("web-1", ready=False, waiting="CrashLoopBackOff")], owners=owners) is None


# --- (c) the covering budgets ---------------------------------------------------------------


def test_a_covering_budget_below_its_desired_health_is_named() -> None:
    budgets = [pdb("web", healthy=1, desired=2, match={"app": "web"})]
    assert pdbs_problem(budgets, names=["default/web"]) == (
        "PodDisruptionBudget default/web has 1 healthy pods, needs 2"
    )


def test_a_covering_budget_at_its_desired_health_passes() -> None:
    assert pdbs_problem([pdb("web", healthy=2, desired=2, match={})], names=["default/web"]) is None


def test_an_unhealthy_budget_that_covered_no_evicted_pod_is_not_ours_to_wait_for() -> None:
    budgets = [
        pdb("web", healthy=0, desired=2, match={}),
        pdb("web", healthy=0, desired=1, match={}, namespace="x"),
    ]
    assert pdbs_problem(budgets, names=["other/web"]) is None


def test_an_unrelated_budget_listed_first_does_not_hide_an_unhealthy_one() -> None:
    budgets = [pdb("aaa", healthy=0, desired=1, match={}), pdb("web", healthy=1, desired=2, match={})]
    assert pdbs_problem(budgets, names=["default/web"]) == (
        "PodDisruptionBudget default/web has 1 healthy pods, needs 2"
    )


def test_a_budget_missing_its_current_health_counts_zero_healthy() -> None:
    budget = {"metadata": {"name": "web", "namespace": "default"}, "status": {"desiredHealthy": 1}}
    assert (
        pdbs_problem([budget], names=["default/web"])
        == "PodDisruptionBudget default/web has 0 healthy pods, needs 1"
    )


def test_a_budget_with_no_status_yet_counts_as_zero_of_zero() -> None:
    assert (
        pdbs_problem([{"metadata": {"name": "web", "namespace": "default"}}], names=["default/web"]) is None
    )
