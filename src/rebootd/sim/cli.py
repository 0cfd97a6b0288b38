"""`rebootd emulator`: serve a seeded emulated cluster until SIGINT/SIGTERM.

Rule: argument parsing and the seeded cluster layout are pure (`parse_args`, `seed_cluster`); the
command prints the URL, writes the kubeconfig, then waits on a signal-set event, closes the
emulator and returns 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rebootd.sim.emulator import Emulator


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


if __name__ == "__main__":
    sys.exit(emulator_command(sys.argv[1:]))
