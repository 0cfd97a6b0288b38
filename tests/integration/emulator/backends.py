"""The two backends of the contract suite: the project's emulator and the real kube-apiserver.

Rule: a contract test that takes `cluster` runs on both, from the same code: it sets up state
through `Cluster` (nodes and pods as a kubelet would have posted them: created, then their status
written through the status subresource on the real server) and checks the server through
`cluster.raw` (the raw HTTP client, authenticated as an admin on the real server). A difference
the project keeps on purpose is declared in the test with `cluster.differs(reason)`, one found
but not fixed yet with `cluster.emulator_wrong(reason)`: on the real backend the test is then
expected to fail (strict xfail, so a difference that goes away is noticed). The real backend is
one session-wide control plane, emptied after every test.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiohttp
import pytest

from rebootd.controlplane import ControlPlane
from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.http import RawApi

Backend = Literal["emulator", "real"]
T = TypeVar("T")
EVENTUALLY_SECONDS = 20.0
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

# kind -> (API prefix, plural, namespaced)
KINDS: Mapping[str, tuple[str, str, bool]] = {
    "Node": ("/api/v1", "nodes", False),
    "Pod": ("/api/v1", "pods", True),
    "Event": ("/api/v1", "events", True),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
}
# emptied after each test on the real backend (dependents first)
CLEANED = (
    "PodDisruptionBudget",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Pod",
    "Lease",
    "Event",
    "Node",
)


def collection_path(kind: str, *, namespace: str = "default") -> str:
    prefix, plural, namespaced = KINDS[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_status(*, name: str, ready: bool) -> dict[str, Any]:
    """What a kubelet posts for its node."""
    now = _now()
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    conditions = [
        {
            "type": kind,
            "status": "False",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
        for kind, reason, message in pressure
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "kubelet is not ready",
        }
    )
    capacity = {"cpu": "4", "memory": "16318496Ki", "pods": "110", "ephemeral-storage": "102687672Ki"}
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": conditions,
        "addresses": [{"type": "Hostname", "address": name}],
        "nodeInfo": {
            "bootID": secrets.token_hex(16),
            "machineID": secrets.token_hex(16),
            "systemUUID": secrets.token_hex(16),
            "kernelVersion": "6.1.0",
            "osImage": "Debian GNU/Linux 13",
            "containerRuntimeVersion": "containerd://2.0.0",
            "kubeletVersion": "v1.37.2",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def pod_status(pod: Mapping[str, Any], *, phase: str, ready: bool) -> dict[str, Any]:
    """What a kubelet posts for a started (or finished) pod."""
    now = _now()
    containers = pod["spec"]["containers"]
    if phase in ("Succeeded", "Failed"):
        return {
            "phase": phase,
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now, "reason": "PodCompleted"}
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 0 if phase == "Succeeded" else 1,
                            "finishedAt": now,
                            "startedAt": now,
                        }
                    },
                }
                for c in containers
            ],
        }
    flag = "True" if ready else "False"
    return {
        "phase": "Running",
        "startTime": now,
        "conditions": [
            {"type": kind, "status": status, "lastTransitionTime": now}
            for kind, status in (
                ("PodReadyToStartContainers", "True"),
                ("Initialized", "True"),
                ("ContainersReady", flag),
                ("Ready", flag),
                ("PodScheduled", "True"),
            )
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for c in containers
        ],
    }


@dataclass
class Cluster:
    """One backend as the contract tests see it."""

    backend: Backend
    raw: RawApi
    emulator: Emulator | None
    request: pytest.FixtureRequest

    def differs(self, reason: str) -> None:
        """This test checks behaviour the emulator deliberately does not share with the real
        server: on the real backend it must fail (strict xfail)."""
        if self.backend == "real":
            self.request.applymarker(pytest.mark.xfail(reason=f"emulator differs: {reason}", strict=True))

    def emulator_wrong(self, reason: str) -> None:
        """This test checks what the emulator does and the real server does not, a difference not
        (yet) fixed in the emulator: on the real backend it must fail (strict xfail)."""
        if self.backend == "real":
            self.request.applymarker(pytest.mark.xfail(reason=f"emulator wrong: {reason}", strict=True))

    async def add_node(
        self,
        *,
        name: str,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, Any]] | None = None,
        unschedulable: bool = False,
        ready: bool = True,
    ) -> dict[str, Any]:
        if self.emulator is not None:
            return self.emulator.add_node(
                name=name, labels=labels, taints=taints, unschedulable=unschedulable, ready=ready
            )
        node_labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        node_labels.update(labels or {})
        spec: dict[str, Any] = {}
        if unschedulable:
            spec["unschedulable"] = True
        if taints:
            spec["taints"] = [dict(t) for t in taints]
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": node_labels},
            "spec": spec,
        }
        created = await self.raw.post(collection_path("Node"), body)
        assert created.status == 201, created.body
        status = await self.raw.patch(
            f"{collection_path('Node')}/{name}/status",
            {"status": node_status(name=name, ready=ready)},
            content_type="application/merge-patch+json",
        )
        assert status.status == 200, status.body
        return dict(status.body)

    async def add_pod(
        self,
        *,
        name: str,
        node: str | None,
        labels: Mapping[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        termination_grace_seconds: int = 30,
    ) -> dict[str, Any]:
        if self.emulator is not None:
            return self.emulator.add_pod(
                name=name,
                node=node,
                labels=labels,
                phase=phase,
                ready=ready,
                termination_grace_seconds=termination_grace_seconds,
            )
        spec: dict[str, Any] = {
            "containers": [{"name": "app", "image": PAUSE_IMAGE}],
            "terminationGracePeriodSeconds": termination_grace_seconds,
        }
        if node is not None:
            spec["nodeName"] = node
        else:
            spec["schedulerName"] = "manual"  # no scheduler picks it up, as on the emulator
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": dict(labels or {})},
            "spec": spec,
        }
        created = await self.raw.post(collection_path("Pod"), body)
        assert created.status == 201, created.body
        if node is None or phase == "Pending":
            return dict(created.body)
        status = await self.raw.patch(
            f"{collection_path('Pod')}/{name}/status",
            {"status": pod_status(created.body, phase=phase, ready=ready)},
            content_type="application/merge-patch+json",
        )
        assert status.status == 200, status.body
        return dict(status.body)

    async def set_node_ready(self, *, name: str, ready: bool) -> None:
        """The node's kubelet posts Ready (or stops being ready)."""
        if self.emulator is not None:
            self.emulator.set_node_ready(name=name, ready=ready)
            return
        condition = node_status(name=name, ready=ready)["conditions"][-1]
        reply = await self.raw.patch(
            f"{collection_path('Node')}/{name}/status",
            {"status": {"conditions": [condition]}},
            content_type="application/strategic-merge-patch+json",
        )
        assert reply.status == 200, reply.body

    async def get_object(self, *, kind: str, namespace: str = "default", name: str) -> dict[str, Any] | None:
        if self.emulator is not None:
            return self.emulator.get_object(kind=kind, namespace=namespace, name=name)
        reply = await self.raw.get(f"{collection_path(kind, namespace=namespace)}/{name}")
        if reply.status == 404:
            return None
        assert reply.status == 200, reply.body
        return dict(reply.body)

    async def eventually(
        self, read: Callable[[], Awaitable[T | None]], *, within: float = EVENTUALLY_SECONDS
    ) -> T:
        """`await read()` once it returns something, polled (a real controller's work takes a
        moment; the emulator's stand-ins are quicker); fails after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            value = await read()
            if value is not None:
                return value
            assert time.monotonic() < deadline, f"nothing after {within} s"
            await asyncio.sleep(0.1)

    async def resource_version(self) -> int:
        """The server's current resourceVersion (the emulator's counter; a fresh list's version)."""
        if self.emulator is not None:
            return self.emulator.store.resource_version
        reply = await self.raw.get(f"{collection_path('Node')}?limit=1")
        return int(reply.body["metadata"]["resourceVersion"])

    async def empty(self) -> None:
        """Remove what a test left (real backend): finalizers first, then every object, at once."""
        for kind in CLEANED:
            path = collection_path(kind)
            listing = await self.raw.get(path)
            for item in listing.body.get("items", []) if isinstance(listing.body, dict) else []:
                if item["metadata"].get("finalizers"):
                    await self.raw.patch(
                        f"{path}/{item['metadata']['name']}",
                        {"metadata": {"finalizers": None}},
                        content_type="application/merge-patch+json",
                    )
            reply = await self.raw.delete(path, {"gracePeriodSeconds": 0, "propagationPolicy": "Background"})
            assert reply.status == 200, (kind, reply.body)


@contextlib.asynccontextmanager
async def real_raw_api(plane: ControlPlane) -> AsyncIterator[RawApi]:
    """The raw client for the real apiserver: TLS verified against its CA, the admin's token."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    connector = aiohttp.TCPConnector(ssl=context)
    headers = {"Authorization": f"Bearer {plane.admin.token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        yield RawApi(session, plane.url)
