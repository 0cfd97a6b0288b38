"""The real kubectl (v1.32) against the emulator: what an operator and kured-style drains do."""

from __future__ import annotations

import asyncio
import json
import textwrap

import yaml

from rebootd.emulator.emulator import Emulator
from tests.fixtures.emulator import Kubectl


def small_cluster(emulator: Emulator, *, pdb_min_available: int = 2) -> None:
    for index in range(3):
        emulator.add_node(name=f"node-{index}", zone=f"zone-{index % 2}")
    emulator.add_workload(kind="Deployment", name="web", replicas=3, pdb_min_available=pdb_min_available)
    emulator.add_workload(kind="DaemonSet", name="agent", namespace="kube-system")


async def test_get_nodes_prints_server_side_table(emulator: Emulator, kubectl: Kubectl) -> None:
    small_cluster(emulator)
    emulator.set_node_ready(name="node-2", ready=False)
    out = await kubectl("get", "nodes")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["node-0"][1] == "Ready"
    assert rows["node-2"][1] == "NotReady"
    assert rows["node-1"][4] == "v1.32.0"


async def test_get_pods_all_namespaces_wide_shows_nodes(emulator: Emulator, kubectl: Kubectl) -> None:
    small_cluster(emulator)
    out = await kubectl("get", "pods", "-A", "-o", "wide")
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "NAME", "READY"]
    assert "NODE" in lines[0]
    pods = {line.split()[1]: line.split() for line in lines[1:]}
    assert len(pods) == len(emulator.list_objects(kind="Pod")) == 6
    for pod in emulator.list_objects(kind="Pod"):
        row = pods[pod["metadata"]["name"]]
        assert row[0] == pod["metadata"]["namespace"]
        assert row[2] == "1/1"
        assert row[3] == "Running"
        assert row[7] == pod["spec"]["nodeName"]


async def test_cordon_sets_unschedulable_and_uncordon_removes_the_field(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    small_cluster(emulator)
    assert "node/node-0 cordoned" in await kubectl("cordon", "node-0")
    node = emulator.get_object(kind="Node", name="node-0")
    assert node is not None
    assert node["spec"]["unschedulable"] is True
    assert "SchedulingDisabled" in await kubectl("get", "node", "node-0")
    assert "node/node-0 uncordoned" in await kubectl("uncordon", "node-0")
    node = emulator.get_object(kind="Node", name="node-0")
    assert node is not None
    assert "unschedulable" not in node["spec"]
    writes = [r for r in emulator.history if r.kind == "Node" and r.name == "node-0" and r.verb == "patch"]
    assert [(r.unschedulable_before, r.unschedulable_after) for r in writes] == [(False, True), (True, False)]
    assert all(r.client == "anonymous" for r in writes)


async def test_drain_evicts_when_the_budget_allows_and_pods_come_back_elsewhere(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    small_cluster(emulator)
    emulator.add_workload(kind="Deployment", name="cache", replicas=1, nodes=["node-1"], empty_dir=True)
    result = await kubectl.run(
        "drain", "node-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s"
    )
    assert result.returncode == 0, result.stderr
    assert "node/node-1 drained" in result.stdout
    assert "evicted" in result.stdout
    evictions = [r for r in emulator.history if r.event == "eviction"]
    assert {r.name.rsplit("-", 2)[0] for r in evictions} == {"web", "cache"}
    web_eviction = next(r for r in evictions if r.name.startswith("web"))
    assert web_eviction.pdb == "web"
    assert web_eviction.disruptions_allowed == 1
    on_node = [p for p in emulator.list_objects(kind="Pod") if p["spec"].get("nodeName") == "node-1"]
    assert [p["metadata"]["name"].rsplit("-", 1)[0] for p in on_node] == ["agent"]  # DaemonSet pod stays
    assert len([p for p in emulator.list_objects(kind="Pod") if p["metadata"]["name"].startswith("web")]) == 3


async def test_drain_blocked_by_budget_retries_on_429_then_fails_at_timeout(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    small_cluster(emulator, pdb_min_available=3)
    result = await kubectl.run(
        "drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=6s"
    )
    assert result.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in result.stderr
    assert result.stderr.count("will retry after 5s") == 2  # attempts at 0 s and 5 s, timeout before 10 s
    assert emulator.request_counts[("anonymous", "create")] == 2  # both eviction POSTs answered 429
    assert "global timeout reached: 6s" in result.stderr
    assert not [r for r in emulator.history if r.event == "eviction"]
    node = emulator.get_object(kind="Node", name="node-0")
    assert node is not None
    assert node["spec"]["unschedulable"] is True


async def test_annotate_label_and_taint_change_the_node(emulator: Emulator, kubectl: Kubectl) -> None:
    small_cluster(emulator)
    await kubectl("annotate", "node", "node-0", "rebootd.io/phase=draining")
    await kubectl("label", "node", "node-0", "rebootd.io/reboot=pending")
    await kubectl("taint", "node", "node-0", "rebootd.io/rebooting=true:NoSchedule")
    node = emulator.get_object(kind="Node", name="node-0")
    assert node is not None
    assert node["metadata"]["annotations"]["rebootd.io/phase"] == "draining"
    assert node["metadata"]["labels"]["rebootd.io/reboot"] == "pending"
    assert node["spec"]["taints"] == [
        {"key": "rebootd.io/rebooting", "value": "true", "effect": "NoSchedule"}
    ]
    await kubectl("annotate", "node", "node-0", "rebootd.io/phase-")
    await kubectl("label", "node", "node-0", "rebootd.io/reboot-")
    await kubectl("taint", "node", "node-0", "rebootd.io/rebooting:NoSchedule-")
    node = emulator.get_object(kind="Node", name="node-0")
    assert node is not None
    assert "rebootd.io/phase" not in node["metadata"]["annotations"]
    assert "rebootd.io/reboot" not in node["metadata"]["labels"]
    assert "taints" not in node["spec"]


async def test_describe_node_lists_its_events(emulator: Emulator, kubectl: Kubectl) -> None:
    small_cluster(emulator)
    emulator.reboot_node(name="node-1")

    def ready_again() -> bool:
        node = emulator.get_object(kind="Node", name="node-1")
        return node is not None and node["status"]["conditions"][-1]["status"] == "True"

    await emulator.wait_until(ready_again)
    out = await kubectl("describe", "node", "node-1")
    events = out.split("Events:", 1)[1]
    assert "Rebooted" in events
    assert "has been rebooted, boot id:" in events
    assert "NodeNotReady" in events
    assert "NodeReady" in events
    assert "Unschedulable:      false" in out or "Unschedulable:  false" in out


async def test_get_lease_as_yaml(emulator: Emulator, kubectl: Kubectl) -> None:
    manifest = textwrap.dedent(
        """
        apiVersion: coordination.k8s.io/v1
        kind: Lease
        metadata:
          name: rebootd
          namespace: kube-system
        spec:
          holderIdentity: node-0
          leaseDurationSeconds: 60
          renewTime: "2026-01-02T03:04:05.123456Z"
        """
    )
    await kubectl("create", "-f", "-", stdin=manifest)
    lease = yaml.safe_load(await kubectl("get", "lease", "rebootd", "-n", "kube-system", "-o", "yaml"))
    assert lease["kind"] == "Lease"
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["spec"] == {
        "holderIdentity": "node-0",
        "leaseDurationSeconds": 60,
        "renewTime": "2026-01-02T03:04:05.123456Z",
    }
    assert lease["metadata"]["resourceVersion"].isdigit()
    table = await kubectl("get", "lease", "-n", "kube-system")
    assert table.splitlines()[0].split() == ["NAME", "HOLDER", "AGE"]
    assert table.splitlines()[1].split()[:2] == ["rebootd", "node-0"]


async def test_create_lease_with_bad_microtime_fails_with_bad_request(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    manifest = json.dumps(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"holderIdentity": "x", "renewTime": "2026-01-02T03:04:05Z"},
        }
    )
    result = await kubectl.run("create", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    assert "BadRequest" in result.stderr or "cannot be handled as a Lease" in result.stderr
    assert 'cannot parse "Z" as ".000000"' in result.stderr
    assert emulator.get_object(kind="Lease", namespace="default", name="bad") is None


async def test_get_watch_receives_a_change(emulator: Emulator, kubectl: Kubectl) -> None:
    small_cluster(emulator)
    process = await kubectl.start("get", "nodes", "--watch", "--request-timeout=20s")
    assert process.stdout is not None
    try:
        seen: list[str] = []
        async with asyncio.timeout(20):
            while len(seen) < 4:  # header + 3 nodes
                seen.append((await process.stdout.readline()).decode())
            await asyncio.sleep(0.3)  # let kubectl start its watch after printing the list
            emulator.set_node_ready(name="node-1", ready=False)
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "kubectl get --watch ended early"
                if line.split()[:2] == ["node-1", "NotReady"]:
                    break
    finally:
        process.kill()
        await process.wait()
    assert seen[0].split()[:2] == ["NAME", "STATUS"]


async def test_graceful_delete_pod_marks_then_removes_it(emulator: Emulator, kubectl: Kubectl) -> None:
    emulator.add_node(name="node-0")
    emulator.add_pod(name="lonely", node="node-0", termination_grace_seconds=30)
    out = await kubectl("delete", "pod", "lonely", "--timeout=20s")
    assert 'pod "lonely" deleted' in out
    assert emulator.get_object(kind="Pod", namespace="default", name="lonely") is None
    writes = [(r.client, r.verb) for r in emulator.history if r.kind == "Pod" and r.name == "lonely"]
    # kubectl marks the pod (deletionTimestamp, grace 30 s scaled by the test timing), kubelet removes it
    assert writes[-2:] == [("anonymous", "delete"), ("kubelet", "delete")]


async def test_apply_creates_then_updates_and_server_side_apply_works(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    manifest = textwrap.dedent(
        """
        apiVersion: coordination.k8s.io/v1
        kind: Lease
        metadata:
          name: applied
        spec:
          holderIdentity: first
          renewTime: "2026-01-02T03:04:05.000000Z"
        """
    )
    assert "lease.coordination.k8s.io/applied created" in await kubectl("apply", "-f", "-", stdin=manifest)
    second = manifest.replace("holderIdentity: first", "holderIdentity: second")
    assert "lease.coordination.k8s.io/applied configured" in await kubectl("apply", "-f", "-", stdin=second)
    lease = emulator.get_object(kind="Lease", namespace="default", name="applied")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "second"
    assert "kubectl.kubernetes.io/last-applied-configuration" in lease["metadata"]["annotations"]
    third = manifest.replace("holderIdentity: first", "holderIdentity: third")
    assert "serverside-applied" in await kubectl("apply", "--server-side", "-f", "-", stdin=third)
    lease = emulator.get_object(kind="Lease", namespace="default", name="applied")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "third"


async def test_drain_filters_orphans_mirror_pods_and_missing_daemonsets(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    emulator.add_node(name="node-0")
    emulator.add_node(name="node-1")
    emulator.add_pod(name="orphan", node="node-0")
    emulator.add_pod(name="static", node="node-0", annotations={"kubernetes.io/config.mirror": "abc"})
    emulator.add_pod(name="lost-agent", node="node-0", owner_kind="DaemonSet", owner_name="gone")
    emulator.add_workload(kind="Deployment", name="scratch", replicas=1, nodes=["node-0"], empty_dir=True)
    refused = await kubectl.run("drain", "node-0", "--ignore-daemonsets", "--timeout=20s")
    assert refused.returncode != 0
    # kubectl GETs the DaemonSet of a DaemonSet pod: the 404 text is the apiserver's NotFound message
    assert 'cannot delete daemonsets.apps "gone" not found: default/lost-agent' in refused.stderr
    assert "Pods that declare no controller (use --force to override): default/orphan" in refused.stderr
    assert (
        "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch-"
        in refused.stderr
    )
    drained = await kubectl.run(
        "drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=20s"
    )
    assert drained.returncode == 0, drained.stderr
    assert "ignoring DaemonSet-managed Pods" not in drained.stderr  # its DaemonSet is gone: an orphan
    left = sorted(
        p["metadata"]["name"]
        for p in emulator.list_objects(kind="Pod")
        if p["spec"].get("nodeName") == "node-0"
    )
    assert left == ["static"]  # mirror pods are skipped


async def test_create_with_a_misspelt_field_is_refused_by_server_side_validation(
    emulator: Emulator, kubectl: Kubectl
) -> None:
    manifest = json.dumps(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "typo", "namespace": "default"},
            "spec": {"holderIdentiy": "x"},
        }
    )
    result = await kubectl.run("create", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.holderIdentiy"' in result.stderr
    relaxed = await kubectl.run("create", "--validate=warn", "-f", "-", stdin=manifest)
    assert relaxed.returncode == 0, relaxed.stderr
    assert 'unknown field "spec.holderIdentiy"' in relaxed.stderr  # kubectl prints the Warning header
    lease = emulator.get_object(kind="Lease", namespace="default", name="typo")
    assert lease is not None
    assert lease["spec"] == {}
