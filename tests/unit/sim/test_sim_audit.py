"""The audit log turned into the simulator's history (rebootd.sim.audit): the invariants judged
from it catch a misbehaving daemon as they do from the emulator's history. The events are built
in the shape kube-apiserver 1.37 writes them (RequestResponse level for writes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rebootd.sim.audit import Note, client_of, history_from_audit
from rebootd.sim.invariants import check_concurrency, check_pdb_disruptions, disruption_intervals

SA = "system:serviceaccount:kube-system:rebootd"
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit(
    at: float,
    verb: str,
    resource: str,
    name: str,
    *,
    namespace: str = "",
    subresource: str = "",
    user: str = SA,
    agent: str = "rebootd@node-a",
    code: int = 200,
    obj: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ref = {"resource": resource, "name": name, "apiVersion": "v1"}
    if namespace:
        ref["namespace"] = namespace
    if subresource:
        ref["subresource"] = subresource
    event: dict[str, Any] = {
        "kind": "Event",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user},
        "userAgent": agent,
        "objectRef": ref,
        "responseStatus": {"code": code},
        "stageTimestamp": stamp(at),
    }
    if obj is not None:
        event["responseObject"] = obj
    return event


def node(name: str, *, unschedulable: bool = False, ready: bool = True, boot: str = "b1") -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "nodeInfo": {"bootID": boot},
        },
    }


def cordon(at: float, name: str, *, on: bool) -> dict[str, Any]:
    return audit(at, "patch", "nodes", name, agent=f"rebootd@{name}", obj=node(name, unschedulable=on))


def test_the_daemon_identity_comes_from_the_user_agent_and_controllers_from_their_service_account() -> None:
    assert client_of(audit(0, "get", "nodes", "n", agent="rebootd@node-7 extra")) == "rebootd@node-7"
    assert (
        client_of(audit(0, "patch", "nodes", "n", user="admin", agent="kubelet/v1.37.2 (linux)")) == "kubelet"
    )
    controller = audit(
        0, "create", "pods", "p", user="system:serviceaccount:kube-system:replicaset-controller", agent="kcm"
    )
    assert client_of(controller) == "replicaset-controller"


def test_two_nodes_cordoned_at_once_by_their_daemons_fail_concurrency_one_and_one_after_the_other_pass() -> (
    None
):
    zones = {"node-a": "zone-a", "node-b": "zone-b"}
    setup = [audit(0, "create", "nodes", n, user="admin", agent="kubelet/x", obj=node(n)) for n in zones]
    overlapping = [*setup, cordon(1, "node-a", on=True), cordon(2, "node-b", on=True)]
    overlapping += [cordon(3, "node-a", on=False), cordon(4, "node-b", on=False)]
    assert not check_concurrency(
        history_from_audit(overlapping), zones=zones, concurrency=1, zone_concurrency=0
    ).ok
    one_by_one = [*setup, cordon(1, "node-a", on=True), cordon(2, "node-a", on=False)]
    one_by_one += [cordon(3, "node-b", on=True), cordon(4, "node-b", on=False)]
    assert check_concurrency(
        history_from_audit(one_by_one), zones=zones, concurrency=1, zone_concurrency=0
    ).ok


def test_a_reboot_disrupts_the_node_until_its_kubelet_posts_ready_with_a_new_boot_id() -> None:
    kubelet: dict[str, Any] = {"user": "admin", "agent": "kubelet/v1.37.2"}
    events = [
        audit(0, "create", "nodes", "node-a", obj=node("node-a"), **kubelet),
        audit(5, "patch", "nodes", "node-a", subresource="status", obj=node("node-a", boot="b1"), **kubelet),
        audit(7, "patch", "nodes", "node-a", subresource="status", obj=node("node-a", boot="b2"), **kubelet),
    ]
    notes = [
        Note(
            time=T0 + timedelta(seconds=3),
            event="reboot_started",
            client="kubelet",
            node="node-a",
            detail="b1",
        )
    ]
    history = history_from_audit(events, notes)
    assert [r.event for r in history if r.kind == "Node"] == [
        "write",
        "reboot_started",
        "write",
        "write",
        "node_ready",
    ]
    (interval,) = disruption_intervals(history)
    assert interval.end is not None
    assert round(interval.end - interval.start, 3) == 4.0  # down at 3 s, Ready with the new boot at 7 s


def pod(name: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "uid": f"uid-{name}", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def budget(allowed: int) -> dict[str, Any]:
    return {
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        "status": {
            "disruptionsAllowed": allowed,
            "currentHealthy": 2 - (1 - allowed),
            "desiredHealthy": 1,
            "expectedPods": 2,
        },
    }


def evictions_judged(allowed: int, *, granted: bool = True) -> bool:
    controller: dict[str, Any] = {
        "user": "system:serviceaccount:kube-system:disruption-controller",
        "agent": "kcm",
    }
    events = [
        audit(0, "create", "pods", "web-1", namespace="apps", obj=pod("web-1"), user="admin", agent="x"),
        audit(
            0.1,
            "create",
            "pods",
            "web-2",
            namespace="apps",
            obj=pod("web-2", ready=allowed > 0),
            user="admin",
            agent="x",
        ),
        audit(
            1,
            "update",
            "poddisruptionbudgets",
            "web",
            namespace="apps",
            subresource="status",
            obj=budget(allowed),
            **controller,
        ),
        audit(
            2,
            "create",
            "pods",
            "web-1",
            namespace="apps",
            subresource="eviction",
            code=201 if granted else 429,
        ),
    ]
    return check_pdb_disruptions(history_from_audit(events)).ok


def test_an_eviction_granted_while_the_budget_allowed_none_fails_the_pdb_invariant() -> None:
    assert evictions_judged(1)
    assert not evictions_judged(0)
    assert evictions_judged(0, granted=False)  # refused by the server: nothing was taken down


def test_the_launchers_admin_is_the_admin_never_a_rebootd_daemon() -> None:
    event = audit(0, "patch", "nodes", "n", user="rebootd-admin", agent="rebootd-sim-admin")
    assert client_of(event) == "admin"
