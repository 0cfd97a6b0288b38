"""`rebootd simulate --control-plane real` and a full reboot cycle of real `rebootd run` processes
on the real control plane.

The simulate command (issue 15's done-when) runs as a user runs it; without the binaries it exits
2 naming the command that builds them. The full cycle runs three `rebootd run` processes,
configured only by `REBOOTD_*` variables and holding a real token of the ServiceAccount that the
project's own RBAC (deploy/kustomize/base) binds, on API-only simulated machines; the real
scheduler and controllers move the workload. It is judged from the kube-apiserver's audit log:
every invariant holds, every node rebooted exactly once, and not one request of the daemons was
refused (403), though every one of them, reads included, is in the log.
Each test starts its own control plane, so its audit log holds only its own run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rebootd.controlplane import RELEASE, Binaries, ControlPlane, running_control_plane
from rebootd.controlplane.build import BUILD_COMMAND, find_module_dir
from rebootd.lock import state_of
from rebootd.sim.audit import Note, client_of
from rebootd.sim.kubelet import ApiMachines, KubeletTiming
from rebootd.sim.processes import HostAgent, ProcessNode
from rebootd.sim.realrun import (
    GRACE_SECONDS,
    NAMESPACE,
    SERVICE_ACCOUNT,
    create,
    daemon_env,
    judge,
    layout,
    rbac_documents,
    workload,
)
from rebootd.sim.report import PerNodeMinimum

SIMULATE_TIMEOUT = 300
CYCLE_WITHIN = 180.0
DRAIN, BOOT, RECOVERY, RELEASE_DELAY = 0.5, 1.0, 0.25, 0.25


def rebootd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rebootd", *args],
        capture_output=True,
        text=True,
        timeout=SIMULATE_TIMEOUT,
        check=False,
        env=env,
    )


def test_simulate_on_the_real_control_plane_reboots_5_of_5_with_every_invariant_from_the_audit_log(
    control_plane_binaries: Binaries,
) -> None:
    run = rebootd("simulate", "--control-plane", "real", "--nodes", "5", "--json")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["control_plane"]["name"] == "kube-apiserver"
    assert report["control_plane"]["version"] == RELEASE
    assert report["history_source"] == "kube-apiserver audit log"
    assert (report["nodes"], report["rebooted"]) == (5, 5)
    assert len(report["invariants"]) == 11
    assert all(check["ok"] for check in report["invariants"].values()), report["invariants"]
    assert report["forbidden"] == []
    assert report["max_disrupted"] == 1
    assert report["api_requests"]["by_verb"]["get"] > 0  # the daemons' reads are in the log too


def test_simulate_real_without_the_binaries_exits_2_naming_the_build_command(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    run = rebootd("simulate", "--control-plane", "real", "--nodes", "5", "--json", env=env)
    assert run.returncode == 2, run.stderr
    assert f"`{BUILD_COMMAND}`" in run.stderr
    assert run.stdout == ""


async def test_a_full_cycle_of_rebootd_run_processes_with_real_service_account_tokens_and_no_403(
    control_plane_binaries: Binaries, tmp_path: Path
) -> None:
    with running_control_plane(binaries=control_plane_binaries, work_dir=tmp_path / "plane") as plane:
        base = find_module_dir().parent / "deploy" / "kustomize" / "base"
        for doc in rbac_documents(base):
            create(plane, doc)
        token = plane.service_account_token(namespace=NAMESPACE, name="rebootd")
        kubeconfig = plane.write_kubeconfig(tmp_path / "daemon.kubeconfig", user=token)
        zones = layout(nodes=3, zones=3)
        notes: list[Note] = []
        timing = KubeletTiming(boot_seconds=BOOT, pod_start=RECOVERY, grace_scale=DRAIN / GRACE_SECONDS)
        machines = ApiMachines(kubeconfig=plane.kubeconfig, timing=timing, notes=notes)
        nodes: dict[str, ProcessNode] = {}

        def reboot(name: str) -> bool:  # the host's `systemctl reboot`, asked by the node's daemon
            if name not in nodes:
                return False
            nodes[name].reboot_requested()
            return True

        agent = HostAgent(on_reboot=reboot)
        try:
            for name, zone in zones.items():
                await machines.add(name, labels={"topology.kubernetes.io/zone": zone})
            for doc in workload(replicas=3):
                create(plane, doc)
            await agent.start()
            env = daemon_env(concurrency=1, zone_concurrency=0, drain=DRAIN, boot=BOOT, release=RELEASE_DELAY)
            origin = time.time()
            for name in zones:
                nodes[name] = ProcessNode(
                    emulator=None,
                    name=name,
                    workdir=tmp_path / "nodes" / name,
                    env=env,
                    agent_url=agent.url,
                    host=machines,
                    kubeconfig=kubeconfig,
                )
                nodes[name].require_reboot()
                notes.append(Note(time=machines.clock.now(), event="reboot_needed", client="test", node=name))
                await nodes[name].start()
            deadline = time.monotonic() + CYCLE_WITHIN
            while not all(m.boots >= 2 for m in machines.machines.values()) or not released(plane):
                assert time.monotonic() < deadline, {n: m.boots for n, m in machines.machines.items()}
                await asyncio.sleep(0.3)
        finally:
            for node in nodes.values():
                await node.stop()
            await agent.close()
            await machines.close()
        report, forbidden = await judge(
            plane,
            zones=zones,
            notes=notes,
            concurrency=1,
            zone_concurrency=0,
            minimum=PerNodeMinimum(drain=DRAIN, boot=BOOT, recovery=RECOVERY, release_delay=RELEASE_DELAY),
            origin=origin,
            ended=time.time(),
        )
        events = plane.audit_events()
    assert forbidden == []
    assert all(check.ok for check in report.invariants.values()), report.invariants
    assert report.rebooted == 3
    daemon_requests = [e for e in events if (e.get("user") or {}).get("username") == SERVICE_ACCOUNT]
    assert {client_of(e) for e in daemon_requests} == {f"rebootd@{name}" for name in zones}
    assert {e["verb"] for e in daemon_requests} >= {"get", "list", "watch", "update", "patch", "create"}
    evictions = [e for e in daemon_requests if (e.get("objectRef") or {}).get("subresource") == "eviction"]
    assert evictions, "the drains evicted through the API"
    assert all(node.starts >= 2 for node in nodes.values())  # each daemon restarted after its reboot


def released(plane: ControlPlane) -> bool:
    """The lock Lease holds no slot."""
    lease = plane.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/rebootd")
    return not state_of(lease).holders
