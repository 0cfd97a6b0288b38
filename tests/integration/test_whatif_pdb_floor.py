"""The what-if's PDB floor log, against the emulator: a workload whose healthy pods drop below
its budget's floor is recorded from the moment the disruption controller says so until it is
back (the report's "workloads below their PDB floor")."""

from __future__ import annotations

from rebootd.emulator.emulator import Emulator
from rebootd.sim import snapshot as snap
from rebootd.sim.whatif import PdbLog


def _snapshot() -> snap.Snapshot:
    nodes = [
        {"name": f"n{i}", "labels": {"topology.kubernetes.io/zone": "z"}, "ready": True} for i in range(2)
    ]
    workloads = [
        {
            "kind": "StatefulSet",
            "namespace": "default",
            "name": "db",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "db"}},
            "templateLabels": {"app": "db"},
        }
    ]
    pods = [
        {
            "namespace": "default",
            "name": f"db-{i}",
            "node": f"n{i}",
            "labels": {"app": "db"},
            "owner": {"kind": "StatefulSet", "name": "db"},
            "phase": "Running",
            "ready": True,
        }
        for i in range(2)
    ]
    pdbs = [
        {"namespace": "default", "name": "db", "selector": {"matchLabels": {"app": "db"}}, "minAvailable": 2}
    ]
    return snap.Snapshot(nodes=nodes, pods=pods, pdbs=pdbs, workloads=workloads)


async def test_a_workload_below_its_pdb_floor_is_recorded_until_it_recovers() -> None:
    emu = Emulator(seed=3)
    log = PdbLog()
    snap.populate(emu, _snapshot())
    log.emulator = emu
    emu.store.add_listener(log)
    await emu.start()
    try:
        pdb = emu.get_object(kind="PodDisruptionBudget", namespace="default", name="db")
        assert pdb is not None
        assert pdb["status"]["currentHealthy"] == 2
        assert not log.intervals
        assert not log.below_since
        emu.set_pod_ready(namespace="default", name="db-1", ready=False)
        await emu.wait_until(lambda: "default/db" in log.below_since, within=10)
        emu.set_pod_ready(namespace="default", name="db-1", ready=True)
        await emu.wait_until(lambda: bool(log.intervals), within=10)
    finally:
        await emu.close()
    (name, since, until), *_ = log.intervals
    assert name == "default/db"
    assert until >= since
    assert log.lowest["default/db"] == (1, 2)
