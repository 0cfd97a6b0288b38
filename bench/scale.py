"""Scale: the cost of joining the queue and of one hand-off at 100 to 5,000 nodes, every node
needing a reboot at once.

Rule: every node runs the lock code of a daemon (one `LeaseLock` each, sharing one HTTP client
and process): a waiting node makes exactly the requests of `Cycle._step` and `_wait_for_slot`
with no blockers configured (read the Lease, read its Node, one Node write that joins the queue,
follow the Lease by watch, `try_acquire` on every change: a write only when it joins the head or
takes a slot). The node that takes a slot makes the lock requests of a reboot without the drain
and the machine (confirm, refill the queue's head from one labelled list of Nodes, `rebooting`
and `recovering` records, the release annotations on its Node, the release); the next node in
line takes the freed slot. Measured per size: the Lease's bytes, the bytes the API server sends
per hand-off (bodies and watch events, `ApiServer.bytes_sent`), requests and writes per joining
node, hand-off gaps (release written -> next slot written), and the CPU seconds of the one
process per hand-off: the emulator's and every client's together, an upper bound of the
emulator's own. Growth exponents: the least-squares slope of log(cost) on log(nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from rebootd.clock import SystemClock
from rebootd.emulator.emulator import Emulator, EmulatorTiming
from rebootd.kube import Kube
from rebootd.lock import LeaseLock, LockConfig, state_of
from rebootd.lockstate import STATE_ANNOTATION, Limits
from rebootd.marks import (
    QUEUE_ANNOTATION,
    REQUIRED_ANNOTATION,
    REQUIRED_LABEL,
    WAITING_ANNOTATION,
    encode_queue_record,
    queue_of,
    ticket_of,
)
from rebootd.node import set_annotations

NAMESPACE = "kube-system"
WRITE_VERBS = frozenset({"create", "update", "patch"})
SLOT_WAITING = "slot: waiting for a free slot in the reboot lock"
# How many daemons start waiting for a slot per second. Every node needs its reboot at once, but
# no cluster starts thousands of waits within a millisecond: the DaemonSet's pods start over
# minutes and unattended upgrades finish over their randomized delay (up to an hour). One
# process here is the API server and every client: thousands of first requests at once queue
# behind each other past the clients' 30 s request timeout, and their retries keep it saturated
# (5,000 nodes never joined so). 50 a second is 100 s for 5,000 nodes, far faster than either.
START_RATE = 50.0


def node_name(index: int) -> str:
    """Cloud-style names (about 42 characters), as the issue's arithmetic assumes."""
    return f"ip-10-{index // 65536 % 256}-{index // 256 % 256}-{index % 256}.eu-west-1.compute.internal"


@dataclass
class ScalePoint:
    nodes: int
    lease_bytes_max: int = 0
    join_requests_per_node: float = 0.0
    join_writes_per_node: float = 0.0
    join_seconds: float = 0.0
    handoff_bytes: list[int] = field(default_factory=list)
    handoff_requests: list[int] = field(default_factory=list)
    handoff_writes: list[int] = field(default_factory=list)
    handoff_cpu: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    head: int = 0
    join_by_verb: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "lease_bytes_max": self.lease_bytes_max,
            "join_requests_per_node": round(self.join_requests_per_node, 3),
            "join_writes_per_node": round(self.join_writes_per_node, 3),
            "join_seconds": round(self.join_seconds, 2),
            "handoff_bytes": self.handoff_bytes,
            "handoff_requests": self.handoff_requests,
            "handoff_writes": self.handoff_writes,
            "handoff_cpu_seconds": [round(c, 4) for c in self.handoff_cpu],
            "gaps_seconds": [round(g, 4) for g in self.gaps],
            "queue_head": self.head,
            "join_requests_per_node_by_verb": self.join_by_verb,
            "note": self.note,
        }

    @property
    def bytes_per_handoff(self) -> float:
        return statistics.median(self.handoff_bytes) if self.handoff_bytes else math.nan

    @property
    def cpu_per_handoff(self) -> float:
        return statistics.median(self.handoff_cpu) if self.handoff_cpu else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank); NaN for no values (a size cut short before its hand-offs)."""
    if not values:
        return math.nan
    data = sorted(values)
    return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]


def growth(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(cost) on log(n); None with fewer than two usable points."""
    usable = [(math.log(n), math.log(c)) for n, c in points if n > 0 and c > 0]
    if len({x for x, _ in usable}) < 2:
        return None
    xs, ys = zip(*usable, strict=True)
    return float(statistics.linear_regression(xs, ys).slope)


def _counts(emulator: Emulator) -> tuple[int, int]:
    counts = emulator.request_counts
    return sum(counts.values()), sum(n for (_, verb), n in counts.items() if verb in WRITE_VERBS)


def _lease_bytes(emulator: Emulator) -> int:
    lease = emulator.get_object(kind="Lease", namespace=NAMESPACE, name="rebootd")
    return 0 if lease is None else len(json.dumps(lease, separators=(",", ":")))


async def measure(
    *,
    nodes: int,
    handoffs: int,
    concurrency: int = 1,
    within: float | None = None,
    starts_per_second: float = START_RATE,
) -> ScalePoint:
    """One size: every node needs its reboot at once and its daemon starts its wait for a slot
    `starts_per_second` at a time (`START_RATE`), then `handoffs` hand-offs; bounded by `within`
    seconds (by default 2 minutes plus 0.12 s a node, plus the starts), after which the figures
    measured so far are kept and the point says it was cut short."""
    start_spread = nodes / starts_per_second
    within = within if within is not None else 120.0 + 0.12 * nodes + start_spread
    # Bookmarks about once a minute, as kube-apiserver sends them: a watch that selects nothing
    # (a node outside the head) is otherwise silent, and a client gives a silent watch up. The
    # kubelets' heartbeat Leases renewed every 10 s for 40 s, as a real kubelet does: the
    # emulator's default (1 s, for fast scenarios) is 5,000 Lease writes a second at 5,000 nodes,
    # which crowds every other Lease event out of the watch history within 10 s, so that each
    # watch (re)started from a list's resourceVersion scanned up to 50,000 events (cProfile: most
    # of the one process's CPU at 5,000 nodes). Nothing here waits on a heartbeat.
    timing = EmulatorTiming(bookmark_interval=60.0, heartbeat_interval=10.0, heartbeat_lease_seconds=40)
    emulator = Emulator(seed=0, timing=timing)
    names = [node_name(i) for i in range(nodes)]
    for i, name in enumerate(names):
        emulator.add_node(name=name, zone=f"eu-west-1{'abc'[i % 3]}")
    await emulator.start(host="127.0.0.1", port=0)
    point = ScalePoint(nodes=nodes)
    with tempfile.TemporaryDirectory(prefix="rebootd-bench-scale-") as tmp:
        kube = await Kube.connect(kubeconfig=emulator.write_kubeconfig(Path(tmp) / "kubeconfig"))
        # One HTTP client for every node's lock: lift its connection limit (one watch per node).
        connector = kube.session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        connector._limit = 0
        stop = asyncio.Event()
        taken: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
        joined = 0
        all_joined = asyncio.Event()
        clock = SystemClock()

        def lock_of(index: int) -> LeaseLock:
            config = LockConfig(
                namespace=NAMESPACE,
                name="rebootd",
                node=names[index],
                zone=f"eu-west-1{'abc'[index % 3]}",
                limits=Limits(concurrency),
                ttl=3600.0,
                renew_interval=600.0,
                boot_allowance=3600.0,
                grace=2.0,
                pod=f"pod-{index}",
            )
            return LeaseLock(kube=kube, config=config, clock=clock)

        locks = [lock_of(i) for i in range(nodes)]

        async def waiting_node(index: int) -> None:
            nonlocal joined
            lock, name = locks[index], names[index]
            await asyncio.sleep(index / starts_per_second)  # the daemons' starts, spread (START_RATE)
            await lock.refresh()  # Cycle._step: the Lease
            await kube.get_node(name=name)  # _wait_for_slot's first read of our Node (last reboot)
            record = encode_queue_record(since=datetime.now(UTC), zone=lock.config.zone)
            await set_annotations(  # joining the queue: one Node write
                kube,
                node=name,
                annotations={
                    REQUIRED_ANNOTATION: "true",
                    QUEUE_ANNOTATION: record,
                    WAITING_ANNOTATION: SLOT_WAITING,
                },
                labels={REQUIRED_LABEL: "true"},
            )
            ticket = ticket_of(record)
            first = True
            async with lock.following() as changed:
                while not stop.is_set():
                    verdict = await lock.try_acquire(phase="draining", ticket=ticket, join=first)
                    if first:
                        first = False
                        joined += 1
                        if joined == nodes:
                            all_joined.set()
                    if verdict.allowed:
                        taken.put_nowait((index, time.monotonic()))
                        await holder(index)
                        return
                    await changed(5.0)

        async def holder(index: int) -> None:
            """The lock requests of a reboot (no drain, no machine), then the release."""
            lock, name = locks[index], names[index]
            await all_joined.wait()
            await lock.confirm()
            listed = await kube.list_nodes(label_selector=f"{REQUIRED_LABEL}=true", metadata_only=True)
            await lock.refill_head(queue_of(listed))
            point.head = max(point.head, len(lock.state.waiters))
            await lock.set_phase(phase="rebooting", gated=True, attempts=1)
            await lock.set_phase(phase="recovering")
            point.lease_bytes_max = max(point.lease_bytes_max, _lease_bytes(emulator))
            await set_annotations(
                kube,
                node=name,
                annotations={REQUIRED_ANNOTATION: None, QUEUE_ANNOTATION: None, WAITING_ANNOTATION: None},
                labels={REQUIRED_LABEL: None},
            )
            await lock.release()
            released.append(time.monotonic())

        released: list[float] = []
        # The daemons run before the need appears: the Lease exists (the first daemon created it).
        await locks[0].refresh()
        join_base = Counter(emulator.request_counts)
        started = time.monotonic()
        before_join = _counts(emulator)

        async def run_point() -> None:
            await all_joined.wait()
            point.join_seconds = time.monotonic() - started
            after_join = _counts(emulator)
            point.join_requests_per_node = (after_join[0] - before_join[0]) / nodes
            point.join_writes_per_node = (after_join[1] - before_join[1]) / nodes
            by_verb: Counter[str] = Counter()
            for (_, verb), n in (Counter(emulator.request_counts) - join_base).items():
                by_verb[verb] += n
            point.join_by_verb = {verb: round(n / nodes, 3) for verb, n in sorted(by_verb.items())}
            await taken.get()  # the first holder (it waited for every join)
            for _ in range(handoffs):
                requests0, writes0 = _counts(emulator)
                bytes0, cpu0 = emulator.api.bytes_sent, time.process_time()
                _, at = await taken.get()
                point.gaps.append(at - released[-1])
                requests1, writes1 = _counts(emulator)
                point.handoff_bytes.append(emulator.api.bytes_sent - bytes0)
                point.handoff_cpu.append(time.process_time() - cpu0)
                point.handoff_requests.append(requests1 - requests0)
                point.handoff_writes.append(writes1 - writes0)
            point.lease_bytes_max = max(point.lease_bytes_max, _lease_bytes(emulator))
            lease = emulator.get_object(kind="Lease", namespace=NAMESPACE, name="rebootd")
            assert len(state_of(lease).holders) <= concurrency
            assert STATE_ANNOTATION in (lease or {}).get("metadata", {}).get("annotations", {})

        tasks = [asyncio.create_task(waiting_node(i), name=f"scale-{i}") for i in range(nodes)]
        try:
            async with asyncio.timeout(within):
                await run_point()
        except TimeoutError:
            point.note = f"cut short after {within:g} s: {len(point.gaps)} of {handoffs} hand-offs measured"
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await kube.close()
            await emulator.close()
    return point


def run_scale(*, sizes: Sequence[int], handoffs: int) -> list[ScalePoint]:
    points = []
    for n in sizes:
        t0 = time.monotonic()
        points.append(asyncio.run(measure(nodes=n, handoffs=handoffs)))
        print(f"  scale {n} nodes: {time.monotonic() - t0:.1f} s", flush=True)
    return points


def summary(points: Sequence[ScalePoint]) -> dict[str, Any]:
    def series(fn: Any) -> list[tuple[float, float]]:
        return [(p.nodes, float(fn(p))) for p in points]

    rows = {
        "lease_bytes": series(lambda p: p.lease_bytes_max),
        "bytes_per_handoff": series(lambda p: p.bytes_per_handoff),
        "requests_per_joining_node": series(lambda p: p.join_requests_per_node),
        "writes_per_joining_node": series(lambda p: p.join_writes_per_node),
        "writes_per_handoff": series(
            lambda p: statistics.median(p.handoff_writes) if p.handoff_writes else math.nan
        ),
        "handoff_gap_p50_seconds": series(lambda p: percentile(p.gaps, 0.5)),
        "handoff_gap_p99_seconds": series(lambda p: percentile(p.gaps, 0.99)),
        "cpu_seconds_per_handoff": series(lambda p: p.cpu_per_handoff),
    }
    return {
        "points": [p.to_json() for p in points],
        "by_size": {
            k: {str(int(n)): (None if math.isnan(v) else round(v, 4)) for n, v in s} for k, s in rows.items()
        },
        "growth_exponents": {k: (None if (g := growth(s)) is None else round(g, 3)) for k, s in rows.items()},
    }
