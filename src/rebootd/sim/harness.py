"""Nodes of a simulated cluster, each with its own real rebootd daemon (the DaemonSet's pods).

Rule: a simulated node runs the real `Daemon` with a temp-dir sentinel file and its own API
identity (a bearer token, so faults and partitions can single it out). Its reboot method asks the
emulator to reboot the node; like a real reboot it ends the daemon abruptly (no clean shutdown),
clears the sentinel (as /var/run is cleared at boot) and starts a new daemon instance once the
machine is back up, like the kubelet restarting the DaemonSet pod (a late kubelet may post the
Node's Ready and new bootID only later). Used by the integration tests and by `rebootd simulate`.

Each machine has its own host boot id file (what /proc/sys/kernel/random/boot_id reads), written
when the SimNode is made and rewritten with the machine's new boot id once it is back up, before
its daemon restarts; the node's daemon Pod keeps one uid across restarts and reboots (a
duplicate daemon is another Pod, with another uid). Two simulator seams act on a daemon
only: `freeze` (the process stopped right before a request, through `Kube.before_send`, until the
thaw) and `start_duplicate` (a second daemon for the same node, as a DaemonSet surge makes).

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
from rebootd.emulator.emulator import Emulator
from rebootd.kube import Kube, RetryPolicy
from rebootd.lock import state_of
from rebootd.lockstate import LockState
from rebootd.logs import get_logger
from rebootd.metrics import Metrics
from rebootd.reboot import RebootFailed
from rebootd.settings import Settings, load_settings


def sim_pod_uid(name: str, *, instance: int = 0) -> str:
    """The uid of a simulated node's daemon Pod: the same across restarts and reboots (a kubelet
    restarts the containers of the same Pod), another one per `instance` (a second Pod for the
    node, as in a DaemonSet surge)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rebootd-sim/{name}/{instance}"))


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
        """Until the machine is up (after a reboot, booted again; its Node may not show it yet).
        Cancellable; a node that never boots keeps this waiting."""
        ...

    def boot_id(self, node: str) -> str:
        """The machine's own boot id right now (its /proc/sys/kernel/random/boot_id)."""
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

    def _up(self, node: str) -> bool:
        obj = self.emulator.store.get("nodes", "", node)
        return obj is not None and self.emulator.machine_up(name=node)

    async def wait_ready(self, node: str) -> None:
        # Re-checked on every store change (the machine coming up writes one: its kubelet's
        # Starting Event or its status); the timeout only bounds each wait.
        while True:
            with contextlib.suppress(TimeoutError):
                await self.emulator.wait_until(lambda: self._up(node), within=self._poll)
                return

    def boot_id(self, node: str) -> str:
        return self.emulator.machine_boot_id(name=node)


@dataclass
class FreezeArm:
    """A freeze waiting for its moment: a daemon it is armed on stops right before its `nth`
    request with `verb` ("" any verb), counted from arming, for `seconds`. Armed on several
    daemons, the first to get there takes it (the others go on)."""

    seconds: float
    verb: str = ""
    nth: int = 1
    taken_by: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def claim(self, *, node: str, verb: str) -> bool:
        if self.taken_by is not None or (self.verb and verb != self.verb):
            return False
        self.counts[node] = self.counts.get(node, 0) + 1
        if self.counts[node] < self.nth:
            return False
        self.taken_by = node
        return True


class EmulatedReboot:
    """The reboot method of a simulated node: its host reboots it; this daemon instance dies."""

    def __init__(self, *, node: SimNode) -> None:
        self._node = node

    async def reboot(self) -> None:
        self._node.reboot_requests += 1
        node = self._node
        if node.reboot_fails or node.reboot_failures:
            if node.reboot_failures > 0:
                node.reboot_failures -= 1
            if node.emulator is not None:  # a request all the same: the invariants judge it
                node.emulator.note(
                    event="reboot_requested", client=node_identity(node.name)[0], name=node.name
                )
            else:  # a host that records requests itself (`ApiMachines`)
                refused = getattr(node.host_of(), "reboot_refused", None)
                if refused is not None:
                    refused(node.name)
            raise RebootFailed("simulated: the reboot command exited with status 1 (the host refused)")
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
    starts: int = 0
    daemon: Daemon | None = None
    exit_codes: list[int] = field(default_factory=list)
    on_start: Callable[[SimNode], None] | None = None
    host: NodeHost | None = None
    kubeconfig: Path | None = None
    _task: asyncio.Task[int] | None = None
    _stop: asyncio.Event | None = None
    _kube: Kube | None = None
    _life: asyncio.Task[None] | None = None
    _retired: bool = False
    pod_uid: str = ""
    reboot_requests: int = 0  # reboot commands run, failed ones included
    reboot_fails: bool = False  # every reboot command fails (the host refuses)
    reboot_failures: int = 0  # the next N reboot commands fail (negative: all of them)
    host_boot_id: str | None = None  # the machine's boot id file says this, whatever the machine's is
    seams: DaemonSeams = field(default_factory=DaemonSeams)
    frozen: int = 0  # freezes that took hold of this node's daemon
    duplicates: int = 0  # second daemons started for this node (each its own Pod)
    _arm: FreezeArm | None = None
    _frozen_until: float | None = None
    _thaw: asyncio.Event | None = None
    _extras: list[tuple[asyncio.Task[int], Kube, asyncio.Event]] = field(default_factory=list)

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
        self.write_boot_id()

    def host_of(self) -> NodeHost:
        assert self.host is not None  # set in __post_init__
        return self.host

    @property
    def sentinel(self) -> Path:
        return self.workdir / "reboot-required"

    def require_reboot(self) -> None:
        self.sentinel.touch()

    @property
    def boot_id_file(self) -> Path:
        return self.workdir / "boot_id"

    def write_boot_id(self) -> None:
        """The machine's current boot id into its host file (atomically: a daemon may read it)."""
        temp = self.boot_id_file.with_suffix(".tmp")
        boot = self.host_boot_id if self.host_boot_id is not None else self.host_of().boot_id(self.name)
        temp.write_text(boot + "\n")
        temp.replace(self.boot_id_file)

    def settings(self, *, pod_uid: str = "") -> Settings:
        env = {
            "REBOOTD_NODE_ID": self.name,
            "REBOOTD_POD_UID": pod_uid or self.pod_uid,
            "REBOOTD_BOOT_ID_FILE": str(self.boot_id_file),
            "REBOOTD_REBOOT_SENTINEL": str(self.sentinel),
            "REBOOTD_METRICS_HOST": "127.0.0.1",
            "REBOOTD_KUBECONFIG": str(self.kubeconfig),
            **self.env,
        }
        # Port 0 (any free port) is not an operator setting; the simulator may use it.
        return load_settings(environ=env).model_copy(update={"metrics_port": 0})

    async def start(self) -> None:
        """Start a daemon instance (the kubelet (re)starting the containers of the node's one Pod:
        its uid stays the same across restarts and reboots)."""
        self.starts += 1
        self.pod_uid = self.pod_uid or sim_pod_uid(self.name)
        self._arm, self._frozen_until, self._thaw = None, None, None  # a new process is not frozen
        self._kube = await self.seams.connect(
            kubeconfig=self.kubeconfig, retry=RetryPolicy(attempts=4, base=0.05, cap=0.5)
        )
        self._kube.before_send = self._before_send
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

    async def start_duplicate(self) -> str:
        """A second daemon for this node (a DaemonSet surge): same machine, sentinel and token, its
        own pod uid (returned). It dies with the machine and is not restarted after a reboot."""
        kube = await self.seams.connect(
            kubeconfig=self.kubeconfig, retry=RetryPolicy(attempts=4, base=0.05, cap=0.5)
        )
        self.duplicates += 1
        uid = sim_pod_uid(self.name, instance=self.duplicates)
        stop = asyncio.Event()
        daemon = self.seams.daemon(
            settings=self.settings(pod_uid=uid),
            clock=self.clock,
            metrics=Metrics.create(),
            kube=kube,
            rebooter=EmulatedReboot(node=self),
            time_scale=self.time_scale,
        )
        task = asyncio.create_task(daemon.run(stop=stop), name=f"daemon-{self.name}-surge")
        self._extras.append((task, kube, stop))
        self._log.info("rebootd.sim.duplicate_daemon", pod_uid=uid)
        return uid

    # -- freezing --------------------------------------------------------------------------------
    def freeze(self, *, seconds: float, verb: str = "", nth: int = 1, arm: FreezeArm | None = None) -> None:
        """Freeze the running daemon right before its `nth` next request with `verb` ("" any) for
        `seconds` (or take part in a shared `arm`). A restart ends a freeze, as a new process."""
        if not seconds > 0:
            raise ValueError(f"freeze seconds must be > 0, got {seconds!r}")
        self._arm = arm if arm is not None else FreezeArm(seconds=seconds, verb=verb, nth=nth)

    def thaw(self) -> None:
        self._frozen_until = None
        if self._thaw is not None:
            self._thaw.set()

    async def _before_send(self, verb: str) -> None:
        """Kube.before_send of the primary daemon: block while frozen (bounded by the freeze)."""
        loop = asyncio.get_running_loop()
        arm = self._arm
        if arm is not None and arm.claim(node=self.name, verb=verb):
            self._arm = None
            self.frozen += 1
            self._frozen_until = loop.time() + arm.seconds
            self._thaw = asyncio.Event()
            self._log.info("rebootd.sim.daemon_frozen", verb=verb, seconds=arm.seconds)
        until, thaw = self._frozen_until, self._thaw
        if until is None or thaw is None:
            return
        remaining = until - loop.time()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(thaw.wait(), timeout=remaining)
        if self._frozen_until == until:
            self._frozen_until = None
            self._log.info("rebootd.sim.daemon_thawed")

    def crash_soon(self) -> None:
        """The node goes down: the daemon dies now, a new one starts after the node boots."""
        if self._life is None or self._life.done():
            self._life = asyncio.create_task(self._reboot_lifecycle(), name=f"lifecycle-{self.name}")

    async def _reboot_lifecycle(self) -> None:
        await self.kill()
        await self.wait_ready()
        self.write_boot_id()  # the new boot's id, before its daemon starts
        if not self._retired:
            await self.start()

    async def wait_ready(self) -> None:
        """Until the node is up again. A node that never boots keeps this waiting until `stop()`
        cancels it."""
        await self.host_of().wait_ready(self.name)

    async def kill(self, *, machine: bool = True) -> None:
        """Abrupt death (SIGKILL; with `machine`, power off: a duplicate daemon dies too): no
        graceful shutdown, in-flight requests dropped."""
        task, kube = self._task, self._kube
        self._task, self._kube = None, None
        self.thaw()
        extras: list[tuple[asyncio.Task[int], Kube, asyncio.Event]] = []
        if machine:
            extras, self._extras = self._extras, []
        for other, other_kube, _ in extras:
            other.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await other
            await other_kube.close()
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
        self.thaw()
        extras, self._extras = self._extras, []
        for other, other_kube, other_stop in extras:
            other_stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(other, timeout=10)
            await other_kube.close()
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
        await self.kill(machine=False)
        await asyncio.sleep(restart_after)
        await self.wait_ready()
        self.write_boot_id()
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
