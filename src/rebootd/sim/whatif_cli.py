"""The what-if flags of `rebootd simulate` (`--from-cluster`, `--from-snapshot`, `--snapshot`,
`--html` and the replay's timing) and the command that runs them.

Rule: `--from-cluster` only reads (list and get, through the operator commands' kubeconfig rules:
`--kubeconfig`, `REBOOTD_KUBECONFIG`, in-cluster, `$KUBECONFIG`, `~/.kube/config`); `--snapshot
FILE` writes what it read; `--from-snapshot FILE` replays a file. The user's settings are the
installed rebootd's literal `REBOOTD_*` values, then `REBOOTD_*` in the environment, then `--set
NAME=VALUE` and an explicit `--concurrency` / `--zone-concurrency`. Exit status: 0 every
rebootable node rebooted within the nights, 3 nodes left (never rebootable or out of time), 1 a
safety invariant failed, 2 a usage error or an unreachable cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what-if on your own cluster")
    group.add_argument(
        "--from-cluster",
        action="store_true",
        help="read the cluster (list/get only: nodes, pods, PDBs, workload controllers) and replay "
        "its rollout",
    )
    group.add_argument("--from-snapshot", type=Path, default=None, help="replay the rollout of this snapshot")
    group.add_argument(
        "--snapshot", type=Path, default=None, help="with --from-cluster: write the snapshot (YAML) here"
    )
    group.add_argument(
        "--snapshot-only", action="store_true", help="with --snapshot: write it and do not replay"
    )
    group.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig for --from-cluster (default: kubectl's rules)",
    )
    group.add_argument("--nights", type=int, default=2, help="maintenance windows to replay (default 2)")
    group.add_argument(
        "--clock-speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second (default 60: a 6-hour night in 6 minutes)",
    )
    group.add_argument(
        "--start",
        default=None,
        help="look for the first window from this instant (ISO 8601, default: now)",
    )
    group.add_argument(
        "--node-boot-seconds", type=float, default=180.0, help="simulated boot time of a node (default 180)"
    )
    group.add_argument(
        "--pod-ready-seconds",
        type=float,
        default=30.0,
        help="simulated time a restarted pod takes to be Ready (default 30)",
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a rebootd setting for the replay (start-time=22:00 or REBOOTD_START_TIME=22:00); repeatable",
    )
    group.add_argument(
        "--verify",
        action="store_true",
        help="replay again at the suggested concurrency to confirm it fits (doubles the run time)",
    )
    parser.add_argument(
        "--html", type=Path, default=None, help="write the rollout's timeline as one self-contained HTML page"
    )


def wants_whatif(args: argparse.Namespace) -> bool:
    return bool(args.from_cluster or args.from_snapshot is not None)


def _setting(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--set needs NAME=VALUE, got {item!r}")
    name = name.strip()
    if not name.upper().startswith("REBOOTD_"):
        name = "REBOOTD_" + name.replace("-", "_")
    return name.upper(), value


def _explicit(argv: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


async def _read_cluster(kubeconfig: Path | None) -> object:
    from rebootd.kube import Kube
    from rebootd.sim.snapshot import read_cluster

    kube = await Kube.connect(kubeconfig=kubeconfig, user_agent="rebootd-whatif")
    try:
        return await read_cluster(kube=kube)
    finally:
        await kube.close()


def run_command(
    args: argparse.Namespace,
    *,
    argv: Sequence[str],
    environ: Mapping[str, str],
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    from rebootd.kube import KubeError
    from rebootd.settings import InvalidConfig
    from rebootd.sim import snapshot as snap
    from rebootd.sim import timeline_html, whatif

    if args.from_cluster and args.from_snapshot is not None:
        stderr.write("rebootd simulate: --from-cluster or --from-snapshot, not both\n")
        return EXIT_USAGE
    if (args.snapshot is not None or args.snapshot_only) and not args.from_cluster:
        stderr.write("rebootd simulate: --snapshot writes what --from-cluster read\n")
        return EXIT_USAGE
    try:
        given = {k: v for k, v in environ.items() if k.startswith("REBOOTD_") and k != "REBOOTD_KUBECONFIG"}
        given.update(_setting(item) for item in args.set)
        start = datetime.fromisoformat(args.start) if args.start else None
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if args.from_cluster:
            kubeconfig = args.kubeconfig or (
                Path(environ["REBOOTD_KUBECONFIG"]) if environ.get("REBOOTD_KUBECONFIG") else None
            )
            taken = asyncio.run(_read_cluster(kubeconfig))
            assert isinstance(taken, snap.Snapshot)
            name = "the cluster"
            if args.snapshot is not None:
                args.snapshot.write_text(taken.to_yaml(), encoding="utf-8")
                sizes = f"{len(taken.nodes)} nodes, {len(taken.pods)} pods"
                stderr.write(f"rebootd simulate: wrote {args.snapshot} ({sizes})\n")
                if args.snapshot_only:
                    return 0
        else:
            taken = snap.load(args.from_snapshot)
            name = str(args.from_snapshot)
        options = whatif.WhatIfOptions(
            snapshot=taken,
            name=name,
            env=given,
            concurrency=args.concurrency if _explicit(argv, "--concurrency") else None,
            zone_concurrency=args.zone_concurrency if _explicit(argv, "--zone-concurrency") else None,
            nights=args.nights,
            start=start,
            clock_speed=args.clock_speed,
            boot_seconds=args.node_boot_seconds,
            recovery_seconds=args.pod_ready_seconds,
            seed=args.seed,
            workers=args.workers,
            verify=args.verify,
        )
        settings_problem = None
        try:
            whatif.user_settings(options)
        except InvalidConfig as exc:
            settings_problem = str(exc)
        if settings_problem is not None:
            stderr.write(f"rebootd simulate: {settings_problem}\n")
            return EXIT_USAGE
        result = whatif.run(options)
    except (snap.SnapshotError, ValueError) as exc:
        stderr.write(f"rebootd simulate: {exc}\n")
        return EXIT_USAGE
    except KubeError as exc:
        stderr.write(f"rebootd simulate: cannot read the cluster: {exc}\n")
        return EXIT_USAGE
    if args.html is not None:
        args.html.write_text(timeline_html.render(whatif.chart(result)), encoding="utf-8")
    if args.json:
        stdout.write(json.dumps(whatif.to_json(result), indent=2) + "\n")
    else:
        stdout.write(whatif.render_text(result) + "\n")
    stdout.flush()
    return result.exit_code
