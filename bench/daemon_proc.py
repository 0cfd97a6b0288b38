"""Footprint and start-up of the shipped daemon: real `rebootd run` processes against an emulator
served from the bench process, memory and CPU read from /proc.

Rule: each daemon is configured ONLY through `REBOOTD_*` environment variables (no flags, no
in-process hooks) and is the console script of the interpreter running the bench, so under
`nox -s bench` it is the package as installed, without any dev-only library. Every wait is bounded
(`within`), every process is stopped (SIGTERM, then SIGKILL of its process group) before a
measurement returns, also on failure.

- start to ready: spawn -> first `/readyz` 200 (polled every 10 ms), median over runs; the first
  run of a session also compiles bytecode and is reported apart as the cold start.
- idle: after ready, `idle_seconds` of sentinel checks with nothing to do, then VmRSS/VmHWM.
- cycle: the node needs a reboot; the daemon takes the slot, cordons, drains `pods_on_node` pods,
  runs its reboot command (a POST to the bench's host agent, which reboots the node in the
  emulator and SIGKILLs the process group, as a power-off does); after boot a second process
  verifies, uncordons, waits for recovery and releases. VmHWM of both processes is the peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from bench import procfs
from rebootd.emulator.emulator import Emulator, EmulatorTiming
from rebootd.lock import state_of
from rebootd.node import is_ready
from rebootd.sim.cli import seed_cluster
from rebootd.sim.processes import HostAgent, free_port, rebootd_argv

NODE = "node-000"
LOCK_NAMESPACE = "kube-system"
POLL = 0.01  # readiness polling interval
SAMPLE = 0.02  # RSS sampling interval during a cycle
STOP_TIMEOUT = 10.0
_POST = (
    "import sys, urllib.request as r; "
    "r.urlopen(r.Request(sys.argv[1], data=b'', method='POST'), timeout=10).read()"
)


def make_emulator(*, nodes: int = 20, pods_on_node: int = 30) -> Emulator:
    """A seeded cluster (`rebootd emulator`'s layout) plus `pods_on_node` pods of a Deployment
    with a PDB on the measured node, so a drain evicts a realistic number of pods."""
    emulator = Emulator(
        seed=0,
        timing=EmulatorTiming(grace_scale=0.02, pod_ready_delay=0.2, boot_seconds=1.0, bookmark_interval=1.0),
    )
    seed_cluster(emulator, nodes=nodes, zones=3)
    emulator.add_workload(
        kind="Deployment", name="busy", replicas=pods_on_node, nodes=[NODE], pdb_max_unavailable="50%"
    )
    return emulator


def daemon_env(
    *,
    kubeconfig: Path,
    sentinel: Path,
    port: int,
    log_format: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The parent's environment without any REBOOTD_*, plus the daemon's settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")}
    return {
        **base,
        "REBOOTD_NODE_ID": NODE,
        "REBOOTD_KUBECONFIG": str(kubeconfig),
        "REBOOTD_REBOOT_SENTINEL": str(sentinel),
        "REBOOTD_METRICS_HOST": "127.0.0.1",
        "REBOOTD_METRICS_PORT": str(port),
        "REBOOTD_LOG_FORMAT": log_format,
        "REBOOTD_LOCK_NAMESPACE": LOCK_NAMESPACE,
        "REBOOTD_PERIOD": "1s",
        **dict(extra or {}),
    }


@dataclass
class DaemonProcess:
    """One `rebootd run` process, its own process group, output appended to `log`."""

    env: dict[str, str]
    log: Path
    proc: asyncio.subprocess.Process | None = None
    spawned: float = 0.0
    exit_code: int | None = None
    powered_off: bool = False  # killed by the bench as a power-off (not a crash)
    _log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.env["REBOOTD_METRICS_PORT"])

    async def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.spawned = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *rebootd_argv(),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            start_new_session=True,
        )

    def kill(self) -> None:
        """Power off: SIGKILL to the whole process group (the reboot command included)."""
        self.powered_off = True
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> int | None:
        """SIGTERM (as the kubelet), SIGKILL after STOP_TIMEOUT; returns the exit code."""
        proc = self.proc
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=STOP_TIMEOUT)
                except TimeoutError:
                    self.kill()
                    await proc.wait()
            self.exit_code = proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.exit_code


async def wait_ready(*, session: aiohttp.ClientSession, daemon: DaemonProcess, within: float) -> float | None:
    """Seconds from spawn to the first `/readyz` 200; None when the process died or `within`
    passed first."""
    url = f"http://127.0.0.1:{daemon.port}/readyz"
    deadline = daemon.spawned + within
    while time.monotonic() < deadline:
        if daemon.proc is None or daemon.proc.returncode is not None:
            return None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1.0)) as resp:
                if resp.status == 200:
                    return time.monotonic() - daemon.spawned
        await asyncio.sleep(POLL)
    return None


@dataclass(frozen=True)
class StartSample:
    """One start of the daemon: seconds and CPU to ready, memory at ready and after idling."""

    ready_seconds: float | None
    cpu_to_ready: float | None
    rss_ready: int | None
    rss_idle: int | None
    hwm_idle: int | None
    exit_code: int | None
    log_tail: str = ""  # the daemon's last output when it never became ready

    def to_json(self) -> dict[str, Any]:
        return {
            **({"log_tail": self.log_tail} if self.log_tail else {}),
            "ready_seconds": _r(self.ready_seconds),
            "cpu_to_ready_seconds": _r(self.cpu_to_ready),
            "rss_ready_mib": _r(procfs.mib(self.rss_ready)),
            "rss_idle_mib": _r(procfs.mib(self.rss_idle)),
            "hwm_idle_mib": _r(procfs.mib(self.hwm_idle)),
            "exit_code": self.exit_code,
        }


def tail(path: Path, *, lines: int = 8) -> str:
    """The last lines of a daemon's output (why it did not become ready)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _bytecode_env(env: dict[str, str], *, write: bool) -> dict[str, str]:
    """The image's setting (PYTHONDONTWRITEBYTECODE=1: it reads the bytecode pip compiled), or
    none, so a warm-up run writes the bytecode of every module it loads."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _prepare(workdir: Path, emulator: Emulator) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return emulator.write_kubeconfig(workdir / "kubeconfig", token=f"rebootd@{NODE}")


async def start_once(
    *,
    emulator: Emulator,
    workdir: Path,
    log_format: str,
    idle_seconds: float,
    within: float = 30.0,
    write_bytecode: bool = False,
) -> StartSample:
    """Start a daemon with nothing to do, time it to ready, let it idle, read its memory, stop."""
    kubeconfig = _prepare(workdir, emulator)
    env = daemon_env(
        kubeconfig=kubeconfig,
        sentinel=workdir / "reboot-required",
        port=free_port(),
        log_format=log_format,
    )
    env = _bytecode_env(env, write=write_bytecode)
    daemon = DaemonProcess(env=env, log=workdir / f"rebootd-{log_format}.log")
    async with aiohttp.ClientSession() as session:
        await daemon.start()
        try:
            ready = await wait_ready(session=session, daemon=daemon, within=within)
            cpu = procfs.cpu_seconds(daemon.pid)
            at_ready = procfs.memory(daemon.pid) or {}
            idle: dict[str, int] = {}
            if ready is not None:
                await asyncio.sleep(idle_seconds)
                idle = procfs.memory(daemon.pid) or {}
        finally:
            code = await daemon.stop()
    return StartSample(
        log_tail="" if ready is not None else tail(daemon.log),
        ready_seconds=ready,
        cpu_to_ready=cpu if ready is not None else None,
        rss_ready=at_ready.get("VmRSS"),
        rss_idle=idle.get("VmRSS"),
        hwm_idle=idle.get("VmHWM"),
        exit_code=code,
    )


@dataclass
class CycleResult:
    """A full reboot cycle of one node, driven by two daemon processes (before/after boot)."""

    completed: bool
    seconds: float
    hwm_before_reboot: int | None = None
    hwm_after_reboot: int | None = None
    rss_idle_after: int | None = None
    max_sampled_rss: int = 0
    pods_evicted: int = 0
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int | None:
        values = [v for v in (self.hwm_before_reboot, self.hwm_after_reboot) if v is not None]
        return max(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "seconds": _r(self.seconds),
            "hwm_before_reboot_mib": _r(procfs.mib(self.hwm_before_reboot)),
            "hwm_after_reboot_mib": _r(procfs.mib(self.hwm_after_reboot)),
            "peak_mib": _r(procfs.mib(self.peak)),
            "rss_idle_after_cycle_mib": _r(procfs.mib(self.rss_idle_after)),
            "max_sampled_rss_mib": _r(procfs.mib(self.max_sampled_rss)),
            "pods_evicted": self.pods_evicted,
            "exit_code": self.exit_code,
            "notes": self.notes,
        }


class CycleDriver:
    """Plays the host and the kubelet for one node's reboot cycle (see the module docstring)."""

    def __init__(
        self, *, workdir: Path, log_format: str, pods_on_node: int = 30, emulator: Emulator | None = None
    ) -> None:
        self.emulator = emulator if emulator is not None else make_emulator(pods_on_node=pods_on_node)
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.log_format = log_format
        self.daemons: list[DaemonProcess] = []
        self.result = CycleResult(completed=False, seconds=0.0)
        self.rebooted = asyncio.Event()
        self._restart: asyncio.Task[None] | None = None
        self.agent = HostAgent(on_reboot=self._on_reboot)

    def _env(self, agent_url: str) -> dict[str, str]:
        kubeconfig = self.emulator.write_kubeconfig(self.workdir / "kubeconfig", token=f"rebootd@{NODE}")
        url = f"{agent_url}/_sim/nodes/{NODE}/reboot"
        env = daemon_env(
            kubeconfig=kubeconfig,
            sentinel=self.sentinel,
            port=free_port(),
            log_format=self.log_format,
            extra={
                "REBOOTD_REBOOT_METHOD": "command",
                "REBOOTD_REBOOT_NSENTER": "false",
                "REBOOTD_REBOOT_COMMAND": shlex.join([sys.executable, "-c", _POST, url]),
                "REBOOTD_LOCK_RELEASE_DELAY": "0s",
                "REBOOTD_LOCK_TTL": "10s",
                "REBOOTD_LOCK_RENEW_INTERVAL": "2s",
                "REBOOTD_MIN_REBOOT_INTERVAL": "0s",
                "REBOOTD_RECOVERY_TIMEOUT": "30s",
                "REBOOTD_BOOT_TIMEOUT": "30s",
            },
        )
        return _bytecode_env(env, write=False)

    @property
    def sentinel(self) -> Path:
        return self.workdir / "reboot-required"

    def _on_reboot(self, name: str) -> bool:
        if name != NODE or not self.daemons:
            return False
        current = self.daemons[-1]
        self.result.hwm_before_reboot = (procfs.memory(current.pid) or {}).get("VmHWM")
        self.sentinel.unlink(missing_ok=True)  # /var/run is cleared at boot
        self.emulator.reboot_node(name=NODE)
        current.kill()
        self.rebooted.set()
        self._restart = asyncio.create_task(self._start_after_boot(), name="bench-restart")
        return True

    async def _start_after_boot(self) -> None:
        await self.emulator.wait_until(self._node_ready, within=30.0)
        await self._spawn()

    async def _spawn(self) -> None:
        daemon = DaemonProcess(env=self._env(self.agent.url), log=self.workdir / "rebootd.log")
        self.daemons.append(daemon)
        await daemon.start()

    def _node_ready(self) -> bool:
        node = self.emulator.store.get("nodes", "", NODE)
        return node is not None and is_ready(node)

    def _done(self) -> bool:
        lease = self.emulator.get_object(kind="Lease", namespace=LOCK_NAMESPACE, name="rebootd")
        node = self.emulator.store.get("nodes", "", NODE)
        return (
            self.rebooted.is_set()
            and lease is not None
            and not state_of(lease).holders
            and node is not None
            and not (node.get("spec") or {}).get("unschedulable")
        )

    async def _sample(self) -> None:
        """Sample the running daemon's RSS; end when one died that we did not power off."""
        while True:
            for daemon in self.daemons:
                if daemon.proc is not None and daemon.proc.returncode is None:
                    rss = (procfs.memory(daemon.pid) or {}).get("VmRSS", 0)
                    self.result.max_sampled_rss = max(self.result.max_sampled_rss, rss)
            last = self.daemons[-1].proc if self.daemons else None
            if last is not None and last.returncode is not None and not self.daemons[-1].powered_off:
                self.result.notes.append(f"the daemon exited by itself (code {last.returncode})")
                return
            await asyncio.sleep(SAMPLE)

    async def run(self, *, within: float, idle_seconds: float) -> CycleResult:
        """The whole cycle on the driver's own emulator (started and closed here)."""
        await self.emulator.start()
        try:
            return await self._run(within=within, idle_seconds=idle_seconds)
        finally:
            await self.emulator.close()

    async def _run(self, *, within: float, idle_seconds: float) -> CycleResult:
        await self.agent.start()
        sampler = asyncio.create_task(self._sample(), name="bench-rss-sampler")
        started = time.monotonic()
        try:
            self.sentinel.touch()
            await self._spawn()
            done = asyncio.create_task(self.emulator.wait_until(self._done, within=within))
            await asyncio.wait({done, sampler}, return_when=asyncio.FIRST_COMPLETED)
            if done.done() and done.exception() is None:
                self.result.completed = True
            else:
                done.cancel()
                await asyncio.gather(done, return_exceptions=True)
                self.result.notes.append(f"the cycle did not complete within {within:g}s")
                self.result.notes.append(tail(self.workdir / "rebootd.log"))
            self.result.seconds = time.monotonic() - started
            if self.result.completed:
                await asyncio.sleep(idle_seconds)
                last = self.daemons[-1]
                memory = procfs.memory(last.pid) or {}
                self.result.hwm_after_reboot = memory.get("VmHWM")
                self.result.rss_idle_after = memory.get("VmRSS")
            self.result.pods_evicted = sum(
                1 for r in self.emulator.history if r.event == "eviction" and r.client.startswith("rebootd")
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if self._restart is not None:
                self._restart.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(self._restart, return_exceptions=True)
            for daemon in self.daemons:
                code = await daemon.stop()
                self.result.exit_code = code
            await self.agent.close()
        return self.result
