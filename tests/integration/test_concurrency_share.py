"""REBOOTD_CONCURRENCY as a share of the nodes ("10%"): resolved against the node count as a
Deployment's maxUnavailable is (rounded down), at least 1; 0% and over 100% are refused with exit
2 naming the variable; `rebootd status` shows the resolved number; a daemon's lock takes it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from rebootd.clock import SystemClock
from rebootd.emulator.emulator import Emulator
from rebootd.kube import Kube
from rebootd.lock import LeaseLock, LockConfig
from rebootd.lockstate import Limits, resolve_share
from tests.integration.test_daemon import rebootd_argv


async def run_rebootd(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")}
    proc = await asyncio.create_subprocess_exec(
        *rebootd_argv(),
        *args,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("share", "nodes", "expected"),
    [("10%", 5000, 500), ("10%", 15, 1), ("10%", 9, 1), ("33%", 10, 3), ("100%", 7, 7), (4, 100, 4)],
)
def test_a_share_rounds_down_like_max_unavailable_but_never_below_one(
    share: int | str, nodes: int, expected: int
) -> None:
    assert resolve_share(share, nodes=nodes, floor=1) == expected


@pytest.mark.parametrize("value", ["0%", "101%", "-5%", "ten%", "0"])
async def test_a_share_of_zero_or_over_100_percent_is_refused_naming_the_variable(value: str) -> None:
    code, _, err = await run_rebootd("config", env={"REBOOTD_CONCURRENCY": value})
    assert code == 2
    assert f"REBOOTD_CONCURRENCY (--concurrency): got '{value}'" in err
    assert "more than 0%, at most 100%" in err
    code, _, err = await run_rebootd("config", env={"REBOOTD_ZONE_CONCURRENCY": "150%"})
    assert code == 2
    assert "REBOOTD_ZONE_CONCURRENCY (--zone-concurrency): got '150%'" in err


async def test_status_shows_the_share_resolved_against_the_node_count(
    emulator: Emulator, tmp_path: Path
) -> None:
    for index in range(25):
        emulator.add_node(name=f"node-{index:02d}", zone=f"zone-{index % 2}")
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    env = {
        "KUBECONFIG": str(kubeconfig),
        "REBOOTD_CONCURRENCY": "10%",
        "REBOOTD_ZONE_CONCURRENCY": "10%",
        "REBOOTD_LOCK_NAMESPACE": "kube-system",
    }
    code, out, err = await run_rebootd("status", "--output", "json", env=env)
    assert code == 0, err
    # (With no Lease yet, status creates it and logs that on stdout first: skip to the report.)
    limits = json.loads(out[out.index("\n{") + 1 :] if not out.startswith("{") else out)["limits"]
    assert (limits["nodes"], limits["concurrency"], limits["concurrency_resolved"]) == (25, "10%", 2)
    assert limits["zone_concurrency_resolved"] == {"zone-0": 1, "zone-1": 1}
    code, text, err = await run_rebootd("status", env=env)
    assert code == 0, err
    assert "concurrency 10% of 25 nodes: 2 at once; per zone 10%: zone-0 1, zone-1 1" in text


async def test_a_daemons_lock_resolves_its_share_from_the_server_count(
    emulator: Emulator, tmp_path: Path
) -> None:
    for index in range(1200):  # more than one page: the server counts the rest (remainingItemCount)
        emulator.add_node(name=f"node-{index:04d}", zone=f"zone-{index % 3}")
    kube = await Kube.connect(kubeconfig=emulator.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        lock = LeaseLock(
            kube=kube,
            config=LockConfig(
                namespace="kube-system",
                name="rebootd",
                node="node-0000",
                zone="zone-0",
                limits=Limits(1, 1),
                ttl=30.0,
                renew_interval=5.0,
                boot_allowance=60.0,
                shares=("10%", "1%"),
            ),
            clock=SystemClock(),
        )
        before = dict(emulator.request_counts)
        limits = await lock.resolve_limits()
        assert (limits.concurrency, limits.zone_concurrency) == (120, 4)
        assert lock.config.limits == limits
        lists = sum(v for (client, verb), v in emulator.request_counts.items() if verb == "list") - sum(
            v for (client, verb), v in before.items() if verb == "list"
        )
        assert lists <= 3  # one list of one Node, the zone's Nodes (one page of 500)
    finally:
        await kube.close()
