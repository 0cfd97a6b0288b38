"""`rebootd simulate --from-cluster` on the real control plane only reads: the proof from the
kube-apiserver's audit log.

The session's control plane holds a few Nodes, a Deployment with its PDB, a Secret and a
ConfigMap, and an installed rebootd DaemonSet whose env mixes literal settings with a
`secretKeyRef`. The what-if runs as a user runs it, with a real token of the ServiceAccount
`kube-system/rebootd-whatif`, bound to a ClusterRole that allows only get/list/watch on the seven
resources a rollout depends on. The launcher's audit policy records that ServiceAccount's reads
(metadata) and every write of anyone (with bodies, refused ones included), so the log shows every
request the command sent: only get/list/watch, of exactly those seven resources, none refused,
no Secret or ConfigMap, and not one write. Everything the test created is deleted afterwards:
the control plane is shared with the session's other tests.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rebootd.controlplane import ControlPlane
from rebootd.controlplane.config import WHATIF_READER
from rebootd.sim.realrun import create

NAMESPACE = "whatif-proof"
READER_NS, READER = "kube-system", "rebootd-whatif"
ROLE = "rebootd-whatif-proof"
NODES = ("whatif-node-a", "whatif-node-b", "whatif-node-c")
SEVEN = {"nodes", "pods", "poddisruptionbudgets", "deployments", "replicasets", "statefulsets", "daemonsets"}
READ_ONLY = {"get", "list", "watch"}
SECRET_VALUE = "s3cr3t-hook-url-never-read"
COMMAND_TIMEOUT = 120
AUDIT_WAIT = 10.0


def _objects() -> list[dict[str, Any]]:
    labels = {"app": "shop"}
    env = [
        {"name": "REBOOTD_START_TIME", "value": "22:00"},
        {"name": "REBOOTD_END_TIME", "value": "04:00"},
        {"name": "REBOOTD_NOTIFY_URL", "valueFrom": {"secretKeyRef": {"name": "whatif-hooks", "key": "url"}}},
        {"name": "REBOOTD_PERIOD", "valueFrom": {"configMapKeyRef": {"name": "whatif-cm", "key": "period"}}},
    ]
    nodes: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/os": "linux", "topology.kubernetes.io/zone": f"zone-{name[-1]}"},
            },
        }
        for name in NODES
    ]
    return [
        *nodes,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "whatif-hooks", "namespace": READER_NS},
            "stringData": {"url": SECRET_VALUE},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "whatif-cm", "namespace": READER_NS},
            "data": {"period": "5m"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "shop", "namespace": NAMESPACE},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "shop", "image": "registry.invalid/shop:1"}]},
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "shop", "namespace": NAMESPACE},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "rebootd-whatif-proof", "namespace": READER_NS},
            "spec": {
                "selector": {"matchLabels": {"app": "rebootd"}},
                "template": {
                    "metadata": {"labels": {"app": "rebootd"}},
                    "spec": {
                        "containers": [
                            {"name": "rebootd", "image": "registry.invalid/rebootd:1", "env": env}
                        ],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                    },
                },
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": ROLE},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": sorted(READ_ONLY)},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": sorted(READ_ONLY)},
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
                    "verbs": sorted(READ_ONLY),
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": ROLE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": READER_NS}],
        },
    ]


CLEAN_UP = (
    *(f"/api/v1/nodes/{name}" for name in NODES),
    f"/api/v1/namespaces/{NAMESPACE}",
    f"/api/v1/namespaces/{READER_NS}/secrets/whatif-hooks",
    f"/api/v1/namespaces/{READER_NS}/configmaps/whatif-cm",
    f"/apis/apps/v1/namespaces/{READER_NS}/daemonsets/rebootd-whatif-proof",
    f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{ROLE}",
    f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{ROLE}",
    f"/api/v1/namespaces/{READER_NS}/serviceaccounts/{READER}",
)


@pytest.fixture
def seeded(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    try:
        for doc in _objects():
            create(control_plane, doc)
        yield control_plane
    finally:
        for path in CLEAN_UP:
            with contextlib.suppress(urllib.error.HTTPError):
                control_plane.request("DELETE", path)


def _reader_events(plane: ControlPlane, *, since: str) -> list[dict[str, Any]]:
    return [
        e
        for e in plane.audit_events()
        if (e.get("user") or {}).get("username") == WHATIF_READER
        and str(e.get("stageTimestamp", "")) >= since
    ]


def test_from_cluster_on_the_real_apiserver_only_reads_the_seven_resources_and_no_secret(
    seeded: ControlPlane, tmp_path: Path
) -> None:
    plane = seeded
    token = plane.service_account_token(namespace=READER_NS, name=READER)
    kubeconfig = plane.write_kubeconfig(tmp_path / "reader.kubeconfig", user=token)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    out = tmp_path / "snapshot.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rebootd",
            "simulate",
            "--from-cluster",
            "--kubeconfig",
            str(kubeconfig),
            "--snapshot",
            str(out),
            "--snapshot-only",
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The audit log is written as each request completes; give the last lines a moment (bounded).
    deadline = time.monotonic() + AUDIT_WAIT
    events = _reader_events(plane, since=since)
    while {
        (e.get("objectRef") or {}).get("resource") for e in events
    } != SEVEN and time.monotonic() < deadline:
        time.sleep(0.2)
        events = _reader_events(plane, since=since)
    assert events, "the audit log holds no request of the what-if's reader"
    requests = [
        (
            e.get("verb"),
            (e.get("objectRef") or {}).get("resource"),
            (e.get("responseStatus") or {}).get("code"),
        )
        for e in events
        if e.get("stage") == "ResponseComplete"
    ]
    verbs = {verb for verb, _, _ in requests}
    resources = {resource for _, resource, _ in requests}
    assert verbs <= READ_ONLY, requests  # every write (even a refused one) would be in the log
    assert resources == SEVEN, requests
    assert not [r for r in requests if r[2] == 403], requests
    assert not {"secrets", "configmaps"} & resources
    text = out.read_text(encoding="utf-8")
    assert SECRET_VALUE not in text
    assert "REBOOTD_NOTIFY_URL (valueFrom)" in text  # named as not read, its value never fetched
    assert "REBOOTD_START_TIME: '22:00'" in text
    for name in NODES:
        assert f"- name: {name}" in text
