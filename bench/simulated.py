"""Simulator figures: API writes per hand-off by number of waiters, hand-off gaps, rollout
overhead. Every run is `rebootd.sim.simulate.Simulation` (the code behind `rebootd simulate`):
the emulator plus one real in-process daemon per node.

Rule: what is measured comes from the emulator, never from the daemons: the history gives the
releases (Lease writes that drop a holder) and the cordons; a recording `Authorizer` installed
on the emulator (its public extension point, called for every resource request, failed ones
included) gives each request's arrival time, client and verb, so 409 conflicts count as writes.
A run that only needs its first hand-offs is ended from the simulation's progress hook once they
happened (see `StopWhen`); the config's timeout bounds every run.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import resource
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import HandoffCost, Request, handoff_costs, pair_handoffs
from rebootd.clock import Clock
from rebootd.emulator.history import HistoryRecord
from rebootd.sim.invariants import is_rebootd
from rebootd.sim.live import Snapshot
from rebootd.sim.report import lease_steps
from rebootd.sim.simulate import LOCK_NAME, LOCK_NAMESPACE, Outcome, Simulation, SimulationConfig


class RequestRecorder:
    """An emulator `Authorizer` that allows everything and records every resource request."""

    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[Request] = []

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
        del groups, api_group, namespace
        self.requests.append(
            Request(
                at=self.clock.monotonic(),
                client=user,
                verb=verb,
                resource=resource,
                subresource=subresource,
                name=name,
            )
        )
        return True


def cordons(history: Sequence[HistoryRecord]) -> list[tuple[float, str]]:
    """(time, node) of every cordon by rebootd (unschedulable false -> true)."""
    return [
        (r.monotonic, r.name)
        for r in history
        if r.kind == "Node"
        and r.event == "write"
        and is_rebootd(r.client)
        and r.unschedulable_after
        and not r.unschedulable_before
    ]


def releases_and_acquisitions(history: Sequence[HistoryRecord]) -> tuple[list[float], dict[str, float]]:
    """Times a holder left the Lease, and when each node first took a slot."""
    releases: list[float] = []
    first: dict[str, float] = {}
    previous: set[str] = set()
    for step in lease_steps(history, namespace=LOCK_NAMESPACE, name=LOCK_NAME):
        now = set(step.holders)
        releases.extend(step.at for _ in previous - now)
        for node in now - previous:
            first.setdefault(node, step.at)
        previous = now
    return releases, first


def _lock_state(record: HistoryRecord) -> dict[str, Any] | None:
    """The lock state a lock Lease write recorded (None for other records)."""
    if record.kind != "Lease" or record.event != "write" or record.name != LOCK_NAME or not record.detail:
        return None
    try:
        state = json.loads(record.detail)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def lock_members(record: HistoryRecord) -> set[str]:
    """Nodes a record shows in the queue or holding a slot, read as `rebootd status` reads the
    queue (lock format 3): a lock Lease write's holders and head, or the node of a Node write
    carrying a queue record (`rebootd.io/queued`, recorded in the history's `detail`)."""
    if record.kind == "Node" and record.event == "write":
        return {record.name} if record.detail else set()
    state = _lock_state(record)
    if state is None:
        return set()
    return set(state.get("holders") or {}) | set(state.get("waiters") or {})


def queue_formed_at(history: Sequence[HistoryRecord], *, needed: Sequence[str]) -> float | None:
    """When every node that needs a reboot had been queued (its queue record on its Node, or in
    the Lease as holder or head) at least once: from then on a hand-off is steady state, with no
    node still joining the queue."""
    wanted, seen = set(needed), set()
    for record in history:
        seen |= lock_members(record) & wanted
        if seen == wanted:
            return record.monotonic
    return None


def lease_waiters(history: Sequence[HistoryRecord]) -> dict[float, int]:
    """Commit time of each lock Lease write -> the number of nodes waiting then: the whole queue
    as `rebootd status` lists it (the Lease's head, and every Node whose latest write carries a
    queue record), holders excluded."""
    out: dict[float, int] = {}
    queued: set[str] = set()
    for record in history:
        if record.kind == "Node" and record.event == "write":
            if record.detail and not record.removed:
                queued.add(record.name)
            else:
                queued.discard(record.name)
            continue
        state = _lock_state(record)
        if state is None:
            continue
        holders = set(state.get("holders") or {})
        out[record.monotonic] = len((queued | set(state.get("waiters") or {})) - holders)
    return out


def measured_handoffs(
    *, history: Sequence[HistoryRecord], requests: Sequence[Request], needed: Sequence[str]
) -> list[HandoffCost]:
    """Every hand-off of a run with its writes and the number of waiters: the nodes queued in the
    Lease written by the release (or, for a node that released without a queue, the needed nodes
    that had not yet taken a slot)."""
    releases, first = releases_and_acquisitions(history)
    pairs = pair_handoffs(releases=releases, starts=[at for at, _ in cordons(history)])
    queued = lease_waiters(history)
    waiters = [
        queued.get(release, sum(1 for n in needed if first.get(n, float("inf")) > release))
        for release, _ in pairs
    ]
    rebootd_requests = [r for r in requests if is_rebootd(r.client)]
    commits = [
        r.monotonic
        for r in history
        if r.kind == "Lease" and r.event == "write" and r.name == LOCK_NAME and is_rebootd(r.client)
    ]
    return handoff_costs(requests=rebootd_requests, pairs=pairs, waiters=waiters, lease_commits=commits)


@dataclass
class SimRun:
    """What one simulated run gave: its config, hand-offs (all, and the steady ones after the
    queue had formed), the report's JSON (complete runs only), wall and CPU time."""

    config: SimulationConfig
    handoffs: list[HandoffCost]
    steady: list[HandoffCost]
    report: dict[str, Any] | None
    wall_seconds: float
    cpu_seconds: float  # this process: the emulator, the supervisor, in-process daemons
    status: str
    worker_cpu_seconds: float = 0.0  # the simulator's worker processes (daemons), once reaped
    queue_formed_seconds: float | None = None
    lease_writes_to_form_queue: int = 0
    requests_by_verb: dict[str, int] = field(default_factory=dict)
    profile: str = ""

    @property
    def gaps(self) -> list[float]:
        return [h.gap for h in self.handoffs]

    @property
    def cpu_share(self) -> float:
        """CPU seconds of this process per wall second (1.0 = one core busy all the time)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def worker_cpu_share(self) -> float:
        return self.worker_cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class HandoffsReached(Exception):
    """Raised from the progress hook to end a run once enough hand-offs happened."""


class StopWhen:
    """A `Progress` for the simulation's supervisor loop (called at least every 0.1 s) that ends
    the run by raising `HandoffsReached` once `reached()` holds. The exception leaves through
    `Simulation.run`'s `finally`, which stops every daemon and the emulator; a plain task
    cancellation would not do, as Python 3.11's `asyncio.wait_for` in that loop can swallow it."""

    def __init__(self, reached: Callable[[], bool]) -> None:
        self._reached = reached

    def update(self, snapshot: Snapshot) -> None:
        del snapshot
        if self._reached():
            raise HandoffsReached

    def finish(self) -> None:
        return None


class SteadyHandoffs:
    """Counts, incrementally over the growing history, the cordons after the queue formed."""

    def __init__(self, history: list[HistoryRecord], *, needed: Sequence[str]) -> None:
        self._history = history
        self._wanted = set(needed)
        self._seen: set[str] = set()
        self._index = 0
        self.formed = False
        self.cordons_after = 0

    def count(self) -> int:
        new = self._history[self._index :]
        self._index = len(self._history)
        for record in new:
            if not self.formed:
                self._seen |= lock_members(record) & self._wanted
                self.formed = self._seen == self._wanted
            elif cordons([record]):
                self.cordons_after += 1
        # K + 1 cordons after the queue formed make at least K hand-offs released after it.
        return max(0, self.cordons_after - 1)


async def run_simulation(
    config: SimulationConfig,
    *,
    workdir: Path,
    steady_handoffs: int | None = None,
    env: Mapping[str, str] | None = None,
    profile: bool = False,
) -> SimRun:
    """Run one simulation (bounded by the config's timeout); with `steady_handoffs`, end it once
    that many hand-offs happened after every waiting node had joined the queue. `env` overrides
    the daemons' settings (`REBOOTD_*`)."""
    sim = Simulation(config, workdir=workdir)
    sim.env.update(env or {})
    clock = sim.emulator.clock
    recorder = RequestRecorder(clock=clock)
    sim.emulator.api.authorizer = recorder
    history = sim.emulator.history
    steady = SteadyHandoffs(history, needed=sim.plan.needed)
    if steady_handoffs is not None:
        sim.progress = StopWhen(lambda: steady.count() >= steady_handoffs)
    profiler = cProfile.Profile() if profile else None
    started, cpu_started, children_started = clock.monotonic(), time.process_time(), _children_cpu()
    outcome: Outcome | None = None
    if profiler is not None:
        profiler.enable()
    try:
        outcome = await sim.run()
    except HandoffsReached:
        outcome = None
    finally:
        if profiler is not None:
            profiler.disable()
    wall, cpu = clock.monotonic() - started, time.process_time() - cpu_started
    children = _children_cpu() - children_started
    needed = sim.plan.needed
    handoffs = measured_handoffs(history=history, requests=recorder.requests, needed=needed)
    formed = queue_formed_at(history, needed=needed)
    by_verb: dict[str, int] = {}
    for r in recorder.requests:
        if is_rebootd(r.client):
            by_verb[r.verb] = by_verb.get(r.verb, 0) + 1
    return SimRun(
        config=config,
        handoffs=handoffs,
        steady=[h for h in handoffs if formed is not None and h.release > formed],
        report=outcome.to_json() if outcome is not None else None,
        wall_seconds=wall,
        cpu_seconds=cpu,
        worker_cpu_seconds=children,
        status=outcome.status if outcome is not None else "stopped after hand-offs",
        queue_formed_seconds=None if formed is None else formed - started,
        lease_writes_to_form_queue=sum(
            1
            for r in recorder.requests
            if r.is_lease_write and is_rebootd(r.client) and (formed is None or r.at <= formed)
        ),
        requests_by_verb=dict(sorted(by_verb.items())),
        profile=_profile_text(profiler) if profiler is not None else "",
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _profile_text(profiler: cProfile.Profile, *, top: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def simulate_sync(
    config: SimulationConfig,
    *,
    steady_handoffs: int | None = None,
    env: Mapping[str, str] | None = None,
    profile: bool = False,
) -> SimRun:
    """`run_simulation` on a new event loop, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="rebootd-bench-") as tmp:
        return asyncio.run(
            run_simulation(
                config,
                workdir=Path(tmp),
                steady_handoffs=steady_handoffs,
                env=env,
                profile=profile,
            )
        )
