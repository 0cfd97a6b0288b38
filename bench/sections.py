"""The benchmark's sections: each runs its measurements and turns them into judged `Figure`s plus
the details behind them (for bench/results.json).

Rule: a section returns `(figures, details)` and never raises for a missed target; each `Figure`
carries its target (`limit`, and a `stretch` goal where there is one). Sizes come from `Plan` (the
full run or `--quick`), so the whole bench stays within about ten minutes on two cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procfs
from bench.api_load import FOLLOWER_RESYNC, SCALE, emulator_throughput, idle_load, waiting_load
from bench.daemon_proc import CycleDriver, StartSample, make_emulator, start_once
from bench.imports import import_time_by_package, memory_by_stage
from bench.scale import run_scale
from bench.scale import summary as scale_summary
from bench.simulated import SimRun, simulate_sync
from bench.stats import Figure, HandoffCost, median, percentile, slope, spread
from rebootd.sim.simulate import SimulationConfig

Section = Callable[["Plan"], tuple[list[Figure], dict[str, Any]]]

RSS_LIMIT_MIB = 64.0
RSS_STRETCH_MIB = 50.0
READY_LIMIT_SECONDS = 1.0
GAP_P99_LIMIT_SECONDS = 1.0
RATIO_LIMIT = 1.05
PER_NODE_SECONDS = 2.0  # the simulator's default drain + boot + recovery + release delay
FLAT_LIMIT = 1.0  # extra writes per hand-off from 1 to 100 waiters that still count as flat

# The simulator's lock timing set to the defaults (TTL 300 s, renewal 30 s) run 60 times faster, as
# the sentinel period (1 s for 60 s) already is: the default 2 s / 0.5 s of in-process simulations
# lets a holder whose renewal waits behind a burst of queue joins look stale (see the notes).
SIM_ENV = {"REBOOTD_LOCK_TTL": "5s", "REBOOTD_LOCK_RENEW_INTERVAL": "500ms"}


@dataclass(frozen=True)
class Plan:
    """Sizes of every measurement."""

    log_formats: tuple[str, ...] = ("text", "json")
    start_runs: int = 5
    cycle_pods: int = 110  # pods drained in the measured cycle: the kubelet's default max-pods
    idle_seconds: float = 2.0
    load_nodes: int = 20
    load_seconds: float = 10.0
    waiters: tuple[int, ...] = (1, 10, 100)
    single_waiter_runs: int = 3
    steady_handoffs: int = 3
    # (nodes, concurrency, sentinel period): at 200 nodes a 1 s period makes the waiters' PDB
    # preflight lists alone 400 requests/s, more than the 2-core harness serves next to the rest.
    rollouts: tuple[tuple[int, int, float], ...] = ((50, 1, 1.0), (200, 5, 5.0))
    spread_seconds: float = 60.0
    throughput_count: int = 5000
    throughput_seconds: float = 5.0
    scale_sizes: tuple[int, ...] = (100, 500, 1000, 2000, 5000)
    scale_handoffs: int = 3
    profile: bool = False

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            start_runs=2,
            cycle_pods=30,
            idle_seconds=1.0,
            load_nodes=6,
            load_seconds=3.0,
            waiters=(1, 5, 12),
            single_waiter_runs=1,
            steady_handoffs=2,
            rollouts=((8, 1, 1.0), (16, 2, 1.0)),
            spread_seconds=5.0,
            throughput_count=500,
            throughput_seconds=2.0,
            scale_sizes=(20, 60),
            scale_handoffs=2,
        )


def sim_config(**values: Any) -> SimulationConfig:
    """A SimulationConfig with the fields this version of the simulator knows (older ones have
    no `spread_seconds` or `workers`)."""
    known = {f.name for f in dataclasses.fields(SimulationConfig)}
    return SimulationConfig(**{k: v for k, v in values.items() if k in known})


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --- the daemon process -------------------------------------------------------------------------


async def _daemon_measurements(plan: Plan, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"formats": {}}
    emulator = make_emulator()
    await emulator.start()
    try:
        # Warm-up: writes the bytecode of every module the daemon loads (as `pip install` does when
        # the image is built; PYTHONDONTWRITEBYTECODE stops a running daemon from writing it).
        warm = await start_once(
            emulator=emulator,
            workdir=workdir / "warm-up",
            log_format=plan.log_formats[0],
            idle_seconds=0.0,
            write_bytecode=True,
        )
        out["warm_up_start"] = warm.to_json()
        for fmt in plan.log_formats:
            samples: list[StartSample] = []
            for run in range(plan.start_runs):
                samples.append(
                    await start_once(
                        emulator=emulator,
                        workdir=workdir / f"{fmt}-{run}",
                        log_format=fmt,
                        idle_seconds=plan.idle_seconds,
                    )
                )
            out["formats"][fmt] = {"starts": [s.to_json() for s in samples]}
    finally:
        await emulator.close()
    for fmt in plan.log_formats:
        cycle = await CycleDriver(
            workdir=workdir / f"cycle-{fmt}", log_format=fmt, pods_on_node=plan.cycle_pods
        ).run(within=90.0, idle_seconds=plan.idle_seconds)
        out["formats"][fmt]["cycle"] = cycle.to_json()
    return out


def _median_of(samples: Sequence[dict[str, Any]], key: str) -> float | None:
    return median(s[key] for s in samples if s.get(key) is not None)


def daemon_section(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="rebootd-bench-daemon-") as tmp:
        detail = asyncio.run(_daemon_measurements(plan, Path(tmp)))
    per_format: dict[str, dict[str, float | None]] = {}
    ready_spread: dict[str, tuple[float, float] | None] = {}
    for fmt, data in detail["formats"].items():
        starts = data["starts"]
        cycle = data.get("cycle") or {}
        per_format[fmt] = {
            "ready_seconds": _median_of(starts, "ready_seconds"),
            "cpu_to_ready_seconds": _median_of(starts, "cpu_to_ready_seconds"),
            "rss_ready_mib": _median_of(starts, "rss_ready_mib"),
            "rss_idle_mib": _median_of(starts, "rss_idle_mib"),
            "cycle_peak_mib": cycle.get("peak_mib") if cycle.get("completed") else None,
            "rss_idle_after_cycle_mib": cycle.get("rss_idle_after_cycle_mib"),
        }
        ready_spread[fmt] = spread(s["ready_seconds"] for s in starts if s["ready_seconds"] is not None)
    detail["medians"] = per_format
    detail["ready_seconds_min_max"] = ready_spread
    detail["import_memory_by_stage"] = memory_by_stage()
    detail["import_time"] = import_time_by_package()

    def worst(key: str) -> tuple[float | None, str]:
        values = {f: v[key] for f, v in per_format.items() if v.get(key) is not None}
        if len(values) != len(per_format) or not values:
            return None, "not measured for every log format"
        fmt = max(values, key=lambda f: values[f] or 0.0)
        shown = ", ".join(f"{f} {v:.1f}" for f, v in values.items())
        return values[fmt], f"worst of the log formats ({shown})"

    idle, idle_note = worst("rss_idle_mib")
    peak, peak_note = worst("cycle_peak_mib")
    peak_note += f"; drained {plan.cycle_pods} pods"
    ready, _ = worst("ready_seconds")
    cpu = {f: v["cpu_to_ready_seconds"] for f, v in per_format.items()}
    ready_note = f"median of {plan.start_runs} per format, worst format; CPU to ready " + ", ".join(
        f"{f} {v:.2f} s" for f, v in cpu.items() if v is not None
    )
    figures = [
        Figure(
            key="daemon_rss_idle_mib",
            label="daemon RSS, idle",
            value=idle,
            unit="MiB",
            op="<=",
            limit=RSS_LIMIT_MIB,
            stretch=RSS_STRETCH_MIB,
            note=idle_note,
        ),
        Figure(
            key="daemon_rss_cycle_peak_mib",
            label="daemon RSS, peak during a cycle (VmHWM)",
            value=peak,
            unit="MiB",
            op="<=",
            limit=RSS_LIMIT_MIB,
            stretch=RSS_STRETCH_MIB,
            note=peak_note,
        ),
        Figure(
            key="start_to_ready_seconds",
            label="start to /readyz 200",
            value=ready,
            unit="s",
            op="<=",
            limit=READY_LIMIT_SECONDS,
            note=ready_note,
        ),
    ]
    return figures, detail


# --- API load -----------------------------------------------------------------------------------


def api_section(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    idle = asyncio.run(idle_load(nodes=plan.load_nodes, seconds=plan.load_seconds))
    waiting = asyncio.run(waiting_load(nodes=plan.load_nodes, seconds=plan.load_seconds))
    detail = {"idle": idle.to_json(), "waiting": waiting.to_json(), "scale": SCALE}
    idle_counts = idle.by_role.get("idle")
    watches = idle_counts.get("watch", 0) if idle_counts else 0
    figures = [
        Figure(
            key="idle_requests_per_node_hour",
            label="API requests per idle node per hour (beyond watches)",
            value=idle.per_node_hour("idle", exclude=frozenset({"watch"})),
            unit="req/h",
            op="<=",
            limit=0.0,
            note=(
                f"{plan.load_nodes} idle daemons, {idle.seconds:.0f} s at {SCALE:g}x speed "
                f"({idle.seconds * SCALE / 3600:.2f} daemon-hours); watch requests {watches}; "
                f"start-up {idle.startup_per_node:.1f} requests per daemon"
            ),
        ),
        Figure(
            key="waiting_requests_per_node_hour",
            label="API requests per waiting node per hour",
            value=waiting.per_node_hour("waiting"),
            unit="req/h",
            note=(
                "queued behind a holder, default period 60 s: "
                + ", ".join(f"{verb} {n}" for verb, n in sorted(waiting.by_role.get("waiting", {}).items()))
                + f" in the window; plus {3600 / FOLLOWER_RESYNC:g} watch re-connects/h of the Lease "
                "follower (computed)"
            ),
        ),
        Figure(
            key="holder_requests_per_hour",
            label="API requests per holder per hour (recovering)",
            value=waiting.per_node_hour("holder"),
            unit="req/h",
            note="renewals every 30 s (default)",
        ),
    ]
    return figures, detail


# --- hand-offs ----------------------------------------------------------------------------------


def _handoff_json(h: HandoffCost) -> dict[str, Any]:
    return {
        "waiters": h.waiters,
        "gap_seconds": round(h.gap, 4),
        "writes": h.writes,
        "lease_writes": h.lease_writes,
        "lease_committed": h.lease_committed,
        "other_writes": h.other_writes,
        "writes_by_client": dict(sorted(h.by_client.items())),
    }


def _run_json(run: SimRun) -> dict[str, Any]:
    report = run.report or {}
    return {
        "config": {
            "nodes": run.config.nodes,
            "concurrency": run.config.concurrency,
            "spread_seconds": getattr(run.config, "spread_seconds", None),
            "workers": getattr(run.config, "worker_count", None),
        },
        "status": run.status,
        "halted": report.get("halted"),
        "wall_seconds": round(run.wall_seconds, 2),
        "cpu_seconds_main": round(run.cpu_seconds, 2),
        "cpu_seconds_workers": round(run.worker_cpu_seconds, 2),
        "queue_formed_seconds": _r(run.queue_formed_seconds),
        "lease_write_requests_to_form_queue": run.lease_writes_to_form_queue,
        "requests_by_verb": run.requests_by_verb,
        "handoffs": [_handoff_json(h) for h in run.handoffs],
        "steady_handoffs": len(run.steady),
        "report": {k: v for k, v in report.items() if k not in ("timeline", "invariants")},
        "invariants": report.get("invariants"),
    }


def handoff_runs(plan: Plan) -> dict[int, list[SimRun]]:
    runs: dict[int, list[SimRun]] = {}
    for waiters in plan.waiters:
        repeats = plan.single_waiter_runs if waiters == 1 else 1
        runs[waiters] = []
        for seed in range(repeats):
            config = sim_config(nodes=waiters + 1, concurrency=1, seed=seed, timeout=240.0)
            stop = None if waiters == 1 else plan.steady_handoffs
            runs[waiters].append(simulate_sync(config, steady_handoffs=stop, env=SIM_ENV))
    return runs


def handoff_section(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    runs = handoff_runs(plan)
    figures: list[Figure] = []
    detail: dict[str, Any] = {"runs": {str(w): [_run_json(r) for r in rs] for w, rs in runs.items()}}
    points: list[tuple[float, float]] = []
    lease_points: list[tuple[float, float]] = []
    medians: dict[int, float | None] = {}
    concurrency = 1
    limit = 2.0 * concurrency + 3
    for waiters, rs in runs.items():
        steady = [h for r in rs for h in r.steady]
        points += [(h.waiters, h.writes) for h in steady]
        lease_points += [(h.waiters, h.lease_writes) for h in steady]
        writes = median(h.writes for h in steady)
        lease = median(h.lease_writes for h in steady)
        committed = median(h.lease_committed for h in steady)
        medians[waiters] = writes
        formed = [r.queue_formed_seconds for r in rs if r.queue_formed_seconds is not None]
        figures.append(
            Figure(
                key=f"writes_per_handoff_{waiters}_waiters",
                label=f"API writes per hand-off, {waiters} waiter{'s' if waiters != 1 else ''}",
                value=writes,
                unit="writes",
                op="<=",
                limit=limit,
                note=(
                    f"median of {len(steady)} hand-offs (waiters "
                    f"{sorted({h.waiters for h in steady})}); lease writes {lease} "
                    f"({committed} committed); queue formed after "
                    + (f"{formed[0]:.1f} s" if formed else "-")
                ),
            )
        )
    fit = slope(points)
    span = max(plan.waiters) - min(plan.waiters)
    growth = None if fit is None else fit * span
    lease_fit = slope(lease_points)
    figures.append(
        Figure(
            key="writes_growth_over_waiters",
            label=f"extra writes per hand-off, {min(plan.waiters)} -> {max(plan.waiters)} waiters",
            value=growth,
            unit="writes",
            op="<=",
            limit=FLAT_LIMIT,
            note=(f"least-squares slope {fit:.3f} writes per waiter" if fit is not None else "no fit")
            + (f"; lease writes alone {lease_fit:.3f} per waiter" if lease_fit is not None else ""),
        )
    )
    herd = runs[max(plan.waiters)][0]
    figures.append(
        Figure(
            key="queue_join_lease_writes",
            label=f"Lease write requests for {max(plan.waiters) + 1} nodes to join at once",
            value=float(herd.lease_writes_to_form_queue),
            unit="writes",
            note=(
                f"all reboot-required at once; queue formed after {herd.queue_formed_seconds:.1f} s"
                if herd.queue_formed_seconds is not None
                else "all reboot-required at once; the queue never formed"
            ),
        )
    )
    detail["writes_by_waiters"] = {str(w): m for w, m in medians.items()}
    detail["slope_writes_per_waiter"] = _r(fit, 4)
    detail["slope_lease_writes_per_waiter"] = _r(lease_fit, 4)
    detail["gaps"] = [h.gap for rs in runs.values() for r in rs for h in r.handoffs]
    return figures, detail


# --- rollouts -----------------------------------------------------------------------------------


def phase_overheads(report: dict[str, Any]) -> dict[str, float]:
    """Mean seconds per node beyond the configured minimum, per step: together they make the
    overhead ratio. A node's time runs from the previous release (the hand-off gap includes
    taking the slot and cordoning) to its own release; recovery and the release delay overlap the
    steps after boot, so they are taken together."""
    means: dict[str, float] = report.get("mean_phase_seconds") or {}
    bound = report.get("lower_bound") or {}
    gaps = report.get("handoff_gap_seconds") or {}
    out = {
        "hand-off gap, release -> next cordon (median)": float(gaps.get("p50") or 0.0),
        "  of which slot -> cordon": means.get("slot to cordon", 0.0),
        "drain beyond its minimum": means.get("drain", 0.0) - float(bound.get("drain", 0.0)),
        "drained -> node down": means.get("drained to down", 0.0),
        "boot beyond its minimum": means.get("boot", 0.0) - float(bound.get("boot", 0.0)),
        "ready -> release beyond recovery + release delay": means.get("ready to uncordon", 0.0)
        + means.get("uncordon to release", 0.0)
        - float(bound.get("recovery", 0.0))
        - float(bound.get("release_delay", 0.0)),
    }
    return {k: round(v, 4) for k, v in out.items()}


def rollout_section(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    detail: dict[str, Any] = {"runs": {}, "sim_env": SIM_ENV}
    all_gaps: list[float] = []
    first_gaps: list[float] = []
    for index, (nodes, concurrency, period) in enumerate(plan.rollouts):
        rounds = -(-nodes // concurrency)
        profile = plan.profile and index == 0
        config = sim_config(
            nodes=nodes,
            concurrency=concurrency,
            spread_seconds=plan.spread_seconds,
            timeout=max(60.0, 3.0 * rounds * PER_NODE_SECONDS),
            # a profiled run keeps every daemon in this process, so cProfile sees them too
            **({"workers": 0} if profile else {}),
        )
        env = {**SIM_ENV, "REBOOTD_PERIOD": f"{period:g}s"}
        run = simulate_sync(config, env=env, profile=profile)
        report = run.report or {}
        data = _run_json(run)
        data["overhead_by_step_seconds"] = phase_overheads(report) if report else {}
        if run.profile:
            data["profile_top"] = run.profile
        detail["runs"][f"{nodes}x{concurrency}"] = data
        all_gaps += run.gaps
        if index == 0:
            first_gaps = run.gaps
        ratio = report.get("overhead_ratio")
        per_node = (report.get("lower_bound") or {}).get("per_node_seconds", PER_NODE_SECONDS)
        note = (
            f"concurrency {concurrency}, period {period:g} s, {rounds} rounds x {per_node} s, "
            f"status {run.status}"
            + (f" ({report.get('halted')})" if report.get("halted") else "")
            + f"; CPU main {run.cpu_share:.0%}, workers {run.worker_cpu_share:.0%} of a core"
        )
        figures.append(
            Figure(
                key=f"rollout_overhead_ratio_{nodes}_nodes",
                label=f"rollout overhead ratio, {nodes} nodes",
                value=ratio,
                unit="x",
                op="<=",
                limit=RATIO_LIMIT,
                note=note,
            )
        )
    gaps = first_gaps or all_gaps
    name = f"{plan.rollouts[0][0]} nodes" if first_gaps else "all runs"
    detail["gaps_all_runs"] = {"count": len(all_gaps), "p50": percentile(all_gaps, 50)}
    figures.append(
        Figure(
            key="handoff_gap_p50_seconds",
            label=f"hand-off gap p50 ({name})",
            value=percentile(gaps, 50),
            unit="s",
            note=f"{len(gaps)} hand-offs; release -> next cordon",
        )
    )
    figures.append(
        Figure(
            key="handoff_gap_p99_seconds",
            label=f"hand-off gap p99 ({name})",
            value=percentile(gaps, 99),
            unit="s",
            op="<",
            limit=GAP_P99_LIMIT_SECONDS,
            note=(
                f"max {max(gaps):.3f} s; over every rollout p99 {percentile(all_gaps, 99) or 0:.3f} s"
                if gaps
                else "no hand-off"
            ),
        )
    )
    return figures, detail


# --- the emulator -------------------------------------------------------------------------------


def emulator_section(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="rebootd-bench-emulator-") as tmp:
        results = asyncio.run(
            emulator_throughput(
                workdir=Path(tmp), count=plan.throughput_count, seconds=plan.throughput_seconds
            )
        )
    keys = ("emulator_get_rps", "emulator_list_rps", "emulator_patch_rps")
    figures = [
        Figure(
            key=key,
            label=f"emulator: {t.operation}",
            value=t.per_second,
            unit="req/s",
            note=f"{t.requests} requests, {t.concurrency} concurrent clients, {t.errors} errors",
        )
        for key, t in zip(keys, results, strict=True)
    ]
    return figures, {"throughput": [t.to_json() for t in results]}


def scale_section(plan: Plan) -> tuple[list[Figure], dict[str, Any]]:
    """Issue 16: the Lease's size, the join and one hand-off at 100 to 5,000 nodes (bench/scale.py)."""
    points = run_scale(sizes=plan.scale_sizes, handoffs=plan.scale_handoffs)
    detail = scale_summary(points)
    largest = points[-1]
    growth = detail["growth_exponents"]
    gaps = largest.gaps
    figures = [
        Figure(
            key="scale_lease_bytes_max",
            label=f"Lease bytes, largest over {plan.scale_sizes[0]}-{largest.nodes} nodes",
            value=float(max(p.lease_bytes_max for p in points)),
            unit="B",
            op="<=",
            limit=4096,
        ),
        Figure(
            key="scale_writes_per_joining_node",
            label=f"writes per node joining the queue at {largest.nodes} nodes",
            value=largest.join_writes_per_node,
            unit="",
            op="<=",
            limit=2,
        ),
        Figure(
            key="scale_requests_per_joining_node",
            label=f"requests per node joining the queue at {largest.nodes} nodes",
            value=largest.join_requests_per_node,
            unit="",
        ),
        Figure(
            key="scale_handoff_gap_p99_seconds",
            label=f"hand-off gap p99 at {largest.nodes} nodes ({len(gaps)} hand-offs)",
            value=percentile(gaps, 99) if gaps else None,
            unit="s",
            op="<",
            limit=1.0,
        ),
        Figure(
            key="scale_bytes_per_handoff_growth",
            label="growth exponent of the bytes sent per hand-off (log-log fit over the sizes)",
            value=growth["bytes_per_handoff"],
            unit="",
            op="<=",
            limit=1.1,
        ),
        Figure(
            key="scale_cpu_per_handoff_seconds",
            label=f"CPU s per hand-off at {largest.nodes} nodes (emulator + every client: one process)",
            value=largest.cpu_per_handoff,
            unit="s",
        ),
    ]
    return figures, detail


SECTIONS: dict[str, Section] = {
    "daemon": daemon_section,
    "api": api_section,
    "handoffs": handoff_section,
    "rollout": rollout_section,
    "emulator": emulator_section,
    "scale": scale_section,
}

EXPECTED_KEYS: dict[str, tuple[str, ...]] = {
    "daemon": ("daemon_rss_idle_mib", "daemon_rss_cycle_peak_mib", "start_to_ready_seconds"),
    "api": ("idle_requests_per_node_hour",),
    "handoffs": ("writes_growth_over_waiters",),
    "rollout": ("handoff_gap_p99_seconds",),
    "emulator": (),
    "scale": ("scale_lease_bytes_max", "scale_writes_per_joining_node", "scale_handoff_gap_p99_seconds"),
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg()
    meminfo = procfs.parse_status(Path("/proc/meminfo").read_text())
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in load],
        "memory_total_mib": round(meminfo.get("MemTotal", 0) / procfs.MIB),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
