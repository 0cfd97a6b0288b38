"""`rebootd simulate --control-plane real` and a full reboot cycle of real `rebootd run` processes
on the real control plane.

The simulate command (issue 15's done-when) runs as a user runs it; without the binaries it exits
2 naming the command that builds them. The full cycle runs three `rebootd run` processes,
configured only by `REBOOTD_*` variables and holding a real token of the ServiceAccount that the
project's own RBAC (deploy/kustomize/base) binds, on API-only simulated machines; the real
scheduler and controllers move the workload. It is judged from the kube-apiserver's audit log:
every invariant holds, every node rebooted exactly once, and not one request of the daemons was
refused (403), though every one of them, reads included, is in the log.
The simulate command starts its own control plane, as a user's run does; every other test shares
one plane started for the module: each run reads the audit log from its own start on, with its own
node names and workload namespace, and removes its Nodes and namespace when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rebootd.controlplane import RELEASE, Binaries, ControlPlane, running_control_plane
from rebootd.controlplane.build import BUILD_COMMAND, find_module_dir
from rebootd.lock import state_of
from rebootd.sim.audit import Note, client_of, parse_time
from rebootd.sim.invariants import is_rebootd
from rebootd.sim.kubelet import ApiMachines, KubeletTiming
from rebootd.sim.processes import HostAgent, ProcessNode
from rebootd.sim.realplan import RUN_LABEL
from rebootd.sim.realrun import (
    GRACE_SECONDS,
    NAMESPACE,
    SERVICE_ACCOUNT,
    WORKLOAD_NAMESPACE,
    RealConfig,
    RealOutcome,
    clear_lock,
    create,
    daemon_env,
    judge_history,
    layout,
    rbac_documents,
    simulate_real,
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
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = shared_plane
    clear_lock(plane)
    since = datetime.now(UTC)  # the audit log from here on is this test's
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
    report, forbidden, _ = await judge_history(
        plane,
        since=since,
        zones=zones,
        notes=notes,
        concurrency=1,
        zone_concurrency=0,
        minimum=PerNodeMinimum(drain=DRAIN, boot=BOOT, recovery=RECOVERY, release_delay=RELEASE_DELAY),
        origin=origin,
        ended=time.time(),
    )
    events = [e for e in plane.audit_events() if parse_time(str(e["stageTimestamp"])) >= since]
    for name in zones:  # the plane goes on with the scenario runs: none of this run's objects stay
        plane.request("DELETE", f"/api/v1/nodes/{name}")
    plane.request("DELETE", f"/api/v1/namespaces/{WORKLOAD_NAMESPACE}")
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


# -- the scenarios of `rebootd simulate` on one real control plane ----------------------------------
# Each run has its own node names (its prefix), workload namespace and token, on one plane started
# for this module; the lock Lease of the run before is cleared, and the audit log is read from the
# run's start on. Sizes are the smallest each scenario allows, so the module costs little CI time.


@pytest.fixture(scope="module")
def shared_plane(
    control_plane_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    with running_control_plane(
        binaries=control_plane_binaries, work_dir=tmp_path_factory.mktemp("scenarios") / "plane"
    ) as plane:
        yield plane


async def run_scenario(plane: ControlPlane, tmp_path: Path, config: RealConfig) -> RealOutcome:
    try:
        return await simulate_real(
            config, workdir=tmp_path, command=f"scenario {config.scenario}", plane=plane
        )
    finally:
        forget_run(plane, prefix=config.prefix)


def forget_run(plane: ControlPlane, *, prefix: str) -> None:
    """The run's Nodes and workload namespace deleted, so the next run starts among its own."""
    nodes = plane.request("GET", f"/api/v1/nodes?labelSelector={RUN_LABEL}%3D{prefix}")["items"]
    for node in nodes:
        plane.request("DELETE", f"/api/v1/nodes/{node['metadata']['name']}")
    with contextlib.suppress(urllib.error.HTTPError):
        plane.request("DELETE", f"/api/v1/namespaces/{WORKLOAD_NAMESPACE}-{prefix}")


def failed(outcome: RealOutcome) -> str:
    return outcome.render()[-4000:]


def assert_safe(outcome: RealOutcome) -> None:
    assert outcome.report.ok, failed(outcome)
    assert outcome.forbidden == [], outcome.forbidden
    assert outcome.checks, "a scenario states what it expects"
    assert all(ok for ok, _ in outcome.checks), failed(outcome)


async def test_real_pdb_blocked_pins_a_node_until_the_workload_is_scaled_then_every_node_reboots(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = await run_scenario(
        shared_plane, tmp_path, RealConfig(nodes=3, scenario="pdb-blocked", prefix="pdb")
    )
    assert_safe(outcome)
    assert outcome.exit_code == 0, failed(outcome)
    assert (outcome.report.rebooted, outcome.status) == (3, "completed")
    assert any("scale statefulset ledger to 2" in e for e in outcome.events), outcome.events
    timeline = outcome.to_json()["timeline"]
    pinned = next(t for t in timeline if t["node"] == "pdb-001")
    assert all(
        pinned["reboot"] > t["released"] for t in timeline if t["node"] != "pdb-001"
    )  # after the scale


async def test_real_crash_looping_pod_after_a_reboot_halts_the_rollout_naming_it(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = await run_scenario(
        shared_plane, tmp_path, RealConfig(nodes=3, scenario="crashloop-after-reboot", prefix="crash")
    )
    assert_safe(outcome)
    assert (outcome.status, outcome.exit_code) == ("halted", 3), failed(outcome)
    assert outcome.report.rebooted == 2  # the first node, then the one whose pod crash-loops; no more


async def test_real_node_that_never_boots_halts_the_rollout(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = await run_scenario(
        shared_plane, tmp_path, RealConfig(nodes=3, scenario="node-fails-to-boot", prefix="noboot")
    )
    assert_safe(outcome)
    assert (outcome.status, outcome.exit_code) == ("halted", 3), failed(outcome)


async def test_real_admin_cordoned_nodes_reboot_and_stay_cordoned(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = await run_scenario(
        shared_plane, tmp_path, RealConfig(nodes=3, scenario="admin-cordoned", prefix="adm")
    )
    assert_safe(outcome)
    assert outcome.exit_code == 0, failed(outcome)
    assert "admin cordons kept" in outcome.report.invariants["cordons"].detail
    cordons = [
        r
        for r in outcome.history
        if r.event == "write"
        and r.kind == "Node"
        and r.unschedulable_after
        and r.unschedulable_before is False
    ]
    assert {r.name for r in cordons if not is_rebootd(r.client)} == {"adm-001"}  # the admin's, before the run
    assert {r.name for r in cordons if is_rebootd(r.client)} == {"adm-000", "adm-002"}


async def test_real_window_no_reboot_before_it_opens_on_the_wall_clock(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = await run_scenario(shared_plane, tmp_path, RealConfig(nodes=2, scenario="window", prefix="win"))
    assert_safe(outcome)
    assert outcome.exit_code == 0, failed(outcome)
    assert outcome.report.invariants["window"].detail == "every reboot started inside the window"


async def test_real_zone_limit_two_at_once_never_two_in_one_zone(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    config = RealConfig(nodes=4, zones=2, concurrency=2, zone_concurrency=1, prefix="zones")
    outcome = await run_scenario(shared_plane, tmp_path, config)
    assert_safe(outcome)
    assert outcome.exit_code == 0, failed(outcome)
    assert outcome.report.max_disrupted <= 2
    assert max(outcome.report.max_disrupted_per_zone.values()) == 1


async def test_real_failed_reboot_command_halts_in_flight_and_is_not_retried_in_a_loop(
    shared_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = await run_scenario(
        shared_plane, tmp_path, RealConfig(nodes=4, scenario="halt-in-flight", prefix="fail")
    )
    assert_safe(outcome)
    assert (outcome.status, outcome.exit_code) == ("halted", 3), failed(outcome)


@pytest.mark.parametrize(
    ("scenario", "what"),
    [
        ("frozen-holder", "freeze the first daemon to reach it right before its 2nd evict"),
        ("late-kubelet", ""),
        ("duplicate-daemon", "second daemon for"),
    ],
)
async def test_real_named_scenarios_of_the_daemon_side_complete_with_one_reboot_per_node(
    shared_plane: ControlPlane, tmp_path: Path, scenario: str, what: str
) -> None:
    config = RealConfig(nodes=3, scenario=scenario, prefix=scenario.split("-")[0])
    outcome = await run_scenario(shared_plane, tmp_path, config)
    assert_safe(outcome)
    assert (outcome.status, outcome.exit_code, outcome.report.rebooted) == ("completed", 0, 3), failed(
        outcome
    )
    assert any(what in e for e in outcome.events) if what else not outcome.events
    if scenario == "frozen-holder":
        assert any("was frozen 1 time(s)" in e for e in outcome.events), outcome.events


def test_simulate_real_refuses_a_scenario_that_needs_an_emulator_fault_with_exit_2() -> None:
    run = rebootd("simulate", "--control-plane", "real", "--scenario", "lost-response", "--nodes", "5")
    assert run.returncode == 2
    assert "cannot run with --control-plane real" in run.stderr
    assert "a real kube-apiserver cannot hold a write nor lose its response" in run.stderr
    assert run.stdout == ""
