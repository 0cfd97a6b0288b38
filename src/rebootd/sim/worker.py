"""Worker processes of `rebootd simulate`: the nodes' in-process daemons spread over processes.

Rule: one event loop running the emulator and fifty daemons is the bottleneck of a simulation
(every hand-off wakes every waiter on the same loop), not rebootd; so the simulator can run the
daemons in a few worker processes (`python -m rebootd.sim.worker`), each hosting its share as
`SimNode`s (the real `Daemon`, killed abruptly and restarted after boot), while the main process
keeps the emulator and judges everything from its history. A worker's daemons reach the emulator
over HTTP like any client; their machines are reached through `AgentHost`: a reboot is a POST to
the simulator's host agent, and the main process tells the worker when a machine is up again
(with its new boot id: the worker writes it into the node's boot id file before the restart).

Protocol, one JSON object a line. Main -> worker on stdin: first the set-up
`{"op": "setup", "agent_url", "time_scale", "log_file", "log_level", "nodes": [{"name",
"workdir", "kubeconfig", "env", "clock", "boot_id"}]}`, then `{"op": "start", "node"}`, `{"op":
"node", "node", "ready", "boots", "boot_id"}` (whether the machine is up, the number of boots that
completed, its boot id), `{"op": "crash", "node", "restart_after"}`, `{"op": "freeze", "node",
"seconds", "verb", "nth"}`, `{"op": "duplicate", "node"}`, `{"op": "stop", "node"}` and
`{"op": "exit"}`. Worker -> main on stdout: `{"event": "stopped", "node", "code"}` and
`{"event": "exited"}`. EOF on stdin is exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from rebootd.clock import Clock, OffsetClock, SystemClock
from rebootd.logs import configure, get_logger
from rebootd.reboot import RebootFailed
from rebootd.sim.harness import SimNode
from rebootd.sim.processes import REBOOT_PATH


def worker_environment() -> dict[str, str]:
    """A worker's environment: ours, without the system CA bundle. Its daemons speak plain HTTP on
    loopback only, and each daemon start builds a TLS context all the same (the client library
    does so unconditionally): loading the bundle costs ~50 ms of CPU, which a real node pays once
    on its own CPU but which here would stall the loop shared by a worker's daemons at every
    restart."""
    return {**os.environ, "SSL_CERT_FILE": os.devnull, "SSL_CERT_DIR": os.devnull}


def clock_spec(clock: Clock) -> dict[str, Any]:
    """How a worker rebuilds `clock`: the same calendar on the machine's shared monotonic clock."""
    if isinstance(clock, OffsetClock):
        return {
            "offset": clock.offset.total_seconds(),
            "start_at": clock.start_at.isoformat() if clock.start_at is not None else None,
            "speed": clock.speed,
            "origin_mono": clock._origin_mono,
        }
    return {}


def clock_from_spec(spec: Mapping[str, Any]) -> Clock:
    if not spec:
        return SystemClock()
    start = spec.get("start_at")
    return OffsetClock(
        offset=timedelta(seconds=float(spec.get("offset", 0.0))),
        start_at=datetime.fromisoformat(start) if start else None,
        speed=float(spec.get("speed", 1.0)),
        _origin_mono=float(spec["origin_mono"]),
    )


@dataclass
class AgentHost:
    """Machines reached through the simulator: reboot by POST, readiness told by the main process."""

    agent_url: str
    session: aiohttp.ClientSession
    ready: dict[str, bool] = field(default_factory=dict)
    boots: dict[str, int] = field(default_factory=dict)  # boots completed, as the main process saw
    requested: dict[str, int] = field(default_factory=dict)  # reboots this worker asked for
    boot_ids: dict[str, str] = field(default_factory=dict)  # each machine's current boot id
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def boot_id(self, node: str) -> str:
        return self.boot_ids.get(node, "")

    async def reboot(self, node: str) -> None:
        """The host's reboot command: a POST to the simulator's host agent; an error answer (the
        simulator made this host's reboots fail) is a failed reboot command."""
        url = self.agent_url + REBOOT_PATH.format(name=node)
        async with self.session.post(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
            if response.status >= 300:
                raise RebootFailed(f"simulated: the host agent answered {response.status} (the host refused)")
        self.requested[node] = self.requested.get(node, 0) + 1

    def update(self, node: str, *, ready: bool, boots: int, boot_id: str = "") -> None:
        self.ready[node] = ready
        self.boots[node] = boots
        if boot_id:
            self.boot_ids[node] = boot_id
        self.changed.set()

    def _up(self, node: str) -> bool:
        return self.ready.get(node, True) and self.boots.get(node, 0) >= self.requested.get(node, 0)

    async def wait_ready(self, node: str) -> None:
        while not self._up(node):
            self.changed.clear()
            await self.changed.wait()


class Worker:
    def __init__(self, *, out: TextIO) -> None:
        self._out = out
        self.nodes: dict[str, SimNode] = {}
        self.host: AgentHost | None = None
        self._log = get_logger(component="sim-worker")

    def emit(self, **event: Any) -> None:
        self._out.write(json.dumps(event) + "\n")
        self._out.flush()

    async def setup(self, spec: Mapping[str, Any], session: aiohttp.ClientSession) -> None:
        self.host = AgentHost(agent_url=spec["agent_url"], session=session)
        for item in spec["nodes"]:
            self.host.boot_ids[item["name"]] = str(item.get("boot_id", ""))
            self.nodes[item["name"]] = SimNode(
                emulator=None,
                name=item["name"],
                workdir=Path(item["workdir"]),
                env=dict(item["env"]),
                clock=clock_from_spec(item.get("clock") or {}),
                time_scale=float(spec["time_scale"]),
                host=self.host,
                kubeconfig=Path(item["kubeconfig"]),
            )

    async def handle(self, message: Mapping[str, Any]) -> bool:
        """Carry out one command; False when the worker should exit."""
        op = message.get("op")
        node = self.nodes.get(str(message.get("node", "")))
        if op == "exit":
            return False
        if node is None:
            self._log.error("rebootd.sim.worker_unknown_node", message=dict(message))
            return True
        if op == "start":
            await node.start()
        elif op == "node" and self.host is not None:
            self.host.update(
                node.name,
                ready=bool(message["ready"]),
                boots=int(message["boots"]),
                boot_id=str(message.get("boot_id", "")),
            )
        elif op == "freeze":
            node.freeze(
                seconds=float(message["seconds"]),
                verb=str(message.get("verb", "")),
                nth=int(message.get("nth", 1)),
            )
        elif op == "duplicate":
            await node.start_duplicate()
        elif op == "crash":
            node.crash(restart_after=float(message.get("restart_after", 0.0)))
        elif op == "stop":
            code = await node.stop()
            self.emit(event="stopped", node=node.name, code=code)
        return True

    async def stop_all(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve() -> int:
    reader = await _stdin_reader()
    first = await reader.readline()
    if not first:
        return 0
    spec = json.loads(first)
    log_path = Path(spec.get("log_file") or os.devnull)
    stream = await asyncio.to_thread(log_path.open, "a", encoding="utf-8")
    with stream:
        configure(fmt="json", level=str(spec.get("log_level", "error")), stream=stream)
        worker = Worker(out=sys.stdout)
        async with aiohttp.ClientSession() as session:
            await worker.setup(spec, session)
            pending: set[asyncio.Task[bool]] = set()
            try:
                while True:
                    line = await reader.readline()
                    if not line:
                        break
                    message = json.loads(line)
                    if message.get("op") == "stop":  # stops run side by side
                        task = asyncio.create_task(worker.handle(message))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                        continue
                    if not await worker.handle(message):
                        break
            finally:
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                await worker.stop_all()
        worker.emit(event="exited")
    return 0


def main() -> None:
    raise SystemExit(asyncio.run(serve()))


# --- the main process's side -----------------------------------------------------------------------

STOP_WITHIN = 15.0


@dataclass
class _Process:
    proc: asyncio.subprocess.Process
    reader: asyncio.Task[None] | None = None


class WorkerPool:
    """Worker processes and, for each node, the `WorkerNode` the simulation drives."""

    def __init__(self, *, count: int, workdir: Path) -> None:
        self.count = max(1, count)
        self.workdir = workdir
        self._procs: list[_Process] = []
        self._owner: dict[str, int] = {}
        self._stopped: dict[str, asyncio.Future[int | None]] = {}
        self._log = get_logger(component="sim-pool")

    async def start(
        self,
        *,
        agent_url: str,
        time_scale: float,
        nodes: list[dict[str, Any]],
        log_file: Path | None,
        log_level: str,
    ) -> dict[str, WorkerNode]:
        """Spawn the workers and hand each its share of `nodes` (round-robin)."""
        shares: list[list[dict[str, Any]]] = [[] for _ in range(self.count)]
        for index, item in enumerate(nodes):
            shares[index % self.count].append(item)
            self._owner[item["name"]] = index % self.count
        for index, share in enumerate(shares):
            stderr = (self.workdir / f"worker-{index}.stderr").open("ab")
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "rebootd.sim.worker",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    env=worker_environment(),
                )
            finally:
                stderr.close()
            entry = _Process(proc=proc)
            entry.reader = asyncio.create_task(self._read(entry), name=f"sim-worker-{index}")
            self._procs.append(entry)
            setup = {
                "op": "setup",
                "agent_url": agent_url,
                "time_scale": time_scale,
                "log_file": str(log_file) if log_file else None,
                "log_level": log_level,
                "nodes": share,
            }
            self._write(index, setup)
        return {
            item["name"]: WorkerNode(pool=self, name=item["name"], workdir=Path(item["workdir"]))
            for item in nodes
        }

    def _write(self, index: int, message: Mapping[str, Any]) -> None:
        stdin = self._procs[index].proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write((json.dumps(message) + "\n").encode())

    def send(self, node: str, message: Mapping[str, Any]) -> None:
        self._write(self._owner[node], {**message, "node": node})

    async def _read(self, entry: _Process) -> None:
        stdout = entry.proc.stdout
        assert stdout is not None
        while True:
            line = await stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "stopped":
                future = self._stopped.get(str(event.get("node")))
                if future is not None and not future.done():
                    future.set_result(event.get("code"))
        for future in self._stopped.values():  # the worker is gone: nobody will answer
            if not future.done():
                future.set_result(None)

    async def stop_node(self, node: str) -> int | None:
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._stopped[node] = future
        self.send(node, {"op": "stop"})
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=STOP_WITHIN)
        except TimeoutError:
            return None

    async def close(self) -> None:
        for index in range(len(self._procs)):
            self._write(index, {"op": "exit"})
        for entry in self._procs:
            stdin = entry.proc.stdin
            if stdin is not None:
                stdin.close()
            try:
                await asyncio.wait_for(entry.proc.wait(), timeout=STOP_WITHIN)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    entry.proc.kill()
                await entry.proc.wait()
            if entry.reader is not None:
                await asyncio.gather(entry.reader, return_exceptions=True)


@dataclass
class WorkerNode:
    """A node whose daemon runs in a worker process (the simulation's handle on it)."""

    pool: WorkerPool
    name: str
    workdir: Path

    @property
    def sentinel(self) -> Path:
        return self.workdir / "reboot-required"

    def require_reboot(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sentinel.touch()

    async def start(self) -> None:
        self.pool.send(self.name, {"op": "start"})

    async def stop(self) -> int | None:
        return await self.pool.stop_node(self.name)

    def crash(self, *, restart_after: float = 0.0) -> bool:
        self.pool.send(self.name, {"op": "crash", "restart_after": restart_after})
        return True

    def node_changed(self, *, ready: bool, boots: int, boot_id: str = "") -> None:
        self.pool.send(self.name, {"op": "node", "ready": ready, "boots": boots, "boot_id": boot_id})

    def freeze(self, *, seconds: float, verb: str = "", nth: int = 1) -> bool:
        self.pool.send(self.name, {"op": "freeze", "seconds": seconds, "verb": verb, "nth": nth})
        return True

    async def start_duplicate(self) -> str:
        self.pool.send(self.name, {"op": "duplicate"})
        return "(in a worker)"


if __name__ == "__main__":
    main()
