"""Reboot scenarios run under exactly a given RBAC, for the least-privilege tests.

Rule: a run is one emulator with authorization on (`rebootd.emulator.rbac.Authorizer` over the given
Role/ClusterRole/binding documents) and one real daemon per node, every daemon authenticated as
the service account `kube-system/rebootd`. The set-up (nodes, workloads, budgets) goes through the
emulator's in-process API and needs no rights. A run is judged from the emulator's state, never
from what the daemons believe, and every request the authorizer allowed or denied the service
account is counted (the emulator answers 403 but keeps no count of denials, so the authorizer is
wrapped here). Runs are independent: `run_spread` deals them over worker processes, each running
its share on its own event loop, a few at a time.

Scenarios:
- cycle: 3 nodes with a Deployment and a StatefulSet under PDBs and a DaemonSet (the drain reads
  the DaemonSet and evicts through the budgets), no Lease yet (the daemons list the Nodes and
  create it), the PreferNoSchedule taint, pre- and post-reboot labels and node annotations on,
  every node needing a reboot. The kubelet starts a rebooted node's rebootd pod before it posts
  Ready (its network is not up yet), so the proof of reboot has to watch the Node. The lock TTL
  is production-like (a minute, not the fast suite's 2 s): with a TTL shorter than a node's
  cycle, waiters that cannot watch the Lease would still get on through stale-holder re-reads, a
  path a real cluster (TTL 5 min) does not take between two nodes. Complete: every node rebooted
  exactly once, schedulable, untainted, labelled and annotated as configured, with its Drain,
  Reboot and Uncordon Events; the Lease holds no slot and no halt.
- conflicting budgets (a failure path): a pod selected by two PDBs cannot be evicted. The node
  is held back or put back (never rebooted, no slot kept) and the operator is told which two
  budgets conflict: by the PDB preflight's waiting reason (node annotation) or, without a
  preflight, by the Warning Event of the failed drain.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rebootd.cycle import LAST_REBOOT_ANNOTATION, WAITING_ANNOTATION
from rebootd.emulator.emulator import SETUP, Emulator
from rebootd.emulator.rbac import Authorizer, service_account_username
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.lock import NODE_MARK_ANNOTATION
from rebootd.node import EVENT_NAMESPACE
from rebootd.sim.harness import SimCluster, SimNode, node_token
from rebootd.sim.invariants import reboot_counts
from tests.fixtures.cluster import FAST_ENV
from tests.fixtures.emulator import FAST_TIMING

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kustomize" / "base"
NAMESPACE = "kube-system"
LEASE = "rebootd"
SA_USER = service_account_username(namespace=NAMESPACE, name="rebootd")
SA_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}")
TAINT = "rebootd.io/reboot-pending"
PRE_LABEL = ("example.com/reboot", "pending")
POST_LABEL = ("example.com/rebooted", "true")
CYCLE_EVENTS = ("RebootdDrain", "RebootdReboot", "RebootdUncordon")
BUDGET_A, BUDGET_B = "db", "db-second"
NOT_READY_AFTER_START = 0.3  # seconds a rebooted node stays NotReady after its rebootd pod starts
POLL = 0.1  # seconds between two looks at a running scenario
CONCURRENT_RUNS = 5  # runs at once in one worker process (they share its core)

Doc = dict[str, Any]


# --- the manifests ------------------------------------------------------------------------------


@functools.cache
def build_base(kubectl: str) -> tuple[Doc, ...]:
    """The base's objects, as `kubectl kustomize` builds them."""
    result = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {BASE} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@dataclass(frozen=True)
class Permission:
    """One verb of one rule of a Role or ClusterRole, or (verb None) the whole rule."""

    kind: str
    role: str
    rule: int
    resources: tuple[str, ...]
    verb: str | None
    text: str

    def __str__(self) -> str:
        return self.text


def describe_rule(rule: Mapping[str, Any], verbs: Sequence[str]) -> str:
    groups = ",".join(g or "core" for g in rule.get("apiGroups") or ())
    names = rule.get("resourceNames")
    named = f" {','.join(names)}" if names else ""
    return f"{'/'.join(verbs)} {','.join(rule.get('resources') or ())}{named} ({groups})"


def permissions(docs: Sequence[Doc]) -> list[Permission]:
    """Every verb of every Role and ClusterRole rule, plus each multi-verb rule as a whole."""
    out: list[Permission] = []
    for doc in docs:
        kind = str(doc.get("kind"))
        if kind not in ("ClusterRole", "Role"):
            continue
        role = str(doc["metadata"]["name"])
        for index, rule in enumerate(doc.get("rules") or ()):
            verbs = [str(v) for v in rule.get("verbs") or ()]
            resources = tuple(str(r) for r in rule.get("resources") or ())
            choices: list[tuple[str | None, str]] = [(v, describe_rule(rule, [v])) for v in verbs]
            if len(verbs) > 1:
                choices.append((None, f"the whole rule {describe_rule(rule, verbs)}"))
            out.extend(
                Permission(
                    kind=kind,
                    role=role,
                    rule=index,
                    resources=resources,
                    verb=verb,
                    text=f"{kind} {role}: {text}",
                )
                for verb, text in choices
            )
    return out


def without(docs: Sequence[Doc], permission: Permission) -> tuple[Doc, ...]:
    """The documents with `permission` removed (a rule left without verbs goes as a whole)."""
    out = [copy.deepcopy(doc) for doc in docs]
    for doc in out:
        if doc.get("kind") != permission.kind or doc["metadata"]["name"] != permission.role:
            continue
        rules = doc["rules"]
        rule = rules[permission.rule]
        if permission.verb is not None:
            rule["verbs"] = [v for v in rule["verbs"] if v != permission.verb]
        if permission.verb is None or not rule["verbs"]:
            del rules[permission.rule]
    return tuple(out)


# --- the authorizer's decisions -------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Request:
    """A resource request's RBAC attributes."""

    verb: str
    resource: str
    api_group: str
    namespace: str
    name: str

    def __str__(self) -> str:
        named = f" {self.name}" if self.name else ""
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}{named} ({self.api_group or 'core'}){where}"


class RecordingAuthorizer:
    """The RBAC authorizer, counting what it allows and denies one user (by default the
    service account)."""

    def __init__(self, inner: Authorizer, *, user: str = SA_USER) -> None:
        self.inner = inner
        self.user = user
        self.allowed: Counter[Request] = Counter()
        self.denied: Counter[Request] = Counter()

    def authorize(
        self,
        *,
        user: str,
        groups: Sequence[str],
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
    ) -> bool:
        ok = self.inner.authorize(
            user=user,
            groups=groups,
            verb=verb,
            api_group=api_group,
            resource=resource,
            subresource=subresource,
            namespace=namespace,
            name=name,
        )
        if user == self.user:
            shown = f"{resource}/{subresource}" if subresource else resource
            request = Request(verb=verb, resource=shown, api_group=api_group, namespace=namespace, name=name)
            (self.allowed if ok else self.denied)[request] += 1
        return ok


# --- scenarios ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Scenario:
    name: str
    zones: Mapping[str, str]
    env: Mapping[str, str]
    setup: Callable[[Emulator], None]
    finished: Callable[[SimCluster], bool]  # nothing more happens by itself (cheap, polled)
    problems: Callable[[SimCluster], list[str]]  # why it is not complete; [] = complete
    not_ready_after_start: bool = False
    act: Callable[[SimCluster], None] | None = None  # polled while the scenario runs


@dataclass
class Outcome:
    completed: bool
    ended: str  # finished | stalled (denied, then no progress) | timed out
    seconds: float
    problems: list[str]
    denied: Counter[Request]
    allowed: Counter[Request]
    reboots: Counter[str]

    @property
    def passed(self) -> bool:
        return self.completed and not self.denied

    def summary(self) -> str:
        if self.completed:
            verdict = "completed"
        else:
            verdict = f"did not complete, {self.ended} ({'; '.join(self.problems[:3])})"
        denied = ", ".join(sorted({str(r) for r in self.denied})) or "nothing"
        return f"{verdict} after {self.seconds:.1f}s; denied: {denied}"


def rebootd_events(emu: Emulator, node: str) -> list[Doc]:
    return [
        e
        for e in emu.list_objects(kind="Event", namespace=EVENT_NAMESPACE)
        if (e.get("involvedObject") or {}).get("name") == node
        and (e.get("source") or {}).get("component") == "rebootd"
    ]


def cycle_setup(emu: Emulator) -> None:
    emu.add_workload(kind="Deployment", name="web", replicas=3, pdb_max_unavailable=1)
    emu.add_workload(kind="StatefulSet", name="db", replicas=3, pdb_min_available=1)
    emu.add_workload(kind="DaemonSet", name="agent", namespace=NAMESPACE)


def cycle_finished(cluster: SimCluster) -> bool:
    """Every node rebooted and idle with no slot held, or halted (which waits for an operator)."""
    state = cluster.lease_state()
    if state.halted is not None:
        return True
    counts = reboot_counts(cluster.emulator.history)
    return (
        not state.holders
        and all(counts.get(n, 0) for n in cluster.nodes)
        and all(sim.phase == "idle" for sim in cluster.nodes.values())
    )


def cycle_problems(cluster: SimCluster) -> list[str]:
    emu = cluster.emulator
    problems: list[str] = []
    if emu.get_object(kind="Lease", namespace=NAMESPACE, name=LEASE) is None:
        problems.append("no Lease")
    state = cluster.lease_state()
    if state.holders:
        problems.append(f"slots held by {', '.join(sorted(state.holders))}")
    if state.halted:
        problems.append(f"halted: {state.halted.get('reason')}")
    counts = reboot_counts(emu.history)
    for name, sim in cluster.nodes.items():
        if counts.get(name, 0) != 1:
            problems.append(f"{name} rebooted {counts.get(name, 0)} times")
        if sim.phase != "idle":
            problems.append(f"{name} in phase {sim.phase}")
        node = emu.get_object(kind="Node", name=name) or {}
        meta, spec = node.get("metadata") or {}, node.get("spec") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if spec.get("unschedulable"):
            problems.append(f"{name} cordoned")
        if any(t.get("key") == TAINT for t in spec.get("taints") or ()):
            problems.append(f"{name} tainted")
        problems.extend(
            f"{name} lacks label {key}={value}"
            for key, value in (PRE_LABEL, POST_LABEL)
            if labels.get(key) != value
        )
        if not annotations.get(LAST_REBOOT_ANNOTATION) or NODE_MARK_ANNOTATION in annotations:
            problems.append(f"{name} not annotated as rebooted")
        reasons = {e.get("reason") for e in rebootd_events(emu, name)}
        missing = [r for r in CYCLE_EVENTS if r not in reasons]
        if missing:
            problems.append(f"{name} lacks Events {', '.join(missing)}")
    return problems


CYCLE = Scenario(
    name="cycle",
    zones={"n1": "z1", "n2": "z2", "n3": "z3"},
    env={
        "REBOOTD_LOCK_TTL": "60s",
        "REBOOTD_PREFER_NO_SCHEDULE_TAINT": TAINT,
        "REBOOTD_PRE_REBOOT_NODE_LABELS": "=".join(PRE_LABEL),
        "REBOOTD_POST_REBOOT_NODE_LABELS": "=".join(POST_LABEL),
        "REBOOTD_ANNOTATE_NODES": "true",
    },
    setup=cycle_setup,
    finished=cycle_finished,
    problems=cycle_problems,
    not_ready_after_start=True,
)


def budgets_setup(emu: Emulator) -> None:
    emu.add_workload(kind="StatefulSet", name=BUDGET_A, replicas=1, nodes=["n1"], pdb_max_unavailable=1)
    second = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": BUDGET_B},
        "spec": {"selector": {"matchLabels": {"app": BUDGET_A}}, "maxUnavailable": 1},
    }
    emu.registry.create(
        BY_GROUP_RESOURCE[("policy", "poddisruptionbudgets")], "default", second, client=SETUP
    )
    emu.cluster.sync_pdbs("default")


def budget_reports(cluster: SimCluster) -> list[str]:
    """What n1's daemon told the operator: the Warning Event of a failed drain, or why it waits
    (node annotation) when the PDB preflight holds the node back."""
    reports = [
        str(e.get("message"))
        for e in rebootd_events(cluster.emulator, "n1")
        if e.get("reason") == "RebootdDrainFailed"
    ]
    node = cluster.emulator.get_object(kind="Node", name="n1") or {}
    waiting = str(((node.get("metadata") or {}).get("annotations") or {}).get(WAITING_ANNOTATION, ""))
    if waiting.startswith("pdb"):
        reports.append(waiting)
    return reports


def budgets_put_back(cluster: SimCluster) -> bool:
    node = cluster.emulator.get_object(kind="Node", name="n1") or {}
    return not (node.get("spec") or {}).get("unschedulable") and not cluster.lease_state().holders


def budgets_problems(cluster: SimCluster) -> list[str]:
    problems: list[str] = []
    reports = budget_reports(cluster)
    if not reports:
        problems.append("no drain failure or PDB block reported")
    elif not any(f"({BUDGET_A}, {BUDGET_B})" in report for report in reports):
        problems.append(f"the budgets are not named: {reports[-1]!r}")
    if not budgets_put_back(cluster):
        problems.append("n1 not put back (cordoned, or its slot held)")
    if reboot_counts(cluster.emulator.history).get("n1", 0):
        problems.append("n1 rebooted")
    return problems


BUDGETS = Scenario(
    name="conflicting budgets",
    zones={"n1": "z1"},
    env={},
    setup=budgets_setup,
    finished=lambda cluster: bool(budget_reports(cluster)) and budgets_put_back(cluster),
    problems=budgets_problems,
)


def reclaim_setup(emu: Emulator) -> None:
    # slow drains (300 s x the fast timing's grace scale: 3 s): the first holder is mid-drain
    # when its daemon dies
    emu.add_workload(kind="Deployment", name="slow", replicas=2, termination_grace_seconds=300)


def kill_first_holder(cluster: SimCluster) -> None:
    """Kill the daemon of the first node seen draining with a slot (it stays dead for longer
    than the scenario): the other daemon must reclaim its slot."""
    if any(sim.starts and not sim.running for sim in cluster.nodes.values()):
        return  # already killed
    for node, holder in cluster.lease_state().holders.items():
        if holder.phase == "draining":
            cluster.nodes[node].crash(restart_after=600.0)
            return


def reclaim_dead(cluster: SimCluster) -> str | None:
    return next((name for name, sim in cluster.nodes.items() if sim.starts and not sim.running), None)


def reclaim_finished(cluster: SimCluster) -> bool:
    state = cluster.lease_state()
    return state.halted is not None or (reclaim_dead(cluster) is not None and not reclaim_problems(cluster))


def reclaim_problems(cluster: SimCluster) -> list[str]:
    emu = cluster.emulator
    dead = reclaim_dead(cluster)
    if dead is None:
        return ["no daemon was killed mid-drain"]
    problems: list[str] = []
    state = cluster.lease_state()
    if state.halted:
        problems.append(f"halted: {state.halted.get('reason')}")
    if dead in state.holders:
        problems.append(f"the dead daemon's node {dead} still holds its slot")
    node = emu.get_object(kind="Node", name=dead) or {}
    if (node.get("spec") or {}).get("unschedulable"):
        problems.append(f"{dead} left cordoned")
    counts = reboot_counts(emu.history)
    for name in cluster.nodes:
        if name != dead and counts.get(name, 0) != 1:
            problems.append(f"{name} rebooted {counts.get(name, 0)} times")
    return problems


RECLAIM = Scenario(
    name="reclaim",
    zones={"n1": "z1", "n2": "z2"},
    env={},
    setup=reclaim_setup,
    finished=reclaim_finished,
    problems=reclaim_problems,
    act=kill_first_holder,
)
"""reclaim: a daemon dies mid-drain (its node up): the other daemon reclaims the slot once it
has seen the dead holder's kubelet heartbeat move (it reads its Lease in kube-node-lease), puts
the node back and reboots its own."""

SCENARIOS = {scenario.name: scenario for scenario in (CYCLE, BUDGETS, RECLAIM)}


# --- running them ---------------------------------------------------------------------------------


def boot_slowly(emu: Emulator, handles: list[asyncio.TimerHandle]) -> Callable[[SimNode], None]:
    """SimNode.on_start: a rebooted node's rebootd pod starts before the kubelet posts Ready."""

    def on_start(node: SimNode) -> None:
        if node.starts < 2:
            return
        emu.set_node_ready(name=node.name, ready=False)
        ready = functools.partial(emu.set_node_ready, name=node.name, ready=True)
        handles.append(asyncio.get_running_loop().call_later(NOT_READY_AFTER_START, ready))

    return on_start


def progress(cluster: SimCluster) -> tuple[object, ...]:
    """What changes while a rollout moves: daemon phases, reboots, the Lease's holders and halt."""
    state = cluster.lease_state()
    return (
        tuple(sim.phase for sim in cluster.nodes.values()),
        sum(reboot_counts(cluster.emulator.history).values()),
        tuple(sorted((node, holder.phase) for node, holder in state.holders.items())),
        state.halted is not None,
    )


async def run(
    scenario: Scenario, docs: Sequence[Doc], *, workdir: Path, within: float, stall: float | None = None
) -> Outcome:
    """Run `scenario` under exactly the RBAC in `docs` and judge it once it has finished, or
    `within` seconds have passed, or (with `stall`) a request was denied and nothing has moved
    for `stall` seconds since: a run that stalls on a denial cannot complete by itself."""
    authorizer = RecordingAuthorizer(Authorizer.from_documents(docs))
    tokens = {node_token(name): (SA_USER, SA_GROUPS) for name in scenario.zones}
    emu = Emulator(timing=FAST_TIMING, authorizer=authorizer, tokens=tokens)
    await emu.start(host="127.0.0.1", port=0)
    handles: list[asyncio.TimerHandle] = []
    cluster: SimCluster | None = None
    loop = asyncio.get_running_loop()
    try:
        for name, zone in scenario.zones.items():
            emu.add_node(name=name, zone=zone)
        scenario.setup(emu)
        cluster = SimCluster(
            emulator=emu, workdir=workdir, env={**FAST_ENV, **scenario.env}, zones=scenario.zones
        )
        if scenario.not_ready_after_start:
            for node in cluster.nodes.values():
                node.on_start = boot_slowly(emu, handles)
        for node in cluster.nodes.values():
            node.require_reboot()
        assert emu.get_object(kind="Lease", namespace=NAMESPACE, name=LEASE) is None
        started = loop.time()
        await cluster.start()
        ended = "timed out"
        moved, seen = started, progress(cluster)
        while loop.time() - started < within:
            if scenario.act is not None:
                scenario.act(cluster)
            if scenario.finished(cluster):
                ended = "finished"
                break
            now, state = loop.time(), progress(cluster)
            if state != seen:
                moved, seen = now, state
            elif stall is not None and authorizer.denied and now - moved >= stall:
                ended = "stalled"
                break
            await asyncio.sleep(POLL)
        seconds = loop.time() - started
        problems = scenario.problems(cluster)
        return Outcome(
            completed=not problems,
            ended=ended,
            seconds=seconds,
            problems=problems,
            denied=authorizer.denied,
            allowed=authorizer.allowed,
            reboots=reboot_counts(emu.history),
        )
    finally:
        for handle in handles:
            handle.cancel()
        if cluster is not None:
            await cluster.stop()
        await emu.close()


@dataclass(frozen=True)
class Job:
    """One run, as handed to a worker process."""

    scenario: str  # a key of SCENARIOS
    docs: tuple[Doc, ...]
    workdir: Path
    within: float
    stall: float | None = None


async def run_jobs(jobs: Sequence[Job]) -> list[Outcome]:
    """The jobs on this loop, CONCURRENT_RUNS at a time; outcomes in the jobs' order."""
    gate = asyncio.Semaphore(CONCURRENT_RUNS)

    async def one(job: Job) -> Outcome:
        async with gate:
            return await run(
                SCENARIOS[job.scenario], job.docs, workdir=job.workdir, within=job.within, stall=job.stall
            )

    return list(await asyncio.gather(*(one(job) for job in jobs)))


def run_jobs_in_process(jobs: Sequence[Job]) -> list[Outcome]:
    """A worker process's entry point: the jobs on an event loop of its own."""
    return asyncio.run(run_jobs(jobs))


async def run_spread(pool: ProcessPoolExecutor, jobs: Sequence[Job], *, workers: int) -> list[Outcome]:
    """The jobs dealt round-robin over `workers` of the pool's processes; outcomes in order."""
    loop = asyncio.get_running_loop()
    shares = [list(jobs[i::workers]) for i in range(workers)]
    done = await asyncio.gather(
        *(loop.run_in_executor(pool, run_jobs_in_process, share) for share in shares if share)
    )
    return [done[k % workers][k // workers] for k in range(len(jobs))]
