"""Nodes of a simulated cluster, each with its own real rebootd daemon (the DaemonSet's pods).

Rule: a simulated node runs the real `Daemon` with a temp-dir sentinel file and its own API
identity (a bearer token, so faults and partitions can single it out). Its reboot method asks the
emulator to reboot the node; like a real reboot it ends the daemon abruptly (no clean shutdown),
clears the sentinel (as /var/run is cleared at boot) and starts a new daemon instance once the
node is back Ready, like the kubelet restarting the DaemonSet pod. Used by the integration tests
and by `rebootd simulate`.

Each machine has its own boot id file (what the daemon reads as the host's
/proc/sys/kernel/random/boot_id), written as the machine starts the daemon: the boot id the
simulated kubelet reported for the boot it is in. Each node's daemon Pod has one uid for its life.

Where the machine is (`NodeHost`) is pluggable: `EmulatorHost` reboots through an emulator in this
process; `rebootd simulate` worker processes use one that asks the simulator over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rebootd.clock import Clock, SystemClock
from rebootd.daemon import Daemon
from rebootd.kube import Kube, KubeError, RetryPolicy
from rebootd.lock import state_of
from rebootd.lockstate import LockState
from rebootd.logs import get_logger
from rebootd.metrics import Metrics
from rebootd.node import boot_id, is_ready
from rebootd.reboot import RebootFailed
from rebootd.settings import Settings, load_settings
from rebootd.sim.emulator import Emulator


def sim_pod_uid(name: str, *, instance: int = 0) -> str:
    """The uid of a simulated node's daemon Pod: the same across restarts and reboots (a kubelet
    restarts the containers of the same Pod), another one per `instance` (a second Pod for the
    node, as in a DaemonSet surge)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rebootd-sim/{name}/{instance}"))


def write_host_boot_id(path: Path, node: Mapping[str, Any] | None) -> None:
    """The simulated machine's own boot id file, as the daemon reads /proc/sys/kernel/random/boot_id:
    the boot id the simulated kubelet reported for the boot the machine is in now."""
    path.write_text(boot_id(node) if node is not None else "", encoding="ascii")


def node_token(name: str) -> str:
    return f"token-{name}"


def node_identity(name: str) -> tuple[str, tuple[str, ...]]:
    return f"rebootd@{name}", ("rebootd",)


class NodeHost(Protocol):
    """The machines of simulated nodes: reboot one, learn when it is up again."""

    async def reboot(self, node: str) -> None:
        """The machine goes down now (returns once the reboot has started)."""
        ...

    async def wait_ready(self, node: str) -> None:
        """Until the node is up (Ready; after a reboot, with its new boot). Cancellable; a node
        that never boots keeps this waiting."""
        ...


@dataclass(frozen=True)
class DaemonSeams:
    """How a simulated node's daemon is built: the API facade's constructor and the daemon's.
    The defaults are the shipped ones; tests swap in deliberately broken doubles (a facade that
    deletes a pod the PDB protects, a daemon without its PDB preflight) to show that the
    invariants judged from the emulator's history catch them."""

    connect: Callable[..., Awaitable[Kube]] = Kube.connect
    daemon: Callable[..., Daemon] = Daemon


class EmulatorHost:
    """Machines emulated by an `Emulator` in this process."""

    def __init__(self, emulator: Emulator, *, poll: float = 1.0) -> None:
        self.emulator = emulator
        self._poll = poll

    async def reboot(self, node: str) -> None:
        self.emulator.request_reboot(name=node, client=node_identity(node)[0])

    def _ready(self, node: str) -> bool:
        obj = self.emulator.store.get("nodes", "", node)
        return obj is not None and is_ready(obj)

    async def wait_ready(self, node: str) -> None:
        # Re-checked on every store change (no polling); the timeout only bounds each wait.
        while True:
            with contextlib.suppress(TimeoutError):
                await self.emulator.wait_until(lambda: self._ready(node), within=self._poll)
                return


class EmulatedReboot:
    """The reboot method of a simulated node: its host reboots it; this daemon instance dies."""

    def __init__(self, *, node: SimNode) -> None:
        self._node = node

    async def reboot(self) -> None:
        self._node.reboot_requests += 1
        if self._node.reboot_failures:
            self._node.reboot_failures -= 1  # a negative count fails forever
            if self._node.emulator is not None:  # a request all the same: the invariants judge it
                self._node.emulator.note(
                    event="reboot_requested", client=node_identity(self._node.name)[0], verb="reboot",
                    name=self._node.name,
                )  # fmt: skip
            raise RebootFailed("the simulated reboot command failed")
        self._node.reboots += 1
        self._node.sentinel.unlink(missing_ok=True)  # /var/run is cleared at boot
        await self._node.host_of().reboot(self._node.name)
        self._node.crash_soon()
        await asyncio.Event().wait()  # the process is gone before this returns


@dataclass
class SimNode:
    """One node's daemon instance over its lifetime (restarts included).

    Give `emulator` (an in-process emulator: its kubeconfig, its reboots), or `host` and
    `kubeconfig` (a daemon whose machine lives elsewhere)."""

    emulator: Emulator | None
    name: str
    workdir: Path
    env: Mapping[str, str]
    clock: Clock = field(default_factory=SystemClock)
    time_scale: float = 0.05
    boot_poll: float = 0.05
    token: str = ""
    reboots: int = 0
    reboot_requests: int = 0
    reboot_failures: int = 0  # the next N reboot requests fail (RebootFailed); negative: all of them
    host_boot_id: str | None = None  # the machine's boot id file says this, whatever the Node says
    pod_uid: str = ""  # the daemon Pod's uid ("" = the node's one Pod: `sim_pod_uid`)
    starts: int = 0
    daemon: Daemon | None = None
    exit_codes: list[int] = field(default_factory=list)
    on_start: Callable[[SimNode], None] | None = None
    host: NodeHost | None = None
    kubeconfig: Path | None = None
    seams: DaemonSeams = field(default_factory=DaemonSeams)
    _task: asyncio.Task[int] | None = None
    _stop: asyncio.Event | None = None
    _kube: Kube | None = None
    _life: asyncio.Task[None] | None = None
    _retired: bool = False

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = self.token or node_token(self.name)
        if self.host is None:
            if self.emulator is None:
                raise ValueError("a SimNode needs an emulator or a host")
            self.host = EmulatorHost(self.emulator)
        if self.kubeconfig is None:
            if self.emulator is None:
                raise ValueError("a SimNode without an emulator needs a kubeconfig")
            self.kubeconfig = self.emulator.write_kubeconfig(self.workdir / "kubeconfig", token=self.token)
        self._log = get_logger(node=self.name, component="sim")

    def host_of(self) -> NodeHost:
        assert self.host is not None  # set in __post_init__
        return self.host

    @property
    def sentinel(self) -> Path:
        return self.workdir / "reboot-required"

    @property
    def boot_id_file(self) -> Path:
        return self.workdir / "boot_id"

    def require_reboot(self) -> None:
        self.sentinel.touch()

    def settings(self) -> Settings:
        env = {
            "REBOOTD_NODE_ID": self.name,
            "REBOOTD_POD_UID": self.pod_uid or sim_pod_uid(self.name),
            "REBOOTD_BOOT_ID_FILE": str(self.boot_id_file),
            "REBOOTD_REBOOT_SENTINEL": str(self.sentinel),
            "REBOOTD_METRICS_HOST": "127.0.0.1",
            "REBOOTD_KUBECONFIG": str(self.kubeconfig),
            **self.env,
        }
        # Port 0 (any free port) is not an operator setting; the simulator may use it.
        return load_settings(environ=env).model_copy(update={"metrics_port": 0})

    async def start(self) -> None:
        """Start a daemon instance (the kubelet starting the pod)."""
        self.starts += 1
        self._kube = await self.seams.connect(
            kubeconfig=self.kubeconfig, retry=RetryPolicy(attempts=4, base=0.05, cap=0.5)
        )
        if self.host_boot_id is not None:
            self.boot_id_file.write_text(self.host_boot_id, encoding="ascii")
        else:
            with contextlib.suppress(KubeError):  # the machine boots whether the API answers or not
                write_host_boot_id(self.boot_id_file, await self._kube.get_node(name=self.name))
        self._stop = asyncio.Event()
        self.daemon = self.seams.daemon(
            settings=self.settings(),
            clock=self.clock,
            metrics=Metrics.create(),
            kube=self._kube,
            rebooter=EmulatedReboot(node=self),
            time_scale=self.time_scale,
        )
        self._task = asyncio.create_task(self.daemon.run(stop=self._stop), name=f"daemon-{self.name}")
        if self.on_start is not None:
            self.on_start(self)

    def freeze(self, seconds: float) -> None:
        """The daemon's process stops (SIGSTOP, a paused VM) right before its next API request and
        goes on `seconds` later, its monotonic clock having moved on meanwhile."""
        if self._kube is None:
            return
        kube = self._kube

        async def frozen(_verb: str) -> None:
            kube.before_send = None
            await asyncio.sleep(seconds)

        kube.before_send = frozen

    def crash_soon(self) -> None:
        """The node goes down: the daemon dies now, a new one starts after the node boots."""
        if self._life is None or self._life.done():
            self._life = asyncio.create_task(self._reboot_lifecycle(), name=f"lifecycle-{self.name}")

    async def _reboot_lifecycle(self) -> None:
        await self.kill()
        await self.wait_ready()
        if not self._retired:
            await self.start()

    async def wait_ready(self) -> None:
        """Until the node is up again. A node that never boots keeps this waiting until `stop()`
        cancels it."""
        await self.host_of().wait_ready(self.name)

    async def kill(self) -> None:
        """Abrupt death (SIGKILL, power off): no graceful shutdown, in-flight requests dropped."""
        task, kube = self._task, self._kube
        self._task, self._kube = None, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if kube is not None:
            await kube.close()

    async def stop(self) -> int | None:
        """Graceful stop (SIGTERM)."""
        self._retired = True
        if self._life is not None and not self._life.done():
            self._life.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._life
        task, kube = self._task, self._kube
        self._task, self._kube = None, None
        code = None
        if task is not None:
            assert self._stop is not None
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                code = await asyncio.wait_for(task, timeout=10)
        if kube is not None:
            await kube.close()
        return code

    async def restart(self) -> None:
        """Kill the daemon and start a new instance at once (a crash-looping pod's restart)."""
        await self.kill()
        await self.start()

    def crash(self, *, restart_after: float = 0.0) -> bool:
        """The daemon dies abruptly now; the kubelet starts a new one `restart_after` seconds later
        (once the node is Ready). False, and nothing done, while the node is rebooting or the
        daemon is not running: there is nothing to kill."""
        if self._retired or not self.running or (self._life is not None and not self._life.done()):
            return False
        self._life = asyncio.create_task(self._crash_lifecycle(restart_after), name=f"crash-{self.name}")
        return True

    async def _crash_lifecycle(self, restart_after: float) -> None:
        await self.kill()
        await asyncio.sleep(restart_after)
        await self.wait_ready()
        if not self._retired:
            await self.start()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def phase(self) -> str:
        if self.daemon is None or self.daemon.cycle is None:
            return "starting"
        return self.daemon.cycle.phase


def tokens_for(names: Iterable[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {node_token(n): node_identity(n) for n in names}


@dataclass
class SimCluster:
    """An emulator plus one SimNode per node; start and stop them together."""

    emulator: Emulator
    workdir: Path
    env: Mapping[str, str]
    zones: Mapping[str, str]
    clock: Clock = field(default_factory=SystemClock)
    time_scale: float = 0.05
    clocks: Mapping[str, Clock] = field(default_factory=dict)
    nodes: dict[str, SimNode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.zones:
            self.nodes[name] = SimNode(
                emulator=self.emulator,
                name=name,
                workdir=self.workdir / name,
                env=self.env,
                clock=self.clocks.get(name, self.clock),
                time_scale=self.time_scale,
            )

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.start()

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes.values()))

    def node_objects(self) -> list[dict[str, Any]]:
        return self.emulator.list_objects(kind="Node")

    def lease_state(self, *, namespace: str = "kube-system", name: str = "rebootd") -> LockState:
        return state_of(self.emulator.get_object(kind="Lease", namespace=namespace, name=name))

    async def wait_until(self, predicate: Callable[[], bool], *, within: float, poll: float = 0.05) -> bool:
        """Poll a condition on the emulator's state (test harness only), bounded by `within`."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if predicate():
                return True
            await asyncio.sleep(poll)
        return predicate()
