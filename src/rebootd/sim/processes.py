"""Simulated nodes whose daemon is the shipped `rebootd run`, one subprocess per node.

Rule: a process node's daemon is configured ONLY through `REBOOTD_*` environment variables (no
flags, no in-process hooks): its own kubeconfig with a per-node bearer token against the emulator
over HTTP, a temp-dir sentinel file, a free loopback metrics port, `REBOOTD_REBOOT_METHOD=command`
with `REBOOTD_REBOOT_NSENTER=false` and a reboot command that POSTs to the simulator's host agent.

The host agent (`HostAgent`) is a small simulation-only HTTP server on loopback, separate from
the emulated Kubernetes API: `POST /_sim/nodes/NAME/reboot` plays the host's `systemctl reboot`:
the sentinel file goes (as /var/run is cleared at boot), the emulator reboots the node, and the
daemon process is killed at once (SIGKILL to its process group: no clean shutdown). Once the node
is up again the simulator starts a new daemon process, as the kubelet restarts the DaemonSet
pod. It lives here rather than in the emulator so the Kubernetes API server stays a pure API.

Each process gets `REBOOTD_POD_UID` (one Pod uid for the node's life, as a restarted container keeps
its Pod) and `REBOOTD_BOOT_ID_FILE` (the machine's boot id file, rewritten with the new boot's id
before the daemon restarts). A frozen daemon is SIGSTOPped (its whole process group) and
SIGCONTinued at the thaw; a duplicate daemon is a second process for the same node with its own pod
uid, killed with the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiohttp import web

from rebootd.emulator.emulator import Emulator
from rebootd.logs import get_logger
from rebootd.sim.harness import NodeHost, node_identity, node_token, sim_pod_uid

REBOOT_PATH = "/_sim/nodes/{name}/reboot"
STOP_TIMEOUT = 10.0
# The reboot command: a POST with the standard library (no curl needed), failing on any error.
_POST = (
    "import sys, urllib.request as r; "
    "r.urlopen(r.Request(sys.argv[1], data=b'', method='POST'), timeout=10).read()"
)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it; tiny race until the daemon binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rebootd_argv() -> list[str]:
    """The installed `rebootd` console script next to this interpreter, else `python -m rebootd`."""
    script = Path(sys.executable).with_name("rebootd")
    if script.exists():
        return [str(script), "run"]
    return [sys.executable, "-m", "rebootd", "run"]


@dataclass
class ProcessNode:
    """One node whose daemon is a `rebootd run` process, restarted after each reboot. Its machine
    is the in-process `emulator`'s, or (emulator None) `host`'s, any `NodeHost` such as the
    API-only machines of `rebootd.sim.kubelet`, with `kubeconfig` given (a real control plane)."""

    emulator: Emulator | None
    name: str
    workdir: Path
    env: Mapping[str, str]
    agent_url: str
    token: str = ""
    starts: int = 0
    reboots: int = 0
    exit_codes: list[int] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _log_file: IO[bytes] | None = None
    _life: asyncio.Task[None] | None = None
    _retired: bool = False
    pod_uid: str = ""
    frozen: int = 0
    _extras: list[asyncio.subprocess.Process] = field(default_factory=list)
    _thaw: asyncio.Task[None] | None = None
    host: NodeHost | None = None
    kubeconfig: Path | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = self.token or node_token(self.name)
        if self.emulator is not None:
            self.kubeconfig = self.emulator.write_kubeconfig(self.workdir / "kubeconfig", token=self.token)
        elif self.host is None or self.kubeconfig is None:
            raise ValueError("a ProcessNode without an emulator needs a host and a kubeconfig")
        self._log = get_logger(node=self.name, component="sim")
        self.write_boot_id()

    @property
    def boot_id_file(self) -> Path:
        return self.workdir / "boot_id"

    def write_boot_id(self) -> None:
        temp = self.boot_id_file.with_suffix(".tmp")
        boot = (
            self.emulator.machine_boot_id(name=self.name)
            if self.emulator is not None
            else self._host().boot_id(self.name)
        )
        temp.write_text(boot + "\n")
        temp.replace(self.boot_id_file)

    @property
    def sentinel(self) -> Path:
        return self.workdir / "reboot-required"

    @property
    def log_path(self) -> Path:
        return self.workdir / "rebootd.log"

    def require_reboot(self) -> None:
        self.sentinel.touch()

    def environment(self, *, pod_uid: str = "") -> dict[str, str]:
        """The process environment: the parent's, minus any REBOOTD_*, plus this node's settings."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")}
        url = self.agent_url + REBOOT_PATH.format(name=self.name)
        return {
            **base,
            "REBOOTD_NODE_ID": self.name,
            "REBOOTD_POD_UID": pod_uid or self.pod_uid,
            "REBOOTD_BOOT_ID_FILE": str(self.boot_id_file),
            "REBOOTD_KUBECONFIG": str(self.kubeconfig),
            "REBOOTD_REBOOT_SENTINEL": str(self.sentinel),
            "REBOOTD_METRICS_HOST": "127.0.0.1",
            "REBOOTD_METRICS_PORT": str(free_port()),
            "REBOOTD_REBOOT_METHOD": "command",
            "REBOOTD_REBOOT_NSENTER": "false",
            "REBOOTD_REBOOT_COMMAND": shlex.join([sys.executable, "-c", _POST, url]),
            "REBOOTD_LOG_FORMAT": "json",
            **self.env,
        }

    async def start(self) -> None:
        """Start a daemon process (the kubelet starting the pod)."""
        self.starts += 1
        self.pod_uid = self.pod_uid or sim_pod_uid(self.name)  # one Pod for the node's life
        self._proc = await self._spawn(pod_uid=self.pod_uid)

    async def _spawn(self, *, pod_uid: str) -> asyncio.subprocess.Process:
        if self._log_file is None:
            self._log_file = self.log_path.open("ab")
        return await asyncio.create_subprocess_exec(
            *rebootd_argv(),
            env=self.environment(pod_uid=pod_uid),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            start_new_session=True,  # its own process group: a "power off" kills all of it
        )

    async def start_duplicate(self) -> str:
        """A second `rebootd run` for this node (a DaemonSet surge) with its own pod uid."""
        uid = sim_pod_uid(self.name, instance=len(self._extras) + 1)
        self._extras.append(await self._spawn(pod_uid=uid))
        return uid

    def freeze(self, *, seconds: float) -> bool:
        """SIGSTOP the daemon's process group now, SIGCONT after `seconds`. False if not running."""
        proc = self._proc
        if proc is None or proc.returncode is not None or not seconds > 0:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGSTOP)
        self.frozen += 1
        self._thaw = asyncio.create_task(self._thaw_after(proc, seconds), name=f"thaw-{self.name}")
        return True

    async def _thaw_after(self, proc: asyncio.subprocess.Process, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def kill(self, *, machine: bool = True) -> None:
        """Abrupt death (with `machine`, power off: a duplicate too): SIGKILL to the daemon's
        process group, then reap it."""
        if machine:
            await self.kill_extras()
        if self._thaw is not None:
            self._thaw.cancel()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        code = await proc.wait()
        self.exit_codes.append(code)

    async def stop(self) -> int | None:
        """Graceful stop (SIGTERM, as the kubelet does), SIGKILL after STOP_TIMEOUT."""
        self._retired = True
        if self._life is not None and not self._life.done():
            self._life.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._life
        if self._thaw is not None:
            self._thaw.cancel()  # its finally sends SIGCONT: a stopped process cannot stop cleanly
            await asyncio.gather(self._thaw, return_exceptions=True)
        await self.kill_extras()
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    code = await asyncio.wait_for(proc.wait(), timeout=STOP_TIMEOUT)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    code = await proc.wait()
            else:
                code = proc.returncode
            self.exit_codes.append(code)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    async def kill_extras(self) -> None:
        extras, self._extras = self._extras, []
        for extra in extras:
            if extra.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(extra.pid, signal.SIGKILL)
            await extra.wait()

    def reboot_requested(self) -> None:
        """The host agent got this node's reboot request: the machine goes down now."""
        self.reboots += 1
        self.sentinel.unlink(missing_ok=True)
        if self.emulator is not None:
            self.emulator.request_reboot(name=self.name, client=node_identity(self.name)[0])
        if self._life is None or self._life.done():
            self._life = asyncio.create_task(self._reboot_lifecycle(), name=f"lifecycle-{self.name}")

    async def _reboot_lifecycle(self) -> None:
        if self.emulator is None:
            await self._host().reboot(self.name)  # the machine goes down now
        await self._lifecycle(0.0)

    def crash(self, *, restart_after: float = 0.0) -> bool:
        """Kill the daemon now; a new one starts `restart_after` seconds later once the node is
        Ready. False while the node is rebooting or the daemon is not running."""
        if self._retired or not self.running or (self._life is not None and not self._life.done()):
            return False
        self._life = asyncio.create_task(
            self._lifecycle(restart_after, machine=False), name=f"crash-{self.name}"
        )
        return True

    async def _lifecycle(self, restart_after: float, *, machine: bool = True) -> None:
        await self.kill(machine=machine)
        await asyncio.sleep(restart_after)
        while not self._retired:
            if self.emulator is None:
                await self._host().wait_ready(self.name)
                break
            with contextlib.suppress(TimeoutError):
                await self.emulator.wait_until(self._machine_up, within=1.0)
                break
        self.write_boot_id()  # the new boot's id, before its daemon starts
        if not self._retired:
            await self.start()

    def _machine_up(self) -> bool:
        return self.emulator is not None and self.emulator.machine_up(name=self.name)

    def _host(self) -> NodeHost:
        assert self.host is not None  # checked in __post_init__
        return self.host


class HostAgent:
    """The simulated hosts' side: `POST /_sim/nodes/NAME/reboot` reboots NAME (see the module
    docstring). Serves on loopback only."""

    def __init__(self, *, on_reboot: Callable[[str], bool]) -> None:
        self._on_reboot = on_reboot
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _reboot(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self._on_reboot(name):
            return web.json_response({"error": f"no simulated node {name}"}, status=404)
        return web.json_response({"rebooting": name})

    async def start(self, *, host: str = "127.0.0.1") -> None:
        app = web.Application()
        app.router.add_post(REBOOT_PATH.replace("{name}", "{name:[^/]+}"), self._reboot)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or []
        port = sockets[0].getsockname()[1]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
