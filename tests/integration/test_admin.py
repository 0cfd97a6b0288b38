"""Operator commands (`rebootd status|pause|resume|unlock`) as a real process against the emulator."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from rebootd.sim.harness import SimCluster
from rebootd.sim.invariants import reboot_counts
from tests.fixtures.cluster import ClusterFactory, all_done, wait_phase
from tests.integration.test_daemon import rebootd_argv


async def rebootd(cluster: SimCluster, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = cluster.emulator.write_kubeconfig(tmp_path / "operator-kubeconfig")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")},
        "KUBECONFIG": str(kubeconfig),
        "REBOOTD_LOCK_NAMESPACE": "kube-system",
    }
    proc = await asyncio.create_subprocess_exec(
        *rebootd_argv(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_shows_holders_phase_waiters_and_the_window(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z2"}, workloads=False, env={"REBOOTD_DRAIN_TIMEOUT": "2m"}
    )
    cluster.emulator.add_workload(
        kind="Deployment", name="slow", replicas=2, nodes=["n1"], termination_grace_seconds=6000
    )
    cluster.nodes["n1"].require_reboot()
    await wait_phase(cluster, "n1", {"draining"})
    cluster.nodes["n2"].require_reboot()
    # n2 queues on its own Node (the Lease names only the head of the queue).
    assert await cluster.wait_until(
        lambda: (
            (cluster.emulator.get_object(kind="Node", name="n2") or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("rebootd.io/waiting-for", "")
            .startswith("slot:")
        ),
        within=10,
    )
    code, out, err = await rebootd(cluster, tmp_path, "status", "--output", "json")
    assert code == 0, err
    report = json.loads(out)
    assert [(h["node"], h["phase"]) for h in report["holders"]] == [("n1", "draining")]
    assert report["holders"][0]["age_seconds"] >= 0
    assert report["waiters"] == ["n2"]
    assert report["halted"] is None
    assert report["window"]["open"] is True
    pending = {p["node"]: p for p in report["reboot_required"]}
    assert set(pending) == {"n1", "n2"}
    assert "slot" in pending["n2"]["waiting_for"]
    code, text, _ = await rebootd(cluster, tmp_path, "status")
    assert code == 0
    assert "holder n1 (zone z1): draining" in text
    assert "queue (1, the first " in text
    assert text.split("queue (1, ", 1)[1].split("\n", 1)[0].endswith(": n2")


async def test_pause_stops_new_reboots_and_resume_lets_them_go_on(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    zones = {"n1": "z1", "n2": "z2"}
    cluster = await make_cluster(zones=zones, workloads=False)
    code, out, err = await rebootd(cluster, tmp_path, "pause", "--reason", "change freeze")
    assert code == 0, err
    assert "paused" in out
    for node in cluster.nodes.values():
        node.require_reboot()

    def says_paused(name: str) -> bool:
        node = cluster.emulator.get_object(kind="Node", name=name) or {}
        return "paused" in (node.get("metadata", {}).get("annotations") or {}).get(
            "rebootd.io/waiting-for", ""
        )

    # Both daemons have seen their sentinel and the pause (they say so on their nodes), and held.
    assert await cluster.wait_until(lambda: all(says_paused(n) for n in zones), within=30)
    assert not reboot_counts(cluster.emulator.history)
    code, out, _ = await rebootd(cluster, tmp_path, "status", "--output", "json")
    report = json.loads(out)
    assert report["paused"]["reason"] == "change freeze"
    assert all("paused" in p["waiting_for"] for p in report["reboot_required"])
    code, out, _ = await rebootd(cluster, tmp_path, "resume")
    assert code == 0
    assert "lifted the pause" in out
    assert await cluster.wait_until(lambda: all_done(cluster, set(zones)), within=60)


@pytest.mark.parametrize("admin_cordoned", [False, True], ids=["cordoned-by-rebootd", "cordoned-by-an-admin"])
async def test_unlock_refuses_a_node_that_may_be_disrupted_unless_forced(
    make_cluster: ClusterFactory, tmp_path: Path, admin_cordoned: bool
) -> None:
    """Failure 2: unlock without --force freed a draining node when an admin had cordoned it first,
    and the next node was disrupted beside it. The phase decides, not who cordoned."""
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z2"},
        workloads=False,
        admin_cordoned=("n1",) if admin_cordoned else (),
        env={"REBOOTD_DRAIN_TIMEOUT": "120s"},  # draining until the operator acts, however slow the CLI
    )
    cluster.emulator.add_workload(
        kind="Deployment", name="slow", replicas=2, nodes=["n1"], termination_grace_seconds=3000
    )
    cluster.nodes["n1"].require_reboot()
    await wait_phase(cluster, "n1", {"draining"})
    code, _, err = await rebootd(cluster, tmp_path, "unlock", "n1")
    assert code == 1
    assert "n1 is draining" in err
    assert "--force" in err
    assert "n1" in cluster.lease_state().holders
    code, _, err = await rebootd(cluster, tmp_path, "unlock", "n2")
    assert code == 1
    assert "holds no slot" in err
    await cluster.nodes["n1"].kill()  # the operator takes over: the daemon is gone
    code, out, err = await rebootd(cluster, tmp_path, "unlock", "n1", "--force")
    assert code == 0, err
    assert "freed the slot of n1" in out
    assert "n1" not in cluster.lease_state().holders
    node = cluster.emulator.get_object(kind="Node", name="n1")
    assert node is not None
    assert "rebootd.io/holder" not in (node["metadata"].get("annotations") or {})
    assert node["spec"].get("unschedulable") is True, "a forced unlock leaves the node cordoned"


async def test_status_names_the_halt_and_resume_clears_it(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z2"}, workloads=False, env={"REBOOTD_BOOT_TIMEOUT": "1s"}
    )
    cluster.emulator.set_boot_failure(name="n1")
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(
        lambda: getattr(cluster.lease_state().holders.get("n1"), "phase", "") == "rebooting", within=30
    )
    cluster.nodes["n2"].require_reboot()  # n2 waits, sees n1 never come back, halts the rollout
    assert await cluster.wait_until(lambda: cluster.lease_state().halted is not None, within=30)
    code, out, _ = await rebootd(cluster, tmp_path, "status")
    assert code == 0
    assert "HALTED at node n1" in out
    assert "rebootd resume" in out
    assert reboot_counts(cluster.emulator.history).get("n2", 0) == 0
    assert "rebootd unlock n1 --force" in out  # the dead holder would halt the rollout again
    code, out, err = await rebootd(cluster, tmp_path, "unlock", "n1", "--force")
    assert code == 0, err
    code, out, _ = await rebootd(cluster, tmp_path, "resume")
    assert "cleared the halt at node n1" in out
    assert await cluster.wait_until(
        lambda: reboot_counts(cluster.emulator.history).get("n2", 0) == 1, within=30
    )
    assert cluster.lease_state().halted is None
