"""The what-if's done-when on the 300-node snapshot (tests/fixtures/snapshots/large.yaml: 3 zones,
a PDB that allows nothing, a blocking bare pod, two GPU nodes rebootd does not tolerate, a
01:00-02:30 window, concurrency 1), replayed as a user runs it at the default 60x.

One night, not the README's two: about 2.5 minutes on 2 cores under a load average of 20 (the
two-night command of the README takes about 4). The night must be conclusive (before each night
queued only the nodes it could reach, 296 waiting daemons' periodic checks swamped the machine
and it rebooted 0 to 4 nodes): at least SOME_ROUNDS nodes rebooted one after another at
concurrency 1 (a 3-minute boot, 30 s recovery: at most about 17 fit in 90 minutes; 15-16
measured), the pinned nodes named with their reasons, a suggested concurrency that fits the
night where the smaller ones do not, and every safety invariant held. Its `--html` page renders
in headless Chromium (Debian's `chromium`; a missing one fails under CI=true) with one row per
node, the inline script run and no console error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.tools import require_binary

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots" / "large.yaml"
SOME_ROUNDS = 10
REPLAY_TIMEOUT = 420


def test_the_300_node_replay_fills_its_night_names_the_pinned_nodes_and_suggests_a_concurrency(
    tmp_path: Path,
) -> None:
    chromium = require_binary("chromium", install_hint="apt-get install chromium")
    html = tmp_path / "out.html"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rebootd",
            "simulate",
            "--from-snapshot",
            str(SNAPSHOT),
            "--start",
            "2025-01-06T12:00:00+00:00",
            "--nights",
            "1",
            "--json",
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT,
        check=False,
    )
    assert result.stdout, result.stderr[-3000:]
    data = json.loads(result.stdout)
    seconds = time.monotonic() - started
    assert result.returncode == 3, data  # nodes are left: the pinned ones, and most of the 296
    (night,) = data["nights"]
    assert night["invariants_failed"] == {}
    assert data["inconclusive_nights"] == []
    assert len(night["rebooted"]) >= SOME_ROUNDS, (len(night["rebooted"]), seconds)
    never = data["never_rebooted"]
    assert "PodDisruptionBudget default/ledger allows no disruption" in never["node-b-040"]
    assert "blocking pod default/backup-job" in never["node-a-075"]
    assert "not tolerated by the rebootd DaemonSet" in never["node-c-098"]
    assert "not tolerated by the rebootd DaemonSet" in never["node-c-099"]
    assert not {"node-b-040", "node-a-075", "node-c-098", "node-c-099"} & set(night["rebooted"])
    suggestion = data["suggestion"]
    assert suggestion is not None
    fits = {(f["concurrency"], f["zone_concurrency"]): f for f in data["fits"]}
    assert fits[(suggestion["concurrency"], suggestion["zone_concurrency"])]["fits"]
    assert not any(f["fits"] for f in data["fits"] if f["concurrency"] < suggestion["concurrency"])
    # 296 rebootable nodes in one night of about 15 rounds: some 20 at once, not 50
    assert 10 <= suggestion["concurrency"] <= 30, (suggestion, data["cycle_seconds"])
    page = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert page.returncode == 0, page.stderr[-2000:]
    assert len(re.findall(r'<g class="row"', page.stdout)) == 300
    assert 'data-rows="300"' in page.stdout  # the inline script ran and counted them
    console = [line for line in page.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
