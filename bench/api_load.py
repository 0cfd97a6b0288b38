"""API load of daemons that have nothing to do or are waiting, and the emulator's own throughput.

Rule: counts come from the emulator's per-client request counters over a window that starts after
every daemon settled, so start-up requests (read the Node, read or create the Lease) are reported
apart. Time is scaled: every interval of the daemons (`period`, lock TTL and renewal, and the
internal intervals through `time_scale`) runs `SCALE` times faster than its default, so one real
second stands for `SCALE` seconds of a daemon's life; per-hour figures are extrapolated from that.
The watch re-connect interval of the Lease follower (300 s, server-side `timeoutSeconds`) is not
one of them: with at most one re-connect per follower in a window it is computed, not measured.

- idle: every node's daemon running, no reboot needed anywhere.
- waiting: one node holds the slot (rebooted, its restarted workload never becomes healthy, so it
  stays in `recovering` and keeps renewing) while every other node needs a reboot and waits.
- emulator throughput: a `rebootd emulator` subprocess (its own CPU), loaded from this process over
  loopback by a bounded number of concurrent clients for a bounded count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from rebootd.emulator.emulator import Emulator, EmulatorTiming
from rebootd.sim.harness import SimCluster, tokens_for
from rebootd.sim.invariants import is_rebootd
from rebootd.sim.processes import rebootd_argv

SCALE = 60.0  # daemon time per real second
LOCK_NAMESPACE = "kube-system"
FOLLOWER_RESYNC = 300.0  # rebootd.kube.Kube.follow's default resync_seconds (watch timeoutSeconds)


def scaled_env(scale: float = SCALE) -> dict[str, str]:
    """The defaults (period 60 s, lock TTL 300 s, renewal 30 s) run `scale` times faster."""
    return {
        "REBOOTD_PERIOD": f"{60 / scale:g}s",
        "REBOOTD_LOCK_TTL": f"{300 / scale:g}s",
        "REBOOTD_LOCK_RENEW_INTERVAL": f"{30 / scale:g}s",
        "REBOOTD_LOCK_NAMESPACE": LOCK_NAMESPACE,
        "REBOOTD_MIN_REBOOT_INTERVAL": "0s",
        "REBOOTD_RECOVERY_TIMEOUT": "1h",
        "REBOOTD_BOOT_TIMEOUT": f"{900 / scale:g}s",
    }


def rebootd_counts(counts: Mapping[tuple[str, str], int]) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in counts.items() if is_rebootd(key[0])})


@dataclass
class LoadWindow:
    """Requests per verb in a measured window, split by the clients' role."""

    seconds: float
    scale: float
    by_role: dict[str, Counter[str]] = field(default_factory=dict)  # role -> verb -> count
    nodes_in_role: dict[str, int] = field(default_factory=dict)
    startup_per_node: float = 0.0
    notes: list[str] = field(default_factory=list)

    def per_node_hour(self, role: str, *, exclude: frozenset[str] = frozenset()) -> float:
        counts = self.by_role.get(role, Counter())
        nodes = self.nodes_in_role.get(role, 0)
        if not nodes:
            return 0.0
        total = sum(n for verb, n in counts.items() if verb not in exclude)
        return total * 3600.0 / (self.seconds * self.scale) / nodes

    def to_json(self) -> dict[str, Any]:
        return {
            "window_seconds": round(self.seconds, 3),
            "scale": self.scale,
            "daemon_hours": round(self.seconds * self.scale / 3600, 4),
            "nodes": dict(self.nodes_in_role),
            "requests_by_role_and_verb": {r: dict(sorted(c.items())) for r, c in self.by_role.items()},
            "per_node_hour": {r: round(self.per_node_hour(r), 3) for r in self.by_role},
            "startup_requests_per_node": round(self.startup_per_node, 2),
            "notes": list(self.notes),
        }


def _window(
    before: Counter[tuple[str, str]],
    after: Counter[tuple[str, str]],
    *,
    roles: Mapping[str, str],
    seconds: float,
    scale: float,
) -> LoadWindow:
    """Requests between two counter snapshots, grouped by the role of each client (node name)."""
    window = LoadWindow(seconds=seconds, scale=scale)
    for role in set(roles.values()):
        window.by_role[role] = Counter()
        window.nodes_in_role[role] = sum(1 for r in roles.values() if r == role)
    for (client, verb), n in (after - before).items():
        node_role = roles.get(client.removeprefix("rebootd@"))
        if node_role is not None:
            window.by_role[node_role][verb] += n
    return window


def _emulator(zones: Mapping[str, str]) -> Emulator:
    emulator = Emulator(
        seed=0,
        tokens=tokens_for(zones),
        timing=EmulatorTiming(grace_scale=0.01, pod_ready_delay=0.1, boot_seconds=0.5, bookmark_interval=5.0),
    )
    for name, zone in zones.items():
        emulator.add_node(name=name, zone=zone)
    emulator.add_workload(kind="Deployment", name="web", replicas=2 * len(zones), pdb_max_unavailable=1)
    emulator.add_workload(kind="DaemonSet", name="agent", namespace="kube-system")
    return emulator


def _zones(nodes: int) -> dict[str, str]:
    return {f"node-{i:03d}": f"zone-{'abc'[i % 3]}" for i in range(nodes)}


async def _until(predicate: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {within:g}s")
        await asyncio.sleep(0.05)


async def idle_load(*, nodes: int, seconds: float, scale: float = SCALE) -> LoadWindow:
    """Every daemon idle: requests per node over `seconds` real seconds."""
    zones = _zones(nodes)
    emulator = _emulator(zones)
    await emulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="rebootd-bench-idle-") as tmp:
            cluster = SimCluster(
                emulator=emulator, workdir=Path(tmp), env=scaled_env(scale), zones=zones, time_scale=1 / scale
            )
            try:
                await cluster.start()
                await _until(
                    lambda: all(
                        n.daemon is not None and n.daemon.cycle is not None and n.phase == "idle"
                        for n in cluster.nodes.values()
                    ),
                    within=60,
                    what="every daemon idle",
                )
                await asyncio.sleep(2 * 60 / scale)  # two sentinel periods: start-up is over
                before = rebootd_counts(emulator.request_counts)
                started = time.monotonic()
                await asyncio.sleep(seconds)
                after = rebootd_counts(emulator.request_counts)
                window = _window(
                    before,
                    after,
                    roles=dict.fromkeys(zones, "idle"),
                    seconds=time.monotonic() - started,
                    scale=scale,
                )
                window.startup_per_node = sum(before.values()) / nodes
                return window
            finally:
                await cluster.stop()
    finally:
        await emulator.close()


async def waiting_load(*, nodes: int, seconds: float, scale: float = SCALE) -> LoadWindow:
    """One holder stuck in `recovering`, every other node waiting for the slot."""
    zones = _zones(nodes)
    holder = next(iter(zones))
    emulator = _emulator(zones)
    agent = next(
        p["metadata"]["name"]
        for p in emulator.store.pods_on_node(holder)
        if p["metadata"]["namespace"] == "kube-system"
    )
    emulator.break_after_reboot(namespace="kube-system", pod_prefix=agent)
    await emulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="rebootd-bench-waiting-") as tmp:
            cluster = SimCluster(
                emulator=emulator, workdir=Path(tmp), env=scaled_env(scale), zones=zones, time_scale=1 / scale
            )
            try:
                cluster.nodes[holder].require_reboot()
                await cluster.start()

                def holder_recovering() -> bool:
                    state = cluster.lease_state()
                    h = state.holders.get(holder)
                    return h is not None and h.phase == "recovering"

                await _until(holder_recovering, within=60, what=f"{holder} recovering")
                others = [n for n in zones if n != holder]
                for name in others:
                    cluster.nodes[name].require_reboot()

                def all_queued() -> bool:
                    # Lock format 3: each waiting node queues on its own Node (the Lease names the head).
                    def waiting(name: str) -> bool:
                        node = emulator.get_object(kind="Node", name=name) or {}
                        annotations = node.get("metadata", {}).get("annotations") or {}
                        return str(annotations.get("rebootd.io/waiting-for", "")).startswith("slot:")

                    return all(map(waiting, others))

                await _until(all_queued, within=60, what="every other node queued")
                await asyncio.sleep(2 * 60 / scale)
                before = rebootd_counts(emulator.request_counts)
                started = time.monotonic()
                await asyncio.sleep(seconds)
                after = rebootd_counts(emulator.request_counts)
                still = holder_recovering()
                roles = {name: ("holder" if name == holder else "waiting") for name in zones}
                window = _window(before, after, roles=roles, seconds=time.monotonic() - started, scale=scale)
                if not still:
                    window.notes.append(f"{holder} left recovering during the window")
                return window
            finally:
                await cluster.stop()
    finally:
        await emulator.close()


# --- the emulator's throughput ------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    operation: str
    requests: int
    errors: int
    seconds: float
    concurrency: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "concurrency": self.concurrency,
            "requests_per_second": round(self.per_second, 1),
        }


async def _load(
    session: aiohttp.ClientSession,
    *,
    operation: str,
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    count: int,
    seconds: float,
    concurrency: int,
) -> Throughput:
    """`count` requests from `concurrency` workers, stopping early after `seconds`."""
    issued = 0
    errors = 0
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal issued, errors, done
        while issued < count and time.monotonic() < deadline:
            issued += 1
            try:
                async with session.request(method, url, json=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Throughput(
        operation=operation,
        requests=done,
        errors=errors,
        seconds=time.monotonic() - started,
        concurrency=concurrency,
    )


async def _url_line(stream: asyncio.StreamReader, *, max_lines: int = 50) -> str:
    """The first line that is a URL (the command prints its log line, then its URL)."""
    for _ in range(max_lines):
        line = (await stream.readline()).decode().strip()
        if line.startswith("http://"):
            return line
        if not line and stream.at_eof():
            break
    raise RuntimeError("rebootd emulator did not print its URL")


async def emulator_throughput(
    *, workdir: Path, count: int = 3000, seconds: float = 8.0, concurrency: int = 16
) -> list[Throughput]:
    """Throughput of a `rebootd emulator` subprocess for a read, a filtered list and a write."""
    kubeconfig = workdir / "emulator.kubeconfig"
    argv = [rebootd_argv()[0], "emulator", "--port", "0", "--nodes", "50", "--kubeconfig", str(kubeconfig)]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(_url_line(proc.stdout), timeout=30)
        config = yaml.safe_load(kubeconfig.read_text())
        server = config["clusters"][0]["cluster"]["server"]
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            get = await _load(
                session,
                operation="GET one Node",
                method="GET",
                url=f"{server}/api/v1/nodes/node-000",
                count=count,
                seconds=seconds,
                concurrency=concurrency,
            )
            lst = await _load(
                session,
                operation="LIST Pods on one node (fieldSelector)",
                method="GET",
                url=f"{server}/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-001",
                count=count,
                seconds=seconds,
                concurrency=concurrency,
            )
            patch = await _load(
                session,
                operation="PATCH a Node annotation (merge patch)",
                method="PATCH",
                url=f"{server}/api/v1/nodes/node-002",
                body={"metadata": {"annotations": {"bench/x": "1"}}},
                headers={"Content-Type": "application/merge-patch+json"},
                count=count,
                seconds=seconds,
                concurrency=concurrency,
            )
        return [get, lst, patch]
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(Exception):
            if proc.stdout is not None:
                await proc.stdout.read()
