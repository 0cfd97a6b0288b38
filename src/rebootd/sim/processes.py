"""Simulated nodes whose daemon is the shipped `rebootd run`, one subprocess per node.

Rule: a process node's daemon is configured ONLY through `REBOOTD_*` environment variables (no
flags, no in-process hooks): its own kubeconfig with a per-node bearer token against the emulator
over HTTP, a temp-dir sentinel file, a free loopback metrics port, `REBOOTD_REBOOT_METHOD=command`
with `REBOOTD_REBOOT_NSENTER=false` and a reboot command that POSTs to the simulator's host agent.

The host agent (`HostAgent`) is a small simulation-only HTTP server on loopback, separate from
the emulated Kubernetes API: `POST /_sim/nodes/NAME/reboot` plays the host's `systemctl reboot`:
the sentinel file goes (as /var/run is cleared at boot), the emulator reboots the node, and the
daemon process is killed at once (SIGKILL to its process group: no clean shutdown). Once the node
is Ready again the simulator starts a new daemon process, as the kubelet restarts the DaemonSet
pod. It lives here rather than in the emulator so the Kubernetes API server stays a pure API.
"""

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

from rebootd.logs import get_logger
from rebootd.node import is_ready
from rebootd.sim.emulator import Emulator
from rebootd.sim.harness import node_identity, node_token, sim_pod_uid, write_host_boot_id

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
    """One node whose daemon is a `rebootd run` process, restarted after each reboot."""

    emulator: Emulator
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

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = self.token or node_token(self.name)
        self.kubeconfig = self.emulator.write_kubeconfig(self.workdir / "kubeconfig", token=self.token)
        self._log = get_logger(node=self.name, component="sim")

    @property
    def sentinel(self) -> Path:
        return self.workdir / "reboot-required"

    @property
    def boot_id_file(self) -> Path:
        return self.workdir / "boot_id"

    @property
    def log_path(self) -> Path:
        return self.workdir / "rebootd.log"

    def require_reboot(self) -> None:
        self.sentinel.touch()

    def environment(self) -> dict[str, str]:
        """The process environment: the parent's, minus any REBOOTD_*, plus this node's settings."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")}
        url = self.agent_url + REBOOT_PATH.format(name=self.name)
        return {
            **base,
            "REBOOTD_NODE_ID": self.name,
            "REBOOTD_POD_UID": sim_pod_uid(self.name),
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
        write_host_boot_id(self.boot_id_file, self.emulator.store.get("nodes", "", self.name))
        if self._log_file is None:
            self._log_file = self.log_path.open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            *rebootd_argv(),
            env=self.environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            start_new_session=True,  # its own process group: a "power off" kills all of it
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def kill(self) -> None:
        """Abrupt death (power off): SIGKILL to the daemon's process group, then reap it."""
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

    def reboot_requested(self) -> None:
        """The host agent got this node's reboot request: the machine goes down now."""
        self.reboots += 1
        self.sentinel.unlink(missing_ok=True)
        self.emulator.request_reboot(name=self.name, client=node_identity(self.name)[0])
        if self._life is None or self._life.done():
            self._life = asyncio.create_task(self._lifecycle(0.0), name=f"lifecycle-{self.name}")

    def crash(self, *, restart_after: float = 0.0) -> bool:
        """Kill the daemon now; a new one starts `restart_after` seconds later once the node is
        Ready. False while the node is rebooting or the daemon is not running."""
        if self._retired or not self.running or (self._life is not None and not self._life.done()):
            return False
        self._life = asyncio.create_task(self._lifecycle(restart_after), name=f"crash-{self.name}")
        return True

    async def _lifecycle(self, restart_after: float) -> None:
        await self.kill()
        await asyncio.sleep(restart_after)
        while not self._retired:
            with contextlib.suppress(TimeoutError):
                await self.emulator.wait_until(self._node_ready, within=1.0)
                break
        if not self._retired:
            await self.start()

    def _node_ready(self) -> bool:
        node = self.emulator.store.get("nodes", "", self.name)
        return node is not None and is_ready(node)


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
