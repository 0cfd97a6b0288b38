"""Simulated machines whose kubelet speaks only the Kubernetes API, like a real kubelet.

Rule: an `ApiMachines` runs one `ApiKubelet` per simulated machine; each is an HTTP client of the
API server and nothing else (no emulator internals), so the same machines run against the
emulator and against a real kube-apiserver. While its machine is up a kubelet:
- registers its Node (POST) and posts its status through `nodes/status`: Ready, `nodeInfo.bootID`
  (new on every boot), capacity, addresses; the Ready condition's heartbeat is posted again every
  `status_period`;
- renews its heartbeat Lease `kube-node-lease/<node>` as real kubelets do (holderIdentity = the
  node name, leaseDurationSeconds 40, renewTime now, owned by the Node) every `lease_period`;
- moves each pod bound to the node to Running and Ready through `pods/status`, `pod_start`
  seconds after it saw it (containers restarted after a boot count a restart);
- finishes graceful deletes: a terminating pod is deleted with grace 0 (uid precondition) once its
  deletion grace (times `grace_scale`) has passed.
A reboot takes the machine down at once: no heartbeat, no status, no pod work (pods are not
running); after `boot_seconds` it comes back with a new boot id, posts Ready and its new bootID
(`status_delay` later: a late kubelet),
marks its pods not ready (their containers restart) and runs them again; a pod named in
`broken` (namespace, name prefix) does not come back after a reboot: its container crash-loops
(not Ready, `CrashLoopBackOff`, one more restart). A machine in `never_boots` stays down. The
node side of the daemons (the sentinel, the daemon restarts) stays
in `harness.SimNode`, which takes an `ApiMachines` as its `NodeHost`.

Every wait is bounded and cancellable; `close()` stops every loop. Times on the wire are the
injected clock's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
import yaml

from rebootd.clock import Clock, SystemClock
from rebootd.sim.audit import Note

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40  # what kubelets write (their --node-lease-duration-seconds default)
REQUEST_TIMEOUT = 10.0
JsonObj = dict[str, Any]


@dataclass(frozen=True)
class KubeletTiming:
    """Seconds (the simulation's scale): real kubelets renew every 10 s and post status every 10 s."""

    sync: float = 0.1  # how often a kubelet looks at its pods
    lease_period: float = 0.5
    status_period: float = 1.0
    pod_start: float = 0.2  # a pod seen bound runs and is Ready after this
    boot_seconds: float = 1.0
    grace_scale: float = 0.01  # a pod's deletion grace period is multiplied by this
    # a late kubelet: a rebooted machine is up (its daemon starts) this long before its kubelet
    # posts Ready and the new bootID, so the daemon's proof of reboot has to follow the Node
    status_delay: float = 0.0


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and who the kubelet is there (from a kubeconfig with a bearer token)."""

    server: str
    token: str | None
    ca_file: str | None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Endpoint:
        config = yaml.safe_load(path.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
        user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
        return cls(
            server=cluster["server"], token=user.get("token"), ca_file=cluster.get("certificate-authority")
        )


class Api:
    """The few REST calls a kubelet makes, as JSON over one aiohttp session."""

    def __init__(self, *, endpoint: Endpoint, user_agent: str) -> None:
        headers = {"Accept": "application/json", "User-Agent": user_agent}
        if endpoint.token:
            headers["Authorization"] = f"Bearer {endpoint.token}"
        context: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=endpoint.ca_file) if endpoint.ca_file else False
        )
        self._server = endpoint.server
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=context),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )

    async def call(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json"
    ) -> JsonObj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._session.request(method, self._server + path, data=data, headers=headers) as reply:
            text = await reply.text()
            if reply.status >= 300:
                raise ApiError(reply.status, text)
            return dict(json.loads(text)) if text else {}

    async def close(self) -> None:
        await self._session.close()


def micro(clock: Clock) -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds(clock: Clock) -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def node_conditions(*, now: str, ready: bool) -> list[JsonObj]:
    """The conditions a healthy kubelet posts (pressure False, Ready as given)."""
    out = []
    for kind, reason in (
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ):
        out.append(
            {
                "type": kind,
                "status": "False",
                "reason": reason,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
    out.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "container runtime is starting",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    )
    return out


@dataclass
class ApiKubelet:
    """One machine and its kubelet (see the module rule)."""

    name: str
    api: Api
    clock: Clock
    timing: KubeletTiming
    labels: Mapping[str, str]
    address: str
    up: bool = False
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    boots: int = 0
    never_boots: bool = False
    _task: asyncio.Task[None] | None = None
    _boot: asyncio.Task[None] | None = None
    _seen: dict[str, float] = field(default_factory=dict)  # pod uid -> when first seen not ready (monotonic)
    _restarted: set[str] = field(default_factory=set)  # pod uids whose containers restart after this boot
    broken: set[tuple[str, str]] = field(
        default_factory=set
    )  # (namespace, pod name prefix): crash-loop after a reboot
    _crashing: set[str] = field(default_factory=set)  # pod uids shown crash-looping (written once)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._log = structlog.get_logger().bind(area="kubelet", node=self.name)

    # -- the machine -----------------------------------------------------------------------------

    async def power_on(self) -> None:
        """Register the Node (once) and start the kubelet's loop."""
        try:
            await self.api.call(
                "POST",
                "/api/v1/nodes",
                body={
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.name, "labels": dict(self.labels)},
                },
            )
        except ApiError as exc:
            if exc.status != 409:
                raise
        await self._come_up()

    async def _come_up(self, *, status_delay: float = 0.0) -> None:
        self.up = True
        self.boots += 1
        if status_delay > 0:  # up (its daemon may start) before its kubelet posts the new boot
            self._changed.set()
            self._changed = asyncio.Event()
            await asyncio.sleep(status_delay)
        await self._post_status(ready=True)
        await self._renew_lease()
        self._task = asyncio.create_task(self._run(), name=f"kubelet-{self.name}")
        self._changed.set()
        self._changed = asyncio.Event()
        self._log.info("rebootd.kubelet.up", boot_id=self.boot_id, boots=self.boots)

    async def reboot(self) -> None:
        """Down now; back after boot_seconds with a new boot id (never, if never_boots)."""
        if not self.up:
            return
        self.up = False
        await self._stop_loop()
        self._log.info("rebootd.kubelet.down", boot_id=self.boot_id)
        if not self.never_boots:
            self._boot = asyncio.create_task(self._boot_later(), name=f"boot-{self.name}")

    async def _boot_later(self) -> None:
        await asyncio.sleep(self.timing.boot_seconds)
        self.boot_id = str(uuid.uuid4())
        self._restarted = set(self._seen) | await self._pod_uids()
        self._seen.clear()
        await self._mark_pods_not_ready()
        await self._come_up(status_delay=self.timing.status_delay)

    async def wait_up(self) -> None:
        while not self.up:
            waiter = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=1.0)

    async def _stop_loop(self) -> None:
        for task in (self._task,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    async def close(self) -> None:
        self.up = False
        await self._stop_loop()
        if self._boot is not None:
            self._boot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._boot

    # -- the kubelet's loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        last_lease = last_status = self.clock.monotonic()
        while True:
            await asyncio.sleep(self.timing.sync)
            try:
                now = self.clock.monotonic()
                if now - last_lease >= self.timing.lease_period:
                    await self._renew_lease()
                    last_lease = now
                if now - last_status >= self.timing.status_period:
                    await self._post_status(ready=True)
                    last_status = now
                await self._sync_pods()
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                self._log.warning("rebootd.kubelet.sync_failed", error=str(exc))

    async def _post_status(self, *, ready: bool) -> None:
        now = seconds(self.clock)
        status = {
            "conditions": node_conditions(now=now, ready=ready),
            "nodeInfo": {
                "bootID": self.boot_id,
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
                "kernelVersion": "6.12.0-sim",
                "osImage": "rebootd simulated machine",
                "containerRuntimeVersion": "containerd://2.0.0",
                "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "addresses": [
                {"type": "InternalIP", "address": self.address},
                {"type": "Hostname", "address": self.name},
            ],
        }
        # a merge patch replaces the lists whole: the status is exactly what this kubelet says
        await self.api.call(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro(self.clock),
        }
        try:
            lease = await self.api.call("GET", path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            node = await self.api.call("GET", f"/api/v1/nodes/{self.name}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node["metadata"]["uid"]}
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": spec,
            }
            await self.api.call(
                "POST", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", body=body
            )
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        with contextlib.suppress(ApiError):  # a 409 (someone else wrote it): the next period retries
            await self.api.call("PUT", path, body=lease)

    async def _pods(self) -> list[JsonObj]:
        reply = await self.api.call("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{self.name}")
        return list(reply.get("items") or [])

    async def _pod_uids(self) -> set[str]:
        try:
            return {p["metadata"]["uid"] for p in await self._pods()}
        except (ApiError, aiohttp.ClientError, TimeoutError):
            return set()

    async def _sync_pods(self) -> None:
        now = self.clock.monotonic()
        for pod in await self._pods():
            meta = pod["metadata"]
            uid = meta["uid"]
            if meta.get("deletionTimestamp"):
                grace = float(meta.get("deletionGracePeriodSeconds") or 0) * self.timing.grace_scale
                first = self._seen.setdefault(f"delete/{uid}", now)
                if now - first >= grace:
                    await self._finish_delete(pod)
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") or pod_ready(pod) or uid in self._crashing:
                continue
            first = self._seen.setdefault(uid, now)
            if now - first >= self.timing.pod_start:
                await self._start(pod, restarted=uid in self._restarted)
                self._restarted.discard(uid)

    async def _finish_delete(self, pod: JsonObj) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            await self.api.call("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone already, or another pod by that name now
                raise
        self._log.info("rebootd.kubelet.pod_deleted", pod=f"{meta['namespace']}/{meta['name']}")

    async def _start(self, pod: JsonObj, *, restarted: bool) -> None:
        meta = pod["metadata"]
        broken = restarted and any(
            meta["namespace"] == namespace and meta["name"].startswith(prefix)
            for namespace, prefix in self.broken
        )
        await self._write_pod_status(pod, ready=not broken, restart=restarted, crashing=broken)
        if broken:
            self._crashing.add(meta["uid"])

    async def _mark_pods_not_ready(self) -> None:
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            for pod in await self._pods():
                if (
                    not pod["metadata"].get("deletionTimestamp")
                    and (pod.get("status") or {}).get("phase") == "Running"
                ):
                    await self._write_pod_status(pod, ready=False, restart=False)

    async def _write_pod_status(
        self, pod: JsonObj, *, ready: bool, restart: bool, crashing: bool = False
    ) -> None:
        meta = pod["metadata"]
        now = seconds(self.clock)
        status = dict(pod.get("status") or {})
        before = {c.get("name"): c for c in status.get("containerStatuses") or []}
        value = "True" if ready else "False"
        status.update(
            phase="Running",
            hostIP=self.address,
            podIP=status.get("podIP") or pod_ip(meta["uid"]),
            startTime=status.get("startTime") or now,
            conditions=[
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": value, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": value, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
            containerStatuses=[
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"containerd://{uuid.uuid4().hex}",
                    "ready": ready,
                    "started": ready,
                    "restartCount": int((before.get(container["name"]) or {}).get("restartCount", 0))
                    + int(restart),
                    "state": {"running": {"startedAt": now}}
                    if ready
                    else {"waiting": {"reason": "CrashLoopBackOff" if crashing else "ContainerCreating"}},
                }
                for container in (pod.get("spec") or {}).get("containers") or []
            ],
        )
        status["podIPs"] = [{"ip": status["podIP"]}]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            await self.api.call(
                "PATCH",
                path,
                body={"metadata": {"uid": meta["uid"]}, "status": status},
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status not in (404, 409):  # deleted meanwhile, or another pod by that name
                raise


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_ip(uid: str) -> str:
    n = uuid.UUID(uid).int if len(uid) == 36 else hash(uid)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{(n & 253) + 2}"


class ApiMachines:
    """Simulated machines whose kubelets are API clients: a `harness.NodeHost`."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        timing: KubeletTiming | None = None,
        clock: Clock | None = None,
        notes: list[Note] | None = None,
    ) -> None:
        self.timing = timing if timing is not None else KubeletTiming()
        self.clock = clock if clock is not None else SystemClock()
        self._endpoint = Endpoint.from_kubeconfig(kubeconfig)
        self.machines: dict[str, ApiKubelet] = {}
        # what happened outside the API, for a run's history: each reboot asked of a machine (by
        # its node's daemon: nothing else reboots it) and the machine going down
        self.notes = notes if notes is not None else []

    async def add(self, name: str, *, labels: Mapping[str, str] | None = None) -> ApiKubelet:
        """A new machine, powered on: its Node registered, Ready, its heartbeat Lease renewed."""
        index = len(self.machines) + 1
        kubelet = ApiKubelet(
            name=name,
            api=Api(endpoint=self._endpoint, user_agent=f"kubelet/v1.37.2 (linux/amd64) rebootd-sim/{name}"),
            clock=self.clock,
            timing=self.timing,
            labels={"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
            address=f"192.168.{index // 250}.{index % 250 + 1}",
        )
        self.machines[name] = kubelet
        await kubelet.power_on()
        return kubelet

    async def reboot(self, node: str) -> None:
        now = self.clock.now()
        self.notes.append(
            Note(time=now, event="reboot_requested", client=f"rebootd@{node}", node=node, verb="reboot")
        )
        self.notes.append(
            Note(time=now, event="reboot_started", client="kubelet", node=node, detail=self.boot_id(node))
        )
        await self.machines[node].reboot()

    def reboot_refused(self, node: str) -> None:
        """The node's daemon asked for a reboot and its host refused (a reboot command that fails):
        a request all the same, which the invariants judge."""
        self.notes.append(
            Note(
                time=self.clock.now(),
                event="reboot_requested",
                client=f"rebootd@{node}",
                node=node,
                verb="reboot",
            )
        )

    def break_after_reboot(self, node: str, *, namespace: str, pod_prefix: str) -> None:
        """The pods of `node` whose name starts with `pod_prefix` crash-loop after its next boot."""
        self.machines[node].broken.add((namespace, pod_prefix))

    async def wait_ready(self, node: str) -> None:
        await self.machines[node].wait_up()

    def boot_id(self, node: str) -> str:
        return self.machines[node].boot_id

    async def close(self) -> None:
        for kubelet in self.machines.values():
            await kubelet.close()
            await kubelet.api.close()
