"""`kubectl drain` and rebootd's drain pick the same pods on the real kube-apiserver.

Two twin Nodes (no kubelet is needed to decide which pods go: a pod is on a node once it is bound
to it) carry the same mix: ReplicaSet pods, a DaemonSet pod made by the real DaemonSet
controller, a bare pod, a pod with an emptyDir, a mirror pod and a pod that has finished. The
ReplicaSets and the DaemonSet name a scheduler that does not exist, so their pods are bound here
through `pods/binding` as a scheduler would, and their replacements stay unbound (they never
land on a drained node). Every pod has a termination grace of 0, so an admitted eviction removes
it at once, as the kubelet would after the grace.

On node B, `kubectl drain --dry-run=server` lists what it would evict, then rebootd's
`drain_node` drains B for real: it evicts exactly those pods and leaves exactly the others. On
node A the real `kubectl drain` drains for real: the same kinds of pods go and stay as on B.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rebootd.controlplane import ControlPlane
from rebootd.drain import DrainOptions, drain_node
from rebootd.kube import Kube
from tests.fixtures.controlplane import run_kubectl

NAMESPACE = "drain-agree"
NODES = ("drain-a", "drain-b")
LABEL = "rebootd-test/drain"
NO_SCHEDULER = "rebootd-test-none"
KUBECTL_FLAGS = ("--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=60s")
EVICTED_ROLES = ["bare", "done", "rs", "rs", "scratch"]
KEPT_ROLES = ["agent", "mirror"]
WAIT_SECONDS = 30.0
TOLERATE_DOWN = [  # the node lifecycle controller taints a Node without a kubelet; not cordons
    {"key": key, "operator": "Exists"}
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
]


def pod_spec(**extra: Any) -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": 0,
        "tolerations": TOLERATE_DOWN,
        "containers": [{"name": "c", "image": "registry.invalid/pause:1"}],
        **extra,
    }


def bare_pod(name: str, node: str, role: str, **extra: Any) -> dict[str, Any]:
    annotations = extra.pop("annotations", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"role": role}, "annotations": annotations},
        "spec": pod_spec(nodeName=node, **extra),
    }


def replica_set(node: str) -> dict[str, Any]:
    labels = {"role": "rs", "target": node}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": f"rs-{node}"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(schedulerName=NO_SCHEDULER)},
        },
    }


DAEMON_SET = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "agent"},
    "spec": {
        "selector": {"matchLabels": {"role": "agent"}},
        "template": {
            "metadata": {"labels": {"role": "agent"}},
            "spec": pod_spec(schedulerName=NO_SCHEDULER, nodeSelector={LABEL: "yes"}),
        },
    },
}


def api(plane: ControlPlane, method: str, path: str, body: Any = None) -> Any:
    return plane.request(method, path, body=body)


def pods(plane: ControlPlane) -> list[dict[str, Any]]:
    return list(api(plane, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods")["items"])


def on_node(plane: ControlPlane, node: str) -> dict[str, str]:
    """name -> role of the pods bound to `node` and not being deleted."""
    return {
        p["metadata"]["name"]: p["metadata"]["labels"]["role"]
        for p in pods(plane)
        if p["spec"].get("nodeName") == node and not p["metadata"].get("deletionTimestamp")
    }


def bind_pending(plane: ControlPlane) -> None:
    """Bind each unbound pod of the namespace to its node, as a scheduler would: a ReplicaSet's pod
    to its `target`, a DaemonSet's pod to the node its affinity names."""
    for pod in pods(plane):
        if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            continue
        target = pod["metadata"]["labels"].get("target")
        if target is None:
            terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            target = terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        name = pod["metadata"]["name"]
        api(
            plane,
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/binding",
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": target},
            },
        )


def wait_for(plane: ControlPlane, node: str, roles: list[str]) -> dict[str, str]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        bind_pending(plane)
        found = on_node(plane, node)
        if sorted(found.values()) == roles:
            return found
        assert time.monotonic() < deadline, f"{node}: {sorted(found.values())} instead of {roles}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def twins(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """Two Nodes with the same pods; everything deleted on the way out."""
    plane = control_plane
    api(
        plane,
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    ns = f"/api/v1/namespaces/{NAMESPACE}"
    try:
        for node in NODES:
            api(
                plane,
                "POST",
                "/api/v1/nodes",
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {LABEL: "yes"}}},
            )
            api(plane, "POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets", replica_set(node))
            api(plane, "POST", f"{ns}/pods", bare_pod(f"bare-{node}", node, "bare"))
            api(
                plane,
                "POST",
                f"{ns}/pods",
                bare_pod(f"scratch-{node}", node, "scratch", volumes=[{"name": "tmp", "emptyDir": {}}]),
            )
            api(
                plane,
                "POST",
                f"{ns}/pods",
                bare_pod(f"mirror-{node}", node, "mirror", annotations={"kubernetes.io/config.mirror": "x"}),
            )
            done = api(plane, "POST", f"{ns}/pods", bare_pod(f"done-{node}", node, "done"))
            done["status"] = {"phase": "Succeeded"}
            api(plane, "PUT", f"{ns}/pods/done-{node}/status", done)
        api(plane, "POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets", DAEMON_SET)
        for node in NODES:
            wait_for(plane, node, sorted([*EVICTED_ROLES, *KEPT_ROLES]))
        yield plane
    finally:
        for node in NODES:
            api(plane, "DELETE", f"/api/v1/nodes/{node}")
        api(plane, "DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def evicting(output: str) -> set[str]:
    return {m.group(1) for m in re.finditer(rf"evicting pod {NAMESPACE}/(\S+)", output)}


async def test_rebootd_drains_the_pods_kubectl_drain_would_and_kubectl_drains_the_same_kinds(
    twins: ControlPlane, tmp_path: Path
) -> None:
    plane = twins
    before_b = on_node(plane, "drain-b")
    dry = run_kubectl(plane, tmp_path, "drain", "drain-b", *KUBECTL_FLAGS, "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    kubectl_would = evicting(dry.stdout + dry.stderr)
    assert sorted(before_b[name] for name in kubectl_would) == EVICTED_ROLES, dry.stdout
    assert on_node(plane, "drain-b") == before_b  # a dry run changes nothing

    kube = await Kube.connect(kubeconfig=plane.kubeconfig)
    try:
        await kube.patch_node(name="drain-b", patch={"spec": {"unschedulable": True}}, patch_type="strategic")
        result = await drain_node(
            kube, node="drain-b", options=DrainOptions(poll=0.1, retry_429=0.1, timeout=WAIT_SECONDS)
        )
    finally:
        await kube.close()
    assert {pod.name for pod in result.evicted} == kubectl_would
    assert {pod.name for pod in result.skipped} == set(before_b) - kubectl_would
    assert sorted(on_node(plane, "drain-b").values()) == KEPT_ROLES

    before_a = on_node(plane, "drain-a")
    real = run_kubectl(plane, tmp_path, "drain", "drain-a", *KUBECTL_FLAGS)
    assert real.returncode == 0, real.stderr
    assert sorted(before_a[name] for name in evicting(real.stdout + real.stderr)) == EVICTED_ROLES
    assert sorted(on_node(plane, "drain-a").values()) == KEPT_ROLES
    for name in ("drain-a", "drain-b"):  # both cordoned, the replacements never bound to them
        assert api(plane, "GET", f"/api/v1/nodes/{name}")["spec"]["unschedulable"] is True
