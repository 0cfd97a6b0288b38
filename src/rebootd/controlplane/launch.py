"""Start the four control-plane processes on free loopback ports and stop every one of them.

Rule: `running_control_plane` is the only way in: it starts etcd, then kube-apiserver (waiting
for `/readyz`), then kube-controller-manager and kube-scheduler (waiting for their `/healthz`),
then waits for the `default` ServiceAccount (pods cannot be created before it), and yields a
`ControlPlane`. On the way out, by exception or not, each process group is sent SIGTERM, waited
for a bounded time, then SIGKILL, in reverse order; every process was started in its own
session, so nothing it spawned survives either. Every wait has a deadline on the injected
clock and fails with the tail of the component's log. Files of a run (data, certs, tokens, audit
log, logs) live in one fresh directory the caller owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from rebootd.controlplane import config
from rebootd.controlplane.build import Binaries
from rebootd.controlplane.config import Layout, Ports, User

START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.1
LOG_TAIL_BYTES = 4000
START_ATTEMPTS = 3
PORT_TAKEN = "address already in use"

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class ControlPlaneError(RuntimeError):
    """A component did not start (its log tail is in the message) or misbehaved."""


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    ready_after: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class ControlPlane:
    """A running control plane: where it serves, who may call it, and its processes."""

    url: str
    layout: Layout
    users: Mapping[str, User]
    components: dict[str, Component] = field(default_factory=dict)
    ports: Ports | None = None
    version: dict[str, Any] = field(default_factory=dict)
    start_seconds: float = 0.0

    @property
    def admin(self) -> User:
        return self.users[config.ADMIN]

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters)."""
        return self.layout.admin_kubeconfig

    @property
    def audit_log(self) -> Path:
        return self.layout.audit_log

    @property
    def ca_file(self) -> Path:
        return self.layout.serving_cert

    @property
    def pids(self) -> dict[str, int]:
        return {name: component.pid for name, component in self.components.items()}

    def write_kubeconfig(self, path: Path, *, user: str | User, insecure: bool = False) -> Path:
        """A kubeconfig for one user of the token file (by name) or any token (a `User`)."""
        who = self.users[user] if isinstance(user, str) else user
        content = config.kubeconfig(server=self.url, user=who, ca_file=None if insecure else self.ca_file)
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        return path

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component now (from /proc)."""
        return {name: _rss_bytes(component.pid) for name, component in self.components.items()}

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event written so far (one JSON object per line)."""
        try:
            text = self.audit_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def service_account_token(self, *, namespace: str, name: str, seconds: int = 3600) -> User:
        """A real ServiceAccount token from the TokenRequest API (as `kubectl create token`),
        creating the namespace and the ServiceAccount when missing; usable with `write_kubeconfig`."""
        for path, body in (
            (
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            ),
            (
                f"/api/v1/namespaces/{namespace}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            ),
        ):
            try:
                self.request("POST", path, body=body)
            except urllib.error.HTTPError as exc:
                if exc.code != 409:  # 409: it exists already
                    raise
        review = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return User(name=f"system:serviceaccount:{namespace}:{name}", token=str(review["status"]["token"]))

    def request(self, method: str, path: str, *, body: Any = None, user: str | User = config.ADMIN) -> Any:
        """One blocking API call as `user`, verifying the serving certificate; returns the JSON."""
        return _api(
            url=self.url + path,
            method=method,
            body=body,
            token=(self.users[user] if isinstance(user, str) else user).token,
            context=ssl.create_default_context(cafile=str(self.ca_file)),
        )


@contextlib.contextmanager
def running_control_plane(
    *,
    binaries: Binaries,
    work_dir: Path,
    users: Sequence[User] | None = None,
    node_monitor_period: int = 1,
    node_monitor_grace_period: int = 5,
    start_timeout: float = START_TIMEOUT_SECONDS,
    stop_timeout: float = STOP_TIMEOUT_SECONDS,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    choose_ports: Callable[[], Ports] | None = None,
) -> Iterator[ControlPlane]:
    """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler in `work_dir` (a
    fresh directory) and stop them all on exit. Blocking (about 10 s to start): asyncio code
    enters it in a thread (`await asyncio.to_thread(stack.enter_context, running_control_plane(...))`).
    A start that lost a free port to another process is retried on new ports, at most
    START_ATTEMPTS times in all."""
    log = structlog.get_logger().bind(area="controlplane")
    choose_ports = choose_ports if choose_ports is not None else free_ports
    run_users = tuple(users) if users is not None else config.default_users(new_token=secrets.token_hex)
    by_name = config.users_by_name(run_users)
    for required in (config.ADMIN, config.CONTROLLER_MANAGER, config.SCHEDULER):
        if required not in by_name:
            raise ControlPlaneError(f"the token file needs user {required!r}")
    began = clock()
    for attempt in range(1, START_ATTEMPTS + 1):
        layout = Layout(root=work_dir if attempt == 1 else work_dir.with_name(f"{work_dir.name}-{attempt}"))
        for directory in (layout.etcd_data, layout.cert_dir, layout.logs):
            directory.mkdir(parents=True, exist_ok=False)
        _write_files(layout=layout, users=run_users)
        ports = choose_ports()
        plane = ControlPlane(
            url=f"https://127.0.0.1:{ports.apiserver}", layout=layout, users=by_name, ports=ports
        )
        try:
            _start(
                plane=plane,
                ports=ports,
                binaries=binaries,
                waits=_Waits(clock=clock, sleep=sleep, deadline=clock() + start_timeout),
                node_monitor_period=node_monitor_period,
                node_monitor_grace_period=node_monitor_grace_period,
                clock=clock,
            )
        except ControlPlaneError:
            _stop_all(plane.components, timeout=stop_timeout, clock=clock, sleep=sleep)
            if attempt == START_ATTEMPTS or not _lost_a_port(plane):
                raise
            log.warning("rebootd.controlplane.port_taken", attempt=attempt, work_dir=str(layout.root))
            continue
        except BaseException:
            _stop_all(plane.components, timeout=stop_timeout, clock=clock, sleep=sleep)
            raise
        break
    plane.start_seconds = clock() - began
    log.info(
        "rebootd.controlplane.started",
        url=plane.url,
        version=plane.version.get("gitVersion"),
        seconds=round(plane.start_seconds, 2),
        pids=plane.pids,
    )
    try:
        yield plane
    finally:
        _stop_all(plane.components, timeout=stop_timeout, clock=clock, sleep=sleep)
        log.info("rebootd.controlplane.stopped", pids=plane.pids)


def _start(
    *,
    plane: ControlPlane,
    ports: Ports,
    binaries: Binaries,
    waits: _Waits,
    node_monitor_period: int,
    node_monitor_grace_period: int,
    clock: Clock,
) -> None:
    """Start the four in order, each once the one it needs serves; fills `plane.components`."""
    layout = plane.layout
    plane.components["etcd"] = _spawn(
        name="etcd",
        argv=[str(binaries.path("etcd")), *config.etcd_args(ports=ports, layout=layout)],
        layout=layout,
        clock=clock,
    )
    waits.until_http(component=plane.components["etcd"], url=f"http://127.0.0.1:{ports.etcd_client}/health")
    plane.components["kube-apiserver"] = _spawn(
        name="kube-apiserver",
        argv=[str(binaries.path("kube-apiserver")), *config.apiserver_args(ports=ports, layout=layout)],
        layout=layout,
        clock=clock,
    )
    waits.until_http(component=plane.components["kube-apiserver"], url=plane.url + "/readyz")
    for user, path in (
        (config.ADMIN, layout.admin_kubeconfig),
        (config.CONTROLLER_MANAGER, layout.controller_manager_kubeconfig),
        (config.SCHEDULER, layout.scheduler_kubeconfig),
    ):
        plane.write_kubeconfig(path, user=user)
    plane.components["kube-controller-manager"] = _spawn(
        name="kube-controller-manager",
        argv=[
            str(binaries.path("kube-controller-manager")),
            *config.controller_manager_args(
                ports=ports,
                layout=layout,
                node_monitor_period=node_monitor_period,
                node_monitor_grace_period=node_monitor_grace_period,
            ),
        ],
        layout=layout,
        clock=clock,
    )
    plane.components["kube-scheduler"] = _spawn(
        name="kube-scheduler",
        argv=[str(binaries.path("kube-scheduler")), *config.scheduler_args(ports=ports, layout=layout)],
        layout=layout,
        clock=clock,
    )
    waits.until_http(
        component=plane.components["kube-controller-manager"],
        url=f"https://127.0.0.1:{ports.controller_manager}/healthz",
    )
    waits.until_http(
        component=plane.components["kube-scheduler"], url=f"https://127.0.0.1:{ports.scheduler}/healthz"
    )
    waits.until_ok(
        component=plane.components["kube-controller-manager"],
        what="the default ServiceAccount",
        probe=lambda: plane.request("GET", "/api/v1/namespaces/default/serviceaccounts/default"),
    )
    plane.version = plane.request("GET", "/version")


def _lost_a_port(plane: ControlPlane) -> bool:
    """Whether a component failed because another process took its port first."""
    return any(PORT_TAKEN in _log_tail(component.log) for component in plane.components.values())


# --- files, ports, processes --------------------------------------------------------------------


def _write_files(*, layout: Layout, users: Sequence[User]) -> None:
    layout.token_file.write_text(config.token_file(users))
    layout.token_file.chmod(0o600)
    layout.audit_policy.write_text(config.audit_policy())
    result = subprocess.run(
        ["openssl", "genrsa", "-out", str(layout.sa_key), "2048"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl genrsa failed ({result.returncode}): {result.stderr}")


def free_ports() -> Ports:
    """Five distinct free loopback ports (held together while chosen, so they differ)."""
    with contextlib.ExitStack() as stack:
        numbers = []
        for _ in range(5):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            numbers.append(int(sock.getsockname()[1]))
    return Ports(*numbers)


def _spawn(*, name: str, argv: list[str], layout: Layout, clock: Clock) -> Component:
    log_path = layout.logs / f"{name}.log"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=layout.root,
            start_new_session=True,  # its own process group: stopped as one, children included
        )
    return Component(name=name, process=process, log=log_path, started=clock())


def _stop_all(components: Mapping[str, Component], *, timeout: float, clock: Clock, sleep: Sleep) -> None:
    for component in reversed(list(components.values())):
        _stop(component, timeout=timeout, clock=clock, sleep=sleep)


def _stop(component: Component, *, timeout: float, clock: Clock, sleep: Sleep) -> None:
    process = component.process
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        deadline = clock() + timeout
        while process.poll() is None and clock() < deadline:
            sleep(POLL_SECONDS)
        if process.poll() is not None:
            break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything left in its group
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return 0
    return 0


def _log_tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "(no log)"
    return data[-LOG_TAIL_BYTES:].decode(errors="replace")


def _api(*, url: str, method: str, body: Any, token: str | None, context: ssl.SSLContext | None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - https/http loopback
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        exc.close()  # its open response would otherwise be collected unclosed
        raise
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class _Waits:
    clock: Clock
    sleep: Sleep
    deadline: float

    def until_http(self, *, component: Component, url: str) -> None:
        """200 from `url` (TLS not verified: this only asks whether it serves yet)."""
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        self.until_ok(
            component=component,
            what=url,
            probe=lambda: _api(url=url, method="GET", body=None, token=None, context=insecure),
        )

    def until_ok(self, *, component: Component, what: str, probe: Callable[[], Any]) -> None:
        last = ""
        while True:
            if component.process.poll() is not None:
                raise ControlPlaneError(
                    f"{component.name} exited ({component.process.returncode}) before {what} answered:\n"
                    f"{_log_tail(component.log)}"
                )
            try:
                probe()
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                component.ready_after = self.clock() - component.started
                return
            if self.clock() > self.deadline:
                raise ControlPlaneError(
                    f"{component.name}: {what} did not answer in time (last: {last}):\n"
                    f"{_log_tail(component.log)}"
                )
            self.sleep(POLL_SECONDS)
