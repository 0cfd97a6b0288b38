"""Where the daemon's memory and start-up time go: its imports, measured in fresh interpreters.

Rule: each measurement runs in a new subprocess of the interpreter that runs the daemon (so the
same installed packages), imports the daemon's stack in stages and reports RSS after each stage,
or runs Python's own `-X importtime` over the daemon's imports and sums the self time per
top-level package. Pure parsing (`parse_importtime`) is separate from running.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

# Each stage adds the imports the daemon needs, in the order a start-up meets them.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interpreter", ()),
    ("stdlib used by the stack", ("asyncio", "ssl", "json", "email.utils", "http.client", "logging")),
    ("structlog (rebootd.logs)", ("rebootd.logs",)),
    ("pydantic + pydantic-settings (rebootd.settings)", ("rebootd.settings",)),
    ("aiohttp", ("aiohttp",)),
    ("prometheus-client (rebootd.metrics)", ("rebootd.metrics",)),
    ("rebootd.kube (its own session: no kubernetes-asyncio)", ("rebootd.kube",)),
    ("the rest of rebootd (daemon, cli)", ("rebootd.daemon", "rebootd.cli")),
)

_STAGE_SCRIPT = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
out = []
for label, modules in json.loads(sys.argv[1]):
    for name in modules:
        importlib.import_module(name)
    out.append({"stage": label, "rss": rss(), "modules": len(sys.modules)})
print(json.dumps(out))
"""

_DAEMON_IMPORTS = "import rebootd.cli, rebootd.daemon"


def memory_by_stage(*, python: str = sys.executable, runs: int = 3) -> list[dict[str, float | int | str]]:
    """RSS after each stage (median of `runs` fresh interpreters) and what each stage added."""
    samples: list[list[dict[str, int | str]]] = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-c", _STAGE_SCRIPT, json.dumps(STAGES)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        samples.append(json.loads(done.stdout))
    out: list[dict[str, float | int | str]] = []
    previous = 0.0
    for index, (label, _) in enumerate(STAGES):
        values = sorted(int(s[index]["rss"]) for s in samples)
        rss = values[len(values) // 2] / 2**20
        out.append(
            {
                "stage": label,
                "rss_mib": round(rss, 2),
                "added_mib": round(rss - previous, 2) if index else round(rss, 2),
                "modules": int(samples[0][index]["modules"]),
            }
        )
        previous = rss
    return out


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(text: str) -> Counter[str]:
    """Self time in microseconds per top-level package from `-X importtime` output."""
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            totals[match.group(4).split(".")[0]] += int(match.group(1))
    return totals


def import_time_by_package(
    *, python: str = sys.executable, runs: int = 3, top: int = 12
) -> dict[str, object]:
    """Import self time per top-level package for the daemon's imports (median of `runs`)."""
    per_run: list[Counter[str]] = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-X", "importtime", "-c", _DAEMON_IMPORTS],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        per_run.append(parse_importtime(done.stderr))
    packages = set().union(*per_run)
    median = {p: sorted(r.get(p, 0) for r in per_run)[len(per_run) // 2] for p in packages}
    total = sum(median.values())
    ranked: Sequence[tuple[str, int]] = sorted(median.items(), key=lambda kv: -kv[1])[:top]
    return {
        "total_ms": round(total / 1000, 1),
        "by_package_ms": {name: round(us / 1000, 1) for name, us in ranked},
    }
