"""Least privilege under the real RBAC authorizer: with the base's RBAC (built by the real
`kubectl kustomize`) a full reboot cycle of three nodes completes with no request refused, and
with any single permission removed (each verb of each rule, and each multi-verb rule as a whole)
the real kube-apiserver refuses a request (403 in its audit log) and the cycle cannot complete.

One control plane serves every run, one after another: before each, the Role and ClusterRole are
replaced with the run's rules and the lock Lease deleted; each run has its own nodes (API-only
simulated kubelets) and its own workload namespace, removed afterwards. The daemons are in-process
`Daemon`s holding a real token of the ServiceAccount the base binds. A run that has been refused
something stops once nothing moved for STALL seconds (it cannot complete by itself); every run
stops after CAP. Each run's nodes carry a DaemonSet's pods (the drain reads the DaemonSet) and
their kubelets post the new boot late (the restarted daemon follows the Node to prove its reboot)
and the lock TTL is a minute, as in the emulator's least-privilege cycle. FALLS_BACK: permissions
the daemon survives losing by a designed fallback (re-listing instead of watching); INFORMS:
`create events`, which the cycle asks for but needs only to tell the operator (the emulator's
conflicting-budgets run proves it needed); their runs must still have been refused. A
permission the cycle never asks for (the kubelets' heartbeat Leases, read only before a reclaim)
gets a reclaim run instead: the daemon of the first node to take a slot freezes at its cordon and
is killed there (so it dies draining, never after its reboot request, and while the other nodes
still wait: a waiting daemon is the one that reclaims), and another must prove that node alive and
reclaim its slot (a control reclaim run with every permission completes with nothing refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import urllib.error
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rebootd.controlplane import Binaries, ControlPlane, running_control_plane
from rebootd.kube import Kube
from rebootd.lock import state_of
from rebootd.lockstate import StateFormatError
from rebootd.sim.audit import parse_time
from rebootd.sim.harness import DaemonSeams, SimNode
from rebootd.sim.kubelet import ApiMachines, KubeletTiming
from rebootd.sim.realrun import GRACE_SECONDS, NAMESPACE, SERVICE_ACCOUNT, create, daemon_env, workload
from tests.fixtures.tools import require_binary
from tests.integration.rbac_runs import Doc, Permission, build_base, permissions, without

RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/rebootd"
CAP = 40.0  # the longest any run is given (the control run takes about 10 s)
STALL = 4.0  # refused, and nothing moved for this long: the run cannot complete by itself
DRAIN, BOOT, RECOVERY, RELEASE_DELAY = 0.3, 0.5, 0.2, 0.1
FALLS_BACK = {("pods", "watch"), ("poddisruptionbudgets", "watch")}  # see test_least_privilege.py
# Asked for (so refused here) but not needed for the cycle to complete: the Events tell the
# operator; the conflicting-budgets run of test_least_privilege.py (emulator) needs them.
INFORMS = {("events", "create")}
# Production-like, as in the emulator's least-privilege cycle: with a TTL shorter than a node's
# cycle, waiters that cannot watch the Lease would still get on through stale-holder re-reads.
LOCK_TTL = "60s"
STATUS_DELAY = 0.5  # a late kubelet: the restarted daemon has to follow the Node to prove its reboot
RECLAIM_TTL = "3s"  # the reclaim runs: a dead holder's record goes stale within the run


@dataclass(frozen=True)
class Outcome:
    completed: bool
    refused: tuple[str, ...]
    seconds: float

    def summary(self) -> str:
        head = "completed" if self.completed else "did not complete"
        refused = ", ".join(sorted(set(self.refused))[:4])
        return f"{head} in {self.seconds:.1f} s; {len(self.refused)} refused: {refused}"


@pytest.fixture(scope="module")
def base_rbac() -> tuple[Doc, ...]:
    docs = build_base(require_binary("kubectl", install_hint="kubectl"))
    return tuple(doc for doc in docs if doc["kind"] in RBAC_KINDS)


@pytest.fixture(scope="module")
def plane(
    control_plane_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A control plane of this module's own: its audit log holds only these runs."""
    work = tmp_path_factory.mktemp("least-privilege") / "plane"
    with running_control_plane(binaries=control_plane_binaries, work_dir=work) as running:
        yield running


def set_rules(plane: ControlPlane, docs: Sequence[Doc]) -> None:
    """Every RBAC object of `docs` in place, the roles' rules replaced by theirs."""
    for doc in docs:
        create(plane, doc)
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        group = "/apis/rbac.authorization.k8s.io/v1"
        path = (
            f"{group}/namespaces/{doc['metadata']['namespace']}/roles/{doc['metadata']['name']}"
            if doc["kind"] == "Role"
            else f"{group}/clusterroles/{doc['metadata']['name']}"
        )
        current = plane.request("GET", path)
        current["rules"] = doc.get("rules") or []
        plane.request("PUT", path, body=current)


def refusals_since(plane: ControlPlane, since: datetime) -> list[str]:
    out = []
    for event in plane.audit_events():
        if (event.get("user") or {}).get("username") != SERVICE_ACCOUNT or event.get(
            "stage"
        ) != "ResponseComplete":
            continue
        if int((event.get("responseStatus") or {}).get("code") or 0) != 403:
            continue
        if parse_time(str(event["stageTimestamp"])) < since:
            continue
        ref = event.get("objectRef") or {}
        out.append(
            f"{event['verb']} {'/'.join(x for x in (ref.get('resource'), ref.get('subresource')) if x)}"
        )
    return out


def refused_any(plane: ControlPlane, since: datetime) -> bool:
    return bool(refusals_since(plane, since))


def lease_version(plane: ControlPlane) -> tuple[str, bool]:
    """The lock Lease's resourceVersion, and whether it holds no slot."""
    try:
        lease = plane.request("GET", LEASE)
        return str(lease["metadata"]["resourceVersion"]), not state_of(lease).holders
    except (urllib.error.HTTPError, StateFormatError):
        return "", False


def remove_lease(plane: ControlPlane) -> None:
    """The lock Lease gone for good: its finalizer stripped first (rebootd's daemons lift it only
    once nobody holds a slot, and a run with a permission removed may never get there)."""
    with contextlib.suppress(urllib.error.HTTPError):
        lease = plane.request("GET", LEASE)
        lease["metadata"]["finalizers"] = []
        plane.request("PUT", LEASE, body=lease)
    with contextlib.suppress(urllib.error.HTTPError):
        plane.request("DELETE", LEASE)


def daemon_set(index: int) -> Doc:
    """An agent on each node of the run: the drain leaves its pods and reads the DaemonSet."""
    labels = {"app": "agent"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "placeholder"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"lp-run": str(index)},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "agent", "image": "registry.invalid/agent:1"}],
                },
            },
        },
    }


def holder_phase(plane: ControlPlane, node: str) -> str | None:
    """The phase of `node`'s record in the lock Lease (None: no record, or no readable Lease)."""
    try:
        holder = state_of(plane.request("GET", LEASE)).holders.get(node)
    except (urllib.error.HTTPError, StateFormatError):
        return None
    return None if holder is None else holder.phase


@dataclass
class FirstCordon:
    """Where the reclaim runs freeze a daemon: the first cordon any of the run's daemons sends
    never leaves (the daemon is then killed there, in phase draining, its record stale). The
    cordon, not an eviction: every holder cordons, but the scheduler may put no pod on the first
    node, and a node frozen only when the others are done has no waiter left to reclaim it."""

    node: str | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def connect(self, *, node: str) -> Any:
        gate = self

        class FreezesAtFirstCordon(Kube):
            async def patch_node(self, *, name: str, patch: Any, patch_type: Any) -> dict[str, Any]:
                cordons = isinstance(patch, dict) and (patch.get("spec") or {}).get("unschedulable") is True
                if cordons and gate.node is None:
                    gate.node = node
                    gate.reached.set()
                    await asyncio.Event().wait()  # frozen until the crash cancels it
                return await super().patch_node(name=name, patch=patch, patch_type=patch_type)

        return functools.partial(FreezesAtFirstCordon.connect, user_agent=f"rebootd@{node}")


async def one_run(
    plane: ControlPlane,
    docs: Sequence[Doc],
    *,
    index: int,
    workdir: Path,
    kubeconfig: Path,
    reclaim: bool = False,
) -> Outcome:
    """One 3-node cycle under `docs`. With `reclaim`, the daemon of the first node to cordon
    freezes there and is killed (and stays dead) and the lock TTL is short: another daemon must
    prove that node's kubelet alive from its heartbeat Lease, reclaim the slot, and the other two
    nodes reboot."""
    await asyncio.to_thread(set_rules, plane, docs)
    await asyncio.to_thread(remove_lease, plane)
    zones = {f"lp{index}-n{i}": f"zone-{'abc'[i]}" for i in range(3)}
    namespace = f"lp{index}"
    timing = KubeletTiming(
        boot_seconds=BOOT, pod_start=RECOVERY, grace_scale=DRAIN / GRACE_SECONDS, status_delay=STATUS_DELAY
    )
    machines = ApiMachines(kubeconfig=plane.kubeconfig, timing=timing)
    sims: list[SimNode] = []
    since = datetime.now(UTC)
    started = time.monotonic()
    completed = False
    freeze = FirstCordon()
    try:
        for name, zone in zones.items():
            await machines.add(name, labels={"topology.kubernetes.io/zone": zone, "lp-run": str(index)})
        for doc in [*workload(replicas=3), daemon_set(index)]:
            body: dict[str, Any] = {**doc, "metadata": {**doc["metadata"]}}
            if body["kind"] == "Namespace":
                body["metadata"]["name"] = namespace
            else:
                body["metadata"]["namespace"] = namespace
            await asyncio.to_thread(create, plane, body)
        env = {
            **daemon_env(concurrency=1, zone_concurrency=0, drain=DRAIN, boot=BOOT, release=RELEASE_DELAY),
            "REBOOTD_LOCK_TTL": RECLAIM_TTL if reclaim else LOCK_TTL,
        }
        for name in zones:
            sim = SimNode(
                emulator=None,
                name=name,
                workdir=workdir / name,
                env=env,
                host=machines,
                kubeconfig=kubeconfig,
                seams=DaemonSeams(
                    connect=freeze.connect(node=name)
                    if reclaim
                    else functools.partial(Kube.connect, user_agent=f"rebootd@{name}")
                ),
                time_scale=0.1,
            )
            sims.append(sim)
            sim.require_reboot()
            await sim.start()
        last_change, last_seen = time.monotonic(), ("", 0)
        killed: str | None = None
        while time.monotonic() - started < CAP:
            await asyncio.sleep(0.25)
            if reclaim and killed is None and freeze.reached.is_set():
                killed = freeze.node
                victim = next(sim for sim in sims if sim.name == killed)
                assert victim.crash(restart_after=10 * CAP), "the frozen daemon was not running"
                phase = await asyncio.to_thread(holder_phase, plane, victim.name)
                assert phase == "draining", f"killed in phase {phase}, not draining"
            version, free = await asyncio.to_thread(lease_version, plane)
            boots = sum(m.boots for m in machines.machines.values())
            survivors = [m for name, m in machines.machines.items() if name != killed]
            if (killed or not reclaim) and all(m.boots >= 2 for m in survivors) and free:
                completed = True
                break
            if (version, boots) != last_seen:
                last_seen, last_change = (version, boots), time.monotonic()
            elif time.monotonic() - last_change > STALL and await asyncio.to_thread(
                refused_any, plane, since
            ):
                break
    finally:
        for sim in sims:
            await sim.stop()
        await machines.close()
        for name in zones:
            with contextlib.suppress(urllib.error.HTTPError):
                await asyncio.to_thread(plane.request, "DELETE", f"/api/v1/nodes/{name}")
        with contextlib.suppress(urllib.error.HTTPError):
            await asyncio.to_thread(plane.request, "DELETE", f"/api/v1/namespaces/{namespace}")
    await asyncio.sleep(0.3)  # the audit log is written as responses go out
    refused = await asyncio.to_thread(refusals_since, plane, since)
    return Outcome(completed=completed, refused=tuple(refused), seconds=time.monotonic() - started)


@pytest.mark.timeout(900)  # some twenty cycles, one after another, on one control plane
async def test_the_base_rbac_completes_a_cycle_and_removing_any_single_permission_breaks_it_under_real_rbac(
    plane: ControlPlane, base_rbac: tuple[Doc, ...], tmp_path: Path
) -> None:
    for doc in base_rbac:
        await asyncio.to_thread(create, plane, doc)
    token = await asyncio.to_thread(plane.service_account_token, namespace=NAMESPACE, name="rebootd")
    kubeconfig = plane.write_kubeconfig(tmp_path / "daemon.kubeconfig", user=token)
    control = await one_run(plane, base_rbac, index=0, workdir=tmp_path / "run-0", kubeconfig=kubeconfig)
    assert control.completed, control.summary()
    assert control.refused == (), control.summary()
    candidates: list[Permission] = permissions(base_rbac)
    assert len(candidates) >= 10
    reclaim_control = await one_run(
        plane,
        base_rbac,
        index=2 * len(candidates) + 1,
        workdir=tmp_path / "reclaim-0",
        kubeconfig=kubeconfig,
        reclaim=True,
    )
    assert reclaim_control.completed, reclaim_control.summary()
    assert reclaim_control.refused == (), reclaim_control.summary()
    lines, unbroken, reclaims = [], [], []
    for index, permission in enumerate(candidates, start=1):
        outcome = await one_run(
            plane,
            without(base_rbac, permission),
            index=index,
            workdir=tmp_path / f"run-{index}",
            kubeconfig=kubeconfig,
        )
        if not outcome.refused and outcome.completed:
            # never asked for in a cycle: the heartbeat read happens only in a reclaim
            outcome = await one_run(
                plane,
                without(base_rbac, permission),
                index=index + len(candidates),
                workdir=tmp_path / f"reclaim-{index}",
                kubeconfig=kubeconfig,
                reclaim=True,
            )
            reclaims.append(f"{permission}: {outcome.summary()}")
        lines.append(f"{permission}: {outcome.summary()}")
        single = permission.verb is not None and len(permission.resources) == 1
        survives = single and (permission.resources[0], permission.verb) in FALLS_BACK | INFORMS
        if not outcome.refused or (outcome.completed and not survives):
            unbroken.append(lines[-1])
    print(f"\ncontrol: {control.summary()}\nreclaim control: {reclaim_control.summary()}")
    print("\n".join(lines))
    assert unbroken == [], "\n".join(unbroken)
    assert reclaims, "the heartbeat read (asked only by a reclaim) had no reclaim run"
