"""`python -m bench.run` (what `nox -s bench` runs): every measurement, bench/results.json, and a
table of target / measured / result.

Rule: sections run one after another (never in parallel: they would measure each other), each
in its own event loop; a section that crashes is recorded with its traceback and its figures are
reported as not measured, the others still run. The in-process daemons of the simulator log
nowhere (level error to /dev/null) so logging costs no time. Exit status: 0 when every section
ran (targets missed or not: the table says which), 1 with `--strict` and a missed target, 2 when
a section crashed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.sections import EXPECTED_KEYS, SECTIONS, Plan, machine
from bench.stats import Figure, render_table
from rebootd.logs import configure

DEFAULT_OUT = Path(__file__).with_name("results.json")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (bench/results.json)")
    parser.add_argument(
        "--only", action="append", choices=tuple(SECTIONS), help="run only this section (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every section")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the first rollout (its figures get slower)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(list(argv))


def environment() -> dict[str, Any]:
    """The interpreter and packages the daemons run with (the bench's own: `nox -s bench` installs
    only the package), and whether `rich` (which structlog's text renderer picks up) is present."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "rebootd": version("rebootd"),
        "kubernetes-asyncio": version("kubernetes-asyncio"),
        "aiohttp": version("aiohttp"),
        "pydantic": version("pydantic"),
        "rich_installed": importlib.util.find_spec("rich") is not None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.profile:
        plan = dataclasses.replace(plan, profile=True)
    with open(os.devnull, "w") as devnull:
        configure(fmt="json", level="error", stream=devnull)
        return _run(args, plan)


def _run(args: argparse.Namespace, plan: Plan) -> int:
    selected = args.only or list(SECTIONS)
    env = environment()
    results: dict[str, Any] = {
        "machine": machine(),
        "environment": env,
        "plan": dataclasses.asdict(plan),
        "sections": {},
        "figures": {},
    }
    if env["rich_installed"]:
        print(
            "note: `rich` is installed here, so the text log format loads it; `nox -s bench` measures "
            "without it",
            file=sys.stderr,
        )
    figures: list[Figure] = []
    crashed = False
    started = time.monotonic()
    for name in selected:
        print(f"[{time.monotonic() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            section_figures, detail = SECTIONS[name](plan)
        except Exception:  # noqa: BLE001 - one failed section must not lose the others' figures
            crashed = True
            detail = {"error": traceback.format_exc()}
            print(detail["error"], file=sys.stderr)
            section_figures = [
                Figure(
                    key=key,
                    label=key.replace("_", " "),
                    value=None,
                    unit="",
                    op="<=",
                    limit=0.0,
                    note=f"section {name} crashed",
                )
                for key in EXPECTED_KEYS.get(name, ())
            ]
        detail["seconds"] = round(time.monotonic() - t0, 1)
        results["sections"][name] = detail
        figures += section_figures
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["figures"] = {f.key: f.to_json() for f in figures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    print()
    print(
        f"rebootd bench on {m['cpus_usable']} of {m['cpu_count']} cores, load {m['load_average']} -> "
        f"{m['load_average_end']}, Python {env['python']}, rich installed: {env['rich_installed']}; "
        f"{results['wall_seconds']:.0f} s"
    )
    print(render_table(figures))
    print(f"\nwritten: {args.out}")
    if crashed:
        return 2
    missed = [f for f in figures if f.passed is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
