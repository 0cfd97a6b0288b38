"""`rebootd simulate --from-cluster / --from-snapshot / --html`: the what-if on a cluster, end to end.

- `--from-cluster` runs against the emulator with authorization on and a token whose RBAC grants
  only get/list/watch on what a rollout depends on; every request it made is recorded by the
  authorizer: only get/list/watch, nothing denied, no Secret or ConfigMap, and the snapshot holds
  no secret value.
- The replay runs once (module fixture) on tests/fixtures/snapshots/medium.yaml (60 nodes in 3
  zones, the shapes of large.yaml: a PDB that allows nothing, a blocking bare pod, two GPU nodes
  with a taint rebootd does not tolerate; a 01:00-02:30 window, two nights) at 150x: about 1.5
  minutes on 2 cores. The 300-node large.yaml is read by the unit tests; its replay at 60x (about
  4 minutes on 2 loaded cores: 16 nodes a night, concurrency 10 / zone 4 suggested) is the
  README's documented command, too long for the default run.
- The timeline page of that replay is opened in headless Chromium (Debian's `chromium`; a missing
  one fails under CI=true): the DOM holds one row per node, the inline script ran, the console
  logged no error, and a screenshot was taken.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rebootd.emulator.emulator import Emulator
from rebootd.emulator.rbac import Authorizer
from rebootd.sim.cli import seed_cluster
from tests.fixtures.tools import require_binary
from tests.integration.rbac_runs import RecordingAuthorizer

SNAPSHOTS = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"
READER = "whatif-reader"
READER_TOKEN = "token-whatif-reader"
READ_ONLY = {"get", "list", "watch"}
RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "rebootd-whatif"},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": ["policy"],
                "resources": ["poddisruptionbudgets"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
                "verbs": ["get", "list", "watch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "rebootd-whatif"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rebootd-whatif"},
        "subjects": [{"kind": "User", "name": READER}],
    },
]


def _rebootd_daemonset(emu: Emulator) -> None:
    """An installed rebootd whose env mixes literal settings, a secret reference and a password."""
    from rebootd.emulator.resources import BY_GROUP_RESOURCE

    env = [
        {"name": "REBOOTD_START_TIME", "value": "22:00"},
        {"name": "REBOOTD_END_TIME", "value": "04:00"},
        {"name": "REBOOTD_NOTIFY_URL", "valueFrom": {"secretKeyRef": {"name": "hooks", "key": "url"}}},
        {"name": "REBOOTD_PROMETHEUS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "prom", "key": "pw"}}},
        {"name": "OTHER_PASSWORD", "value": "hunter2"},
    ]
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "rebootd", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": "rebootd"}},
            "template": {
                "metadata": {"labels": {"app": "rebootd"}},
                "spec": {
                    "containers": [{"name": "rebootd", "image": "registry.example/rebootd:1", "env": env}],
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }
    emu.registry.create(BY_GROUP_RESOURCE[("apps", "daemonsets")], "kube-system", body, client="test")


async def test_from_cluster_only_gets_lists_and_watches_and_reads_no_secret(tmp_path: Path) -> None:
    recording = RecordingAuthorizer(Authorizer.from_documents(RBAC), user=READER)
    emu = Emulator(seed=1, authorizer=recording, tokens={READER_TOKEN: (READER, ())})
    seed_cluster(emu, nodes=6, zones=3)
    _rebootd_daemonset(emu)
    await emu.start()
    try:
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig", token=READER_TOKEN)
        out = tmp_path / "snapshot.yaml"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rebootd",
            "simulate",
            "--from-cluster",
            "--kubeconfig",
            str(kubeconfig),
            "--snapshot",
            str(out),
            "--snapshot-only",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        await emu.close()
    assert proc.returncode == 0, stderr.decode()
    requests = [*recording.allowed, *recording.denied]
    assert requests, "the reader made no request"
    verbs = {request.verb for request in requests}
    resources = {request.resource for request in requests}
    denied = sorted(map(str, recording.denied))
    assert verbs <= READ_ONLY, requests
    assert not denied, denied
    assert resources == {
        "nodes",
        "pods",
        "poddisruptionbudgets",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
    }
    assert not {verb for (client, verb) in emu.request_counts if client == READER} - READ_ONLY
    text = out.read_text(encoding="utf-8")
    for leaked in ("hunter2", "OTHER_PASSWORD", "hooks", "registry.example"):
        assert leaked not in text, leaked
    assert "REBOOTD_NOTIFY_URL (valueFrom)" in text  # named as not read, its value never fetched
    assert "REBOOTD_START_TIME: '22:00'" in text
    assert len(re.findall(r"^- name: node-", text, flags=re.MULTILINE)) == 6
    assert "wrote" in stderr.decode()


@dataclass(frozen=True)
class Replay:
    code: int
    data: dict[str, Any]
    html: Path
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    html = tmp_path_factory.mktemp("whatif") / "timeline.html"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rebootd",
            "simulate",
            "--from-snapshot",
            str(SNAPSHOTS / "medium.yaml"),
            "--start",
            "2025-01-06T12:00:00+00:00",
            "--clock-speed",
            "150",
            "--json",
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.stdout, result.stderr
    return Replay(
        result.returncode, json.loads(result.stdout), html, result.stderr, time.monotonic() - started
    )


def test_the_replay_names_the_nodes_never_rebooted_and_why(replay: Replay) -> None:
    never = replay.data["never_rebooted"]
    assert "PodDisruptionBudget default/ledger allows no disruption" in never["node-b-008"]
    assert "blocking pod default/backup-job" in never["node-a-015"]
    assert "not tolerated by the rebootd DaemonSet" in never["node-c-018"]
    assert "not tolerated by the rebootd DaemonSet" in never["node-c-019"]
    assert replay.code == 3  # nodes are left: the pinned ones at least


def test_the_replay_runs_two_nights_inside_the_window_with_every_safety_invariant(replay: Replay) -> None:
    nights = replay.data["nights"]
    assert [n["opens"] for n in nights] == ["2025-01-07T01:00:00+00:00", "2025-01-08T01:00:00+00:00"]
    assert [n["invariants_failed"] for n in nights] == [{}, {}]
    rebooted = [node for n in nights for node in n["rebooted"]]
    assert rebooted, "no node rebooted in two nights"
    assert replay.data["inconclusive_nights"] == []
    assert len(rebooted) == len(set(rebooted))  # a node rebooted on night 1 is not rebooted again
    assert not {"node-b-008", "node-a-015", "node-c-018", "node-c-019"} & set(rebooted)


def test_the_replay_says_when_it_finishes_and_suggests_a_concurrency_that_fits(replay: Replay) -> None:
    data = replay.data
    left = data["rebootable"] - sum(len(n["rebooted"]) for n in data["nights"])
    assert (data["finished"] is None) == (left > 0)
    suggestion = data["suggestion"]
    assert suggestion is not None
    fits = {(f["concurrency"], f["zone_concurrency"]): f for f in data["fits"]}
    assert fits[(suggestion["concurrency"], suggestion["zone_concurrency"])]["fits"]
    smaller = [f for f in data["fits"] if f["concurrency"] < suggestion["concurrency"]]
    assert not any(f["fits"] for f in smaller)


def test_the_timeline_renders_in_headless_chromium(replay: Replay, tmp_path: Path) -> None:
    chromium = require_binary("chromium", install_hint="apt-get install chromium")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    url = replay.html.resolve().as_uri()
    dom = subprocess.run(
        [chromium, *flags, *profile, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = len(re.findall(r'<g class="row"', dom.stdout))
    assert rows == 60
    assert 'data-rows="60"' in dom.stdout  # the inline script ran and counted them
    assert "60 node rows" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "timeline.png"
    picture = subprocess.run(
        [chromium, *flags, *profile, "--window-size=1240,1600", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert picture.returncode == 0, picture.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a blank page is a few kB


def test_html_of_an_ordinary_simulation_has_one_row_per_node(tmp_path: Path) -> None:
    html = tmp_path / "run.html"
    result = subprocess.run(
        [sys.executable, "-m", "rebootd", "simulate", "--nodes", "3", "--html", str(html), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    page = html.read_text(encoding="utf-8")
    assert len(re.findall(r'<g class="row"', page)) == 3
    assert len(re.findall(r'class="bar rebooting"', page)) == 3
    assert "<script src" not in page
    assert "@import" not in page
    assert "http" not in page.split("<body")[1]  # nothing loaded from anywhere


def test_html_of_a_windowed_simulation_shades_the_window_and_no_reboot_starts_before_it(
    tmp_path: Path,
) -> None:
    html = tmp_path / "window.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rebootd",
            "simulate",
            "--scenario",
            "window",
            "--nodes",
            "3",
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    page = html.read_text(encoding="utf-8")
    windows = [float(x) for x in re.findall(r'<rect class="window" x="([0-9.]+)"', page)]
    assert len(windows) == 1
    drains = [float(x) for x in re.findall(r'<rect class="bar draining" x="([0-9.]+)"', page)]
    assert len(drains) == 3
    assert min(drains) >= windows[0] - 1.0  # one pixel of the set-up time the shading leaves out
