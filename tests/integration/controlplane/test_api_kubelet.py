"""The API-only simulated kubelet (rebootd.sim.kubelet) does a kubelet's API work on both servers,
the emulator and the real kube-apiserver, from the same test code: it registers its Node Ready
with a bootID, renews its heartbeat Lease in kube-node-lease the way kubelets do, runs the pods
bound to it (Running and Ready through pods/status), finishes graceful deletes, and on a reboot
goes silent (no renewals) and comes back with a new bootID, its pods restarted.

Each test uses node names of its own and deletes them (and its pods) at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rebootd.controlplane import ControlPlane
from rebootd.emulator.emulator import Emulator
from rebootd.sim.kubelet import LEASE_DURATION_SECONDS, Api, ApiError, ApiMachines, Endpoint, KubeletTiming

TIMING = KubeletTiming(sync=0.05, lease_period=0.2, status_period=0.5, pod_start=0.1, boot_seconds=1.0)
WITHIN = 20.0


@dataclass
class Server:
    kubeconfig: Path
    emulator: Emulator | None
    api: Api
    namespace: str  # one per test: a deleted namespace lingers on a real server


@pytest.fixture(params=["emulator", pytest.param("real", marks=pytest.mark.controlplane)])
def backend(request: pytest.FixtureRequest) -> Emulator | ControlPlane:
    if request.param == "emulator":
        emulator: Emulator = request.getfixturevalue("emulator")
        return emulator
    plane: ControlPlane = request.getfixturevalue("control_plane")
    return plane


@pytest.fixture
async def server(backend: Emulator | ControlPlane, tmp_path: Path) -> AsyncIterator[Server]:
    if isinstance(backend, Emulator):
        kubeconfig = backend.write_kubeconfig(tmp_path / "kubeconfig", token=None)
        emulator: Emulator | None = backend
    else:
        kubeconfig, emulator = backend.kubeconfig, None
    api = Api(endpoint=Endpoint.from_kubeconfig(kubeconfig), user_agent="kubelet-test")
    namespace = f"kubelet-{uuid.uuid4().hex[:8]}"
    try:
        await api.call(
            "POST",
            "/api/v1/namespaces",
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        yield Server(kubeconfig=kubeconfig, emulator=emulator, api=api, namespace=namespace)
    finally:
        await api.call("DELETE", f"/api/v1/namespaces/{namespace}")
        await api.close()


@pytest.fixture
async def machines(server: Server) -> AsyncIterator[ApiMachines]:
    fleet = ApiMachines(kubeconfig=server.kubeconfig, timing=TIMING)
    try:
        yield fleet
    finally:
        await fleet.close()
        for name in fleet.machines:
            await server.api.call("DELETE", f"/api/v1/nodes/{name}")


async def add(server: Server, machines: ApiMachines, name: str) -> None:
    if server.emulator is not None:
        server.emulator.cluster.api_kubelets.add(name)  # the emulator plays no kubelet for it
    await machines.add(name, labels={"topology.kubernetes.io/zone": "zone-a"})


async def eventually(read: Callable[[], Awaitable[Any]], *, within: float = WITHIN) -> Any:
    """`read()`'s value once it is truthy (bounded)."""
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if value:
            return value
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


def ready(obj: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def renewed(lease: dict[str, Any]) -> datetime:
    return datetime.strptime(lease["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ")


async def lease_of(server: Server, node: str) -> dict[str, Any]:
    return await server.api.call(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    )


def pod(name: str, node: str, grace: int = 30) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": grace,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        },
    }


async def test_a_kubelet_registers_its_node_ready_with_a_boot_id_and_renews_its_heartbeat_lease(
    server: Server, machines: ApiMachines
) -> None:
    await add(server, machines, "kl-a")
    node = await server.api.call("GET", "/api/v1/nodes/kl-a")
    assert ready(node)
    assert node["status"]["nodeInfo"]["bootID"] == machines.boot_id("kl-a")
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-a"
    lease = await lease_of(server, "kl-a")
    assert lease["spec"]["holderIdentity"] == "kl-a"
    assert lease["spec"]["leaseDurationSeconds"] == LEASE_DURATION_SECONDS
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = renewed(lease)
    await eventually(lambda: later_renewal(server, "kl-a", first))


async def later_renewal(server: Server, node: str, than: datetime) -> bool:
    return renewed(await lease_of(server, node)) > than


async def test_pods_bound_to_the_node_run_and_graceful_deletes_are_finished(
    server: Server, machines: ApiMachines
) -> None:
    await add(server, machines, "kl-b")
    pods = f"/api/v1/namespaces/{server.namespace}/pods"
    await server.api.call("POST", pods, body=pod("web", "kl-b"))
    running = await eventually(lambda: running_pod(server, "web"))
    assert running["status"]["containerStatuses"][0]["restartCount"] == 0
    assert running["status"]["hostIP"]
    await server.api.call("DELETE", f"{pods}/web")  # graceful: 30 s, scaled by the kubelet's 0.01
    terminating = await server.api.call("GET", f"{pods}/web")
    assert terminating["metadata"]["deletionTimestamp"]
    await eventually(lambda: gone(server, f"{pods}/web"))


async def running_pod(server: Server, name: str) -> dict[str, Any] | None:
    obj = await server.api.call("GET", f"/api/v1/namespaces/{server.namespace}/pods/{name}")
    return obj if obj["status"].get("phase") == "Running" and ready(obj) else None


async def gone(server: Server, path: str) -> bool:
    try:
        await server.api.call("GET", path)
    except ApiError as exc:
        return exc.status == 404
    return False


async def test_a_reboot_silences_the_heartbeat_and_brings_the_node_back_with_a_new_boot_id_and_restarted_pods(
    server: Server, machines: ApiMachines
) -> None:
    await add(server, machines, "kl-c")
    await server.api.call("POST", f"/api/v1/namespaces/{server.namespace}/pods", body=pod("db", "kl-c"))
    await eventually(lambda: running_pod(server, "db"))
    before = machines.boot_id("kl-c")
    await machines.reboot("kl-c")
    silent_from = renewed(await lease_of(server, "kl-c"))
    await asyncio.sleep(TIMING.lease_period * 3)  # several periods: no renewal while down
    assert renewed(await lease_of(server, "kl-c")) == silent_from
    assert not machines.machines["kl-c"].up
    await asyncio.wait_for(machines.wait_ready("kl-c"), timeout=WITHIN)
    node = await server.api.call("GET", "/api/v1/nodes/kl-c")
    assert node["status"]["nodeInfo"]["bootID"] == machines.boot_id("kl-c") != before
    assert ready(node)
    await eventually(lambda: later_renewal(server, "kl-c", silent_from))
    restarted = await eventually(lambda: running_pod(server, "db"))
    assert restarted["status"]["containerStatuses"][0]["restartCount"] == 1
