"""`rebootd emulator`: serve a seeded emulated cluster until SIGINT/SIGTERM; `rebootd simulate`:
run a whole simulated rollout and print its report.

Rule: argument parsing and the seeded cluster layout are pure (`parse_args`, `seed_cluster`,
`parse_simulate_args`); the emulator command prints the URL, writes the kubeconfig, then waits on
a signal-set event, closes the emulator and returns 0. The simulate command configures the
daemons' logs (discarded unless `--log-file`), runs `rebootd.sim.simulate` and exits with its
outcome's code (0 ok, 1 failed, 2 usage, 3 halted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rebootd.emulator.emulator import Emulator
from rebootd.sim.shape import shape_values


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rebootd emulator",
        description="Serve an emulated Kubernetes API with a seeded cluster (nodes, workloads, PDBs).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free port)")
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument(
        "--zones", type=int, default=1, help="number of zones the nodes spread over (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the emulator's random choices")
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="write a kubeconfig for the emulator here"
    )
    args = parser.parse_args(list(argv))
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.zones < 1:
        parser.error("--zones must be at least 1")
    return args


def seed_cluster(emulator: Emulator, *, nodes: int, zones: int) -> None:
    """Nodes labelled with zones, two Deployments and a StatefulSet with PDBs, a DaemonSet."""
    for index in range(nodes):
        zone = f"zone-{chr(ord('a') + index % zones)}" if zones <= 26 else f"zone-{index % zones}"
        emulator.add_node(name=f"node-{index:03d}", zone=zone)
    spread = max(2, min(nodes, 6))
    emulator.add_workload(kind="Deployment", name="web", replicas=spread, pdb_max_unavailable=1)
    emulator.add_workload(kind="Deployment", name="api", replicas=max(2, spread // 2), pdb_min_available=1)
    emulator.add_workload(kind="StatefulSet", name="db", replicas=min(3, nodes), pdb_max_unavailable=1)
    emulator.add_workload(kind="DaemonSet", name="node-agent", namespace="kube-system")


async def serve(args: argparse.Namespace) -> int:
    emulator = Emulator(seed=args.seed)
    seed_cluster(emulator, nodes=args.nodes, zones=args.zones)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await emulator.start(host=args.host, port=args.port)
    try:
        if args.kubeconfig is not None:
            emulator.write_kubeconfig(args.kubeconfig)
        print(emulator.url, flush=True)
        if args.kubeconfig is not None:
            print(f"kubeconfig: {args.kubeconfig}", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await asyncio.shield(emulator.close())
    return 0


def emulator_command(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    return asyncio.run(serve(args))


# --- rebootd simulate ----------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def parse_simulate_args(argv: Sequence[str]) -> argparse.Namespace:
    from rebootd.sim.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="rebootd simulate",
        description=(
            "Simulate a whole cluster's rollout in one command: an emulated Kubernetes API, one real "
            "rebootd daemon per node, workloads with PodDisruptionBudgets and a scenario; then report "
            "what rebootd did and whether it was safe (invariants judged from the API's history)."
        ),
        epilog=(
            "Scenarios: "
            + "; ".join(f"{name}: {text}" for name, text in SCENARIOS.items())
            + ". Exit status: 0 the rollout completed and every invariant held; 1 an invariant "
            "failed, the rollout timed out or the scenario's expected outcome did not happen; 2 usage "
            "error; 3 the rollout halted (reason in the report) and every invariant held."
        ),
    )
    parser.add_argument("--nodes", type=int, default=10, help="number of nodes (default 10)")
    parser.add_argument("--zones", type=int, default=3, help="zones the nodes spread over (default 3)")
    parser.add_argument("--concurrency", type=int, default=1, help="nodes disrupted at once (default 1)")
    parser.add_argument(
        "--zone-concurrency",
        type=int,
        default=0,
        help="nodes disrupted at once per zone (default 0: no limit)",
    )
    parser.add_argument(
        "--drain-seconds", type=_positive_float, default=0.5, help="how long a drain takes (default 0.5)"
    )
    parser.add_argument(
        "--boot-seconds", type=_positive_float, default=1.0, help="how long a node takes to boot (default 1)"
    )
    parser.add_argument(
        "--recovery-seconds",
        type=_positive_float,
        default=0.25,
        help="how long restarted pods take to be Ready after boot (default 0.25)",
    )
    parser.add_argument(
        "--release-delay",
        type=_positive_float,
        default=0.25,
        help="the daemons' lock release delay in seconds (default 0.25)",
    )
    parser.add_argument(
        "--spread",
        type=_positive_float,
        default=0.0,
        help="the nodes' reboot-required files appear one by one over this many seconds (default 0: "
        "all at once)",
    )
    parser.add_argument(
        "--faults", choices=("none", "light", "heavy"), default="none", help="API fault preset (default none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument(
        "--scenario", choices=tuple(SCENARIOS), default="default", help="what happens (default: default)"
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="run each daemon as a `rebootd run` subprocess configured only through REBOOTD_* variables",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes for the in-process daemons (0: all in this process; default: one per "
        "CPU, at most 4, from 16 nodes on)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="hard limit in seconds (default: from the sizes)",
    )
    parser.add_argument(
        "--log-file", type=Path, default=None, help="write the daemons' logs (JSON lines) to this file"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the nodes' files here (default: a temporary dir)"
    )
    parser.add_argument(
        "--control-plane",
        choices=("emulator", "real"),
        default="emulator",
        help="the API server: the project's emulator (default) or a real etcd, kube-apiserver, "
        "kube-controller-manager and kube-scheduler built by `nox -s controlplane` (the scenarios "
        "that need no emulator-only fault; invariants from the kube-apiserver's audit log)",
    )
    from rebootd.sim import whatif_cli

    whatif_cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    if args.nodes < 1 or args.zones < 1 or args.concurrency < 1 or args.zone_concurrency < 0:
        parser.error("--nodes, --zones and --concurrency must be >= 1, --zone-concurrency >= 0")
    if args.workers is not None and args.workers < 0:
        parser.error("--workers must be >= 0")
    if args.boot_seconds <= 0:
        parser.error("--boot-seconds must be > 0")
    if args.control_plane == "real" and (
        args.faults != "none"
        or args.processes
        or args.spread
        or args.workers
        or whatif_cli.wants_whatif(args)
        or args.snapshot is not None
    ):
        parser.error(
            "--control-plane real runs with in-process daemons only (no --faults, "
            "--processes, --spread or --workers: those need the emulator's fault injection; no "
            "--from-snapshot, --from-cluster or --snapshot: a what-if replays on the emulator)"
        )
    return args


def simulate_command(argv: Sequence[str]) -> int:
    """`rebootd simulate`: run, print the report (text or JSON), exit with the outcome's code."""
    import os

    from rebootd.logs import configure
    from rebootd.sim.live import LineProgress, LiveView, Progress
    from rebootd.sim.scenarios import ScenarioError
    from rebootd.sim.simulate import EXIT_USAGE, SimulationConfig, run_simulation

    try:
        args = parse_simulate_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.control_plane == "real":
        return _simulate_real(args, argv)
    from rebootd.sim import whatif_cli

    if whatif_cli.wants_whatif(args) or args.snapshot is not None:
        configure(fmt="json", level="error", stream=open(os.devnull, "w"))  # noqa: SIM115 - process-long
        return whatif_cli.run_command(args, argv=argv, environ=os.environ)
    config = SimulationConfig(
        **shape_values(vars(args)),
        spread_seconds=args.spread,
        faults=args.faults,
        processes=args.processes,
        timeout=args.timeout,
        workers=args.workers,
    )
    with contextlib.ExitStack() as stack:
        log_stream = stack.enter_context(
            open(args.log_file, "a", encoding="utf-8") if args.log_file else open(os.devnull, "w")  # noqa: SIM115
        )
        configure(fmt="json", level="info" if args.log_file else "error", stream=log_stream)
        progress_stream = sys.stderr if args.json else sys.stdout
        progress: Progress = (
            LiveView(progress_stream) if progress_stream.isatty() else LineProgress(progress_stream)
        )
        try:
            outcome = run_simulation(
                config,
                progress=progress,
                workdir=args.workdir,
                log_file=args.log_file,
                log_level="info" if args.log_file else "error",
            )
        except ScenarioError as exc:
            sys.stderr.write(f"rebootd simulate: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            sys.stderr.write("rebootd simulate: interrupted\n")
            return 130
    if args.html is not None:
        from rebootd.sim.timeline_html import chart_of_outcome, render

        args.html.write_text(render(chart_of_outcome(outcome)), encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(outcome.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(outcome.render() + "\n")
    sys.stdout.flush()
    return outcome.exit_code


def _simulate_real(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """`rebootd simulate --control-plane real` (rebootd.sim.realrun); exit 2 without the binaries."""
    import os
    import shlex
    import tempfile

    from rebootd.logs import configure
    from rebootd.sim.realrun import EXIT_USAGE, ControlPlaneMissing, RealConfig, check_runnable, simulate_real
    from rebootd.sim.scenarios import ScenarioError

    config = RealConfig(**shape_values(vars(args)))
    try:
        check_runnable(config)
    except ScenarioError as exc:
        sys.stderr.write(f"rebootd simulate: {exc}\n")
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        log_stream = stack.enter_context(
            open(args.log_file, "a", encoding="utf-8") if args.log_file else open(os.devnull, "w")  # noqa: SIM115
        )
        configure(fmt="json", level="info" if args.log_file else "error", stream=log_stream)
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="rebootd-real-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            outcome = asyncio.run(
                simulate_real(
                    config,
                    workdir=workdir,
                    command=shlex.join(["rebootd", "simulate", *argv]),
                    deadline_seconds=args.timeout,
                )
            )
        except ControlPlaneMissing as exc:
            sys.stderr.write(f"rebootd simulate: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            sys.stderr.write("rebootd simulate: interrupted\n")
            return 130
    if args.json:
        sys.stdout.write(json.dumps(outcome.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(outcome.render() + "\n")
    sys.stdout.flush()
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(emulator_command(sys.argv[1:]))
