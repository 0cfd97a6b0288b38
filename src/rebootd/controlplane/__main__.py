"""`python -m rebootd.controlplane build|versions|up`: build the binaries (what `nox -s
controlplane` runs), print their versions, or run a control plane until interrupted.

Rule: a thin command line over `build` and `launch`; exit 2 with the build command when the
binaries are missing or cannot be built.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from rebootd.controlplane.build import BuildError, build_binaries, locate_binaries, versions
from rebootd.controlplane.launch import ControlPlaneError, running_control_plane

UP_MAX_SECONDS = 24 * 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebootd.controlplane")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the four binaries (seconds when cached) and print their versions")
    sub.add_parser("versions", help="print the built binaries' versions")
    up = sub.add_parser("up", help="run a control plane in a temp dir until interrupted")
    up.add_argument("--seconds", type=float, default=UP_MAX_SECONDS, help="stop after this long")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            started = time.monotonic()
            binaries = build_binaries(progress=lambda line: print(line, flush=True))
            print(f"binaries in {binaries.directory} ({time.monotonic() - started:.1f} s)")
        else:
            binaries = locate_binaries()
        if args.command in {"build", "versions"}:
            for name, line in versions(binaries=binaries).items():
                print(f"{name}: {line}")
            return 0
        with (
            tempfile.TemporaryDirectory(prefix="rebootd-cp-") as tmp,
            running_control_plane(binaries=binaries, work_dir=Path(tmp) / "run") as plane,
        ):
            print(f"kube-apiserver {plane.version.get('gitVersion')} at {plane.url}", flush=True)
            print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
            threading.Event().wait(args.seconds)
        return 0
    except (BuildError, ControlPlaneError) as exc:
        print(f"rebootd.controlplane: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
