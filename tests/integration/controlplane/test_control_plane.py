"""The real control plane started by the project's launcher: all four components serve the
pinned release, kubectl and rebootd's own Kube facade work against it with the kubeconfigs it
writes, RBAC and ServiceAccount tokens are real, writes reach the audit log, and stopping it
leaves no process behind, even when the code inside fails."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rebootd.controlplane import RELEASE, Binaries, ControlPlane, User, running_control_plane
from rebootd.controlplane.build import versions
from rebootd.controlplane.config import Ports
from rebootd.controlplane.launch import free_ports
from rebootd.kube import Conflict, Kube, KubeError, NotFound
from tests.fixtures.tools import require_binary

KUBECTL_TIMEOUT = 60.0
AUDIT_WAIT_SECONDS = 10.0
MAX_START_SECONDS = 60.0
MAX_RSS_BYTES = 1536 * 1024 * 1024
MICRO = "2026-01-01T00:00:00.000000Z"


def kubectl(
    plane: ControlPlane, tmp_path: Path, *args: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    binary = require_binary("kubectl", install_hint="install kubectl on PATH")
    config = (
        plane.kubeconfig
        if user is None
        else plane.write_kubeconfig(tmp_path / f"{user}.kubeconfig", user=user)
    )
    return subprocess.run(
        [binary, f"--kubeconfig={config}", f"--cache-dir={tmp_path / 'kube-cache'}", *args],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT,
        check=False,
    )


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"rebootd-test": "yes"}}}


def wait_for_audit(plane: ControlPlane, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first audit event that matches, waited for (the log is written as the response goes out)."""
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    while True:
        for event in plane.audit_events():
            if match(event):
                return event
        assert time.monotonic() < deadline, "no matching audit event was written"
        time.sleep(0.1)


def eventually(read: Callable[[], Any], *, within: float = 20.0) -> Any:
    """`read()`'s value once it stops raising an HTTP error (404 until a controller wrote it)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return read()
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_four_binaries_report_the_pinned_release(control_plane_binaries: Binaries) -> None:
    lines = versions(binaries=control_plane_binaries)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert lines[name] == f"Kubernetes {RELEASE}", lines
    assert lines["etcd"].startswith("etcd Version: 3."), lines


def test_all_four_components_serve_and_the_apiserver_reports_the_release(control_plane: ControlPlane) -> None:
    assert set(control_plane.pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    assert all(alive(pid) for pid in control_plane.pids.values()), control_plane.pids
    assert control_plane.version["gitVersion"] == RELEASE
    assert control_plane.request("GET", "/readyz") == "ok"
    # the controller-manager is working: it created the default ServiceAccount and publishes the root CA
    root_ca = eventually(
        lambda: control_plane.request("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
    )
    assert "BEGIN CERTIFICATE" in root_ca["data"]["ca.crt"]


def test_start_time_and_memory_of_the_four_processes(control_plane: ControlPlane) -> None:
    rss = control_plane.rss_bytes()
    ready = {name: round(c.ready_after or 0.0, 2) for name, c in control_plane.components.items()}
    print(  # the figures the issue asks for; `nox -s controlplane` shows them with -s
        f"\ncontrol plane started in {control_plane.start_seconds:.1f} s; ready after (s) {ready}; "
        f"RSS MiB { {name: round(value / 2**20) for name, value in rss.items()} } "
        f"total {sum(rss.values()) / 2**20:.0f} MiB"
    )
    assert control_plane.start_seconds < MAX_START_SECONDS
    assert all(value > 0 for value in rss.values()), rss
    assert sum(rss.values()) < MAX_RSS_BYTES


def test_kubectl_reads_version_and_nodes_with_the_admin_kubeconfig(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    version = kubectl(control_plane, tmp_path, "version", "-o", "json")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == RELEASE
    control_plane.request("POST", "/api/v1/nodes", body=node("kubectl-node"))
    nodes = kubectl(control_plane, tmp_path, "get", "nodes", "-l", "rebootd-test=yes", "-o", "name")
    assert nodes.returncode == 0, nodes.stderr
    assert "node/kubectl-node" in nodes.stdout.split()


def test_rbac_forbids_a_plain_user_what_it_was_not_granted(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    denied = kubectl(control_plane, tmp_path, "get", "nodes", user="alice")
    assert denied.returncode != 0
    assert 'User "alice" cannot list resource "nodes"' in denied.stderr
    with pytest.raises(urllib.error.HTTPError) as refused:
        control_plane.request("GET", "/api/v1/nodes", user="bob")
    assert refused.value.code == 403


def test_service_account_tokens_from_token_request_authenticate(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    control_plane.request(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "token-test"}},
    )
    token = kubectl(control_plane, tmp_path, "create", "token", "token-test", "--duration=10m")
    assert token.returncode == 0, token.stderr
    sa = User(name="token-test", token=token.stdout.strip())
    whoami = subprocess.run(
        [
            require_binary("kubectl", install_hint="install kubectl on PATH"),
            f"--kubeconfig={control_plane.write_kubeconfig(tmp_path / 'sa.kubeconfig', user=sa)}",
            f"--cache-dir={tmp_path / 'kube-cache'}",
            "auth",
            "whoami",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT,
        check=False,
    )
    assert whoami.returncode == 0, whoami.stderr
    user_info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user_info["username"] == "system:serviceaccount:default:token-test"


async def test_the_kube_facade_creates_reads_and_updates_a_lease_patches_a_node_and_lists_pods(
    control_plane: ControlPlane,
) -> None:
    await asyncio.to_thread(control_plane.request, "POST", "/api/v1/nodes", body=node("facade-node"))
    kube = await Kube.connect(kubeconfig=control_plane.kubeconfig)
    try:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "facade-lease", "namespace": "default"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30, "renewTime": MICRO},
        }
        created = await kube.create_lease(namespace="default", body=body)
        read = await kube.get_lease(namespace="default", name="facade-lease")
        assert read["metadata"]["uid"] == created["metadata"]["uid"]
        assert read["spec"]["renewTime"] == MICRO
        read["spec"]["holderIdentity"] = "a,b"
        updated = await kube.replace_lease(namespace="default", name="facade-lease", body=read)
        assert updated["spec"]["holderIdentity"] == "a,b"
        with pytest.raises(Conflict):  # the version we read is stale now
            await kube.replace_lease(namespace="default", name="facade-lease", body=read)

        patched = await kube.patch_node(
            name="facade-node",
            patch={"metadata": {"annotations": {"rebootd.io/test": "1"}}, "spec": {"unschedulable": True}},
            patch_type="strategic",
        )
        assert patched["spec"]["unschedulable"] is True
        assert patched["metadata"]["annotations"]["rebootd.io/test"] == "1"
        assert (await kube.get_node(name="facade-node"))["spec"]["unschedulable"] is True

        pods = await kube.list_pods(namespace="kube-system")
        assert isinstance(pods, list)
        assert kube.requests["create"] >= 1
    finally:
        await kube.close()


def test_the_audit_log_records_a_write_with_its_user_and_response(control_plane: ControlPlane) -> None:
    control_plane.request(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        body={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "audited"},
            "spec": {"holderIdentity": "x"},
        },
    )
    event = wait_for_audit(
        control_plane,
        lambda e: (
            e.get("verb") == "create"
            and e.get("objectRef", {}).get("resource") == "leases"
            and e.get("objectRef", {}).get("name") == "audited"
        ),
    )
    assert event["stage"] == "ResponseComplete"
    assert event["user"]["username"] == "rebootd-admin"
    assert event["responseStatus"]["code"] == 201
    assert event["responseObject"]["spec"]["holderIdentity"] == "x"
    assert not [e for e in control_plane.audit_events() if e.get("verb") in {"get", "list", "watch"}]


def fail_inside(*, binaries: Binaries, work_dir: Path, pids: dict[str, int]) -> None:
    """Start a control plane, note its processes, and fail inside it as a broken test would."""
    with running_control_plane(binaries=binaries, work_dir=work_dir) as plane:
        pids.update(plane.pids)
        assert all(alive(pid) for pid in pids.values())
        raise RuntimeError("the test body failed")


def test_stopping_leaves_no_process_even_when_the_body_fails(
    control_plane_binaries: Binaries, tmp_path: Path
) -> None:
    pids: dict[str, int] = {}
    with pytest.raises(RuntimeError, match="the test body failed"):
        fail_inside(binaries=control_plane_binaries, work_dir=tmp_path / "run", pids=pids)
    assert len(pids) == 4
    for name, pid in pids.items():
        assert not alive(pid), f"{name} ({pid}) survived"
        with pytest.raises(ProcessLookupError):  # nothing left in its process group either
            os.killpg(pid, 0)


def test_a_start_that_lost_its_port_to_another_process_is_retried_on_new_ports(
    control_plane_binaries: Binaries, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        chosen: list[Ports] = []

        def ports() -> Ports:
            fresh = free_ports()
            chosen.append(fresh if chosen else dataclasses.replace(fresh, apiserver=taken))
            return chosen[-1]

        with running_control_plane(
            binaries=control_plane_binaries, work_dir=tmp_path / "run", choose_ports=ports
        ) as plane:
            assert plane.request("GET", "/readyz") == "ok"
            assert plane.ports is not None
            assert plane.ports.apiserver != taken
    assert len(chosen) == 2
    first_log = (tmp_path / "run" / "logs" / "kube-apiserver.log").read_text()
    assert "address already in use" in first_log


async def test_a_service_account_token_is_refused_until_a_role_binding_grants_it(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    sa = await asyncio.to_thread(control_plane.service_account_token, namespace="lp", name="daemon")
    kube = await Kube.connect(kubeconfig=control_plane.write_kubeconfig(tmp_path / "sa.kubeconfig", user=sa))
    try:
        with pytest.raises(KubeError) as refused:
            await kube.get_lease(namespace="lp", name="rebootd")
        assert refused.value.status == 403
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "lease-reader", "namespace": "lp"},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "lease-reader", "namespace": "lp"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "daemon", "namespace": "lp"}],
        }
        rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/lp"
        await asyncio.to_thread(control_plane.request, "POST", f"{rbac}/roles", body=role)
        await asyncio.to_thread(control_plane.request, "POST", f"{rbac}/rolebindings", body=binding)
        with pytest.raises(NotFound):  # allowed now: the Lease just does not exist
            await kube.get_lease(namespace="lp", name="rebootd")
        with pytest.raises(KubeError) as still_refused:  # only what was granted
            await kube.list_nodes()
        assert still_refused.value.status == 403
    finally:
        await kube.close()
