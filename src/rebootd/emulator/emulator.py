"""`Emulator`: the Kubernetes API emulator and its simulated cluster behind one facade.

Rule: tests and the simulator set the cluster up and inspect it through these keyword-only methods
(in-process, no HTTP) and talk to it over real HTTP at `url` like any client. Everything async runs
on the caller's loop; timers and streams end with `close()`. Objects handed out are deep copies.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import structlog
import yaml
from aiohttp import web

from rebootd.clock import Clock, SystemClock
from rebootd.emulator.apiserver import ApiServer, Authorizer
from rebootd.emulator.cluster import Cluster
from rebootd.emulator.errors import JsonObj
from rebootd.emulator.faults import FaultInjector
from rebootd.emulator.history import HistoryRecord
from rebootd.emulator.listing import Pager
from rebootd.emulator.objects import deep_copy, is_node_ready
from rebootd.emulator.registry import Registry
from rebootd.emulator.resources import BY_GROUP_RESOURCE, info_of_storage, storage_of_kind
from rebootd.emulator.store import Store, StoreEvent
from rebootd.emulator.timing import EmulatorTiming
from rebootd.emulator.workloads import DAEMONSET_TOLERATIONS

__all__ = ["Emulator", "EmulatorTiming", "HistoryRecord"]

log = structlog.get_logger("rebootd.emulator")

SETUP = "emulator-setup"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BASE_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


class Emulator:
    """The emulated API server and cluster.

    Clients are identified by their bearer token: with `tokens` given, a token maps to (user,
    groups) and an unknown token is 401; without `tokens`, any bearer token is accepted and is
    itself the user name (handy for per-daemon request counts and faults). No token: "anonymous".
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        timing: EmulatorTiming | None = None,
        faults: FaultInjector | None = None,
        authorizer: Authorizer | None = None,
        tokens: Mapping[str, tuple[str, Sequence[str]]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.timing = timing if timing is not None else EmulatorTiming()
        self.faults = faults
        self.rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not cryptography
        self.history: list[HistoryRecord] = []
        self.store = Store()
        self.registry = Registry(store=self.store, clock=self.clock, rng=self.rng, history=self.history)
        self.pager = Pager(clock=self.clock, ttl=self.timing.continue_ttl)
        self.cluster = Cluster(
            registry=self.registry, store=self.store, clock=self.clock, timing=self.timing, rng=self.rng
        )
        self._request_counts: Counter[tuple[str, str]] = Counter()
        self.api = ApiServer(
            registry=self.registry,
            store=self.store,
            pager=self.pager,
            clock=self.clock,
            timing=self.timing,
            faults=faults,
            authorizer=authorizer,
            tokens=tokens,
            request_counts=self._request_counts,
        )
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._node_count = 0
        for name in BASE_NAMESPACES:
            self._ensure_namespace(name)

    @property
    def request_counts(self) -> Mapping[tuple[str, str], int]:
        """(client, verb) -> requests so far; client is the token's user or "anonymous"."""
        return self._request_counts

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(
        self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Serve on `host:port` (0: any free port); over TLS with `ssl_context` (a client CA loaded
        in it with `verify_mode` CERT_OPTIONAL makes client certificates authenticate)."""
        app = self.api.application()
        # lingering_time: after refusing a body unread (413), read and drop the rest for at most
        # this long, then close (Go's server reads a bounded remainder too); aiohttp's default, 10 s,
        # keeps the connection's task alive past close().
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5, lingering_time=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        shown_host = f"[{host}]" if ":" in host else host
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{shown_host}:{bound}"
        self.api.server_address = f"{shown_host}:{bound}"
        self.cluster.start()
        log.info("rebootd.emulator.started", url=self.url)

    async def close(self) -> None:
        self.api.shutting_down()
        self.cluster.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig for kubectl and kubernetes-asyncio pointing at `url`."""
        if not self.url:
            raise RuntimeError("start() the emulator before writing a kubeconfig")
        user: JsonObj = {"token": token} if token else {"username": "anonymous"}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rebootd-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "rebootd-emulator-user", "user": user}],
            "contexts": [
                {
                    "name": "rebootd-emulator",
                    "context": {
                        "cluster": "rebootd-emulator",
                        "user": "rebootd-emulator-user",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "rebootd-emulator",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- inspection ------------------------------------------------------------------------------

    def get_object(self, *, kind: str, namespace: str = "", name: str) -> dict[str, Any] | None:
        storage = storage_of_kind(kind)
        ns = namespace if info_of_storage(storage).namespaced else ""
        obj = self.store.get(storage, ns, name)
        return deep_copy(obj) if obj is not None else None

    def list_objects(self, *, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        storage = storage_of_kind(kind)
        return [deep_copy(obj) for obj in self.store.sorted_objects(storage, namespace)]

    async def wait_until(self, predicate: Callable[[], bool], *, within: float = 10.0) -> None:
        """Return once `predicate()` holds, re-checked after every change in the store (no
        polling); raises TimeoutError after `within` seconds."""
        changed = asyncio.Event()

        def on_change(_event: StoreEvent) -> None:
            changed.set()

        self.store.add_listener(on_change)
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    changed.clear()
                    await changed.wait()
        finally:
            self.store.remove_listener(on_change)

    def compact(self) -> None:
        """Drop the watch history (as an etcd compaction): older watch resourceVersions get 410."""
        self.store.compact()

    def expire_continue_tokens(self) -> None:
        """Outstanding list continue tokens become 410 Expired."""
        self.pager.expire_all()

    # -- set-up ----------------------------------------------------------------------------------

    def add_namespace(self, *, name: str) -> dict[str, Any]:
        return deep_copy(self._ensure_namespace(name))

    def _ensure_namespace(self, name: str) -> JsonObj:
        existing = self.store.get("namespaces", "", name)
        if existing is not None:
            return existing
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        return self.registry.create(BY_GROUP_RESOURCE[("", "namespaces")], "", body, client=SETUP)

    def add_node(
        self,
        *,
        name: str,
        zone: str | None = None,
        labels: Mapping[str, str] | None = None,
        unschedulable: bool = False,
        ready: bool = True,
        taints: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        self._node_count += 1
        n = self._node_count
        now = self.registry.now()
        node_labels = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
        }
        if zone is not None:
            node_labels["topology.kubernetes.io/zone"] = zone
        node_labels.update(labels or {})
        spec: JsonObj = {"podCIDR": f"10.244.{n % 256}.0/24", "podCIDRs": [f"10.244.{n % 256}.0/24"]}
        if unschedulable:
            spec["unschedulable"] = True
        if taints:
            spec["taints"] = [dict(t) for t in taints]
        if not ready:
            spec.setdefault("taints", []).append(
                {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now}
            )
        ready_condition = {
            "type": "Ready",
            "status": "True" if ready else "Unknown",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
        }
        conditions = [
            {
                "type": kind,
                "status": "False",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
                "reason": f"KubeletHas{reason}",
                "message": message,
            }
            for kind, reason, message in (
                ("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"),
            )
        ]
        conditions.append(ready_condition)
        status = {
            "capacity": {
                "cpu": "4",
                "memory": "16318496Ki",
                "pods": "110",
                "ephemeral-storage": "102687672Ki",
            },
            "allocatable": {
                "cpu": "4",
                "memory": "16216096Ki",
                "pods": "110",
                "ephemeral-storage": "94636958627",
            },
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"172.18.{(n >> 8) & 255}.{n & 255}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{self.rng.getrandbits(128):032x}",
                "systemUUID": self.registry.new_uid(),
                "bootID": self.registry.new_uid(),
                "kernelVersion": "6.1.0-28-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "v1.32.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": node_labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": spec,
            "status": status,
        }
        node = self.registry.create(
            BY_GROUP_RESOURCE[("", "nodes")], "", body, client=SETUP, keep_status=True
        )
        heartbeat = {  # the kubelet's node lease (kubectl describe node shows it)
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
                ],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": self.timing.heartbeat_lease_seconds,
                "renewTime": self.registry.now_micro(),
            },
        }
        self.registry.create(
            BY_GROUP_RESOURCE[("coordination.k8s.io", "leases")], "kube-node-lease", heartbeat, client=SETUP
        )
        return deep_copy(node)

    def _owner_ref(self, *, kind: str, namespace: str, name: str) -> JsonObj:
        storage = storage_of_kind(kind)
        owner = self.store.get(storage, namespace, name)
        api_version = info_of_storage(storage).api_version
        uid = owner["metadata"]["uid"] if owner is not None else self.registry.new_uid()
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def add_pod(
        self,
        *,
        name: str,
        namespace: str = "default",
        node: str | None,
        owner_kind: str | None = None,
        owner_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        annotations: Mapping[str, str] | None = None,
        termination_grace_seconds: int = 30,
        empty_dir: bool = False,
        containers: Sequence[str] = ("app",),
        tolerations: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A pod in `phase`. With `node` None it stays unscheduled (no scheduler picks it up)."""
        self._ensure_namespace(namespace)
        metadata: JsonObj = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
        if annotations:
            metadata["annotations"] = dict(annotations)
        if owner_kind is not None and owner_name is not None:
            metadata["ownerReferences"] = [
                self._owner_ref(kind=owner_kind, namespace=namespace, name=owner_name)
            ]
        spec: JsonObj = {
            "containers": [{"name": c, "image": PAUSE_IMAGE} for c in containers],
            "terminationGracePeriodSeconds": termination_grace_seconds,
        }
        if empty_dir:
            spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        if tolerations:
            spec["tolerations"] = [dict(t) for t in tolerations]
        if node is not None:
            spec["nodeName"] = node
        else:
            spec["schedulerName"] = "manual"
        body: JsonObj = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
        return deep_copy(self._create_pod_with_status(body, phase=phase, ready=ready))

    def _create_pod_with_status(self, body: JsonObj, *, phase: str, ready: bool) -> JsonObj:
        if phase == "Running" and body["spec"].get("nodeName"):
            body["status"] = self.cluster.running_status(body, ready=ready)
        elif phase in ("Succeeded", "Failed"):
            now = self.registry.now()
            body["status"] = {
                "phase": phase,
                "conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": now, "reason": "PodCompleted"}
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "ready": False,
                        "restartCount": 0,
                        "image": c["image"],
                        "state": {
                            "terminated": {
                                "exitCode": 0 if phase == "Succeeded" else 1,
                                "reason": "Completed" if phase == "Succeeded" else "Error",
                                "finishedAt": now,
                            }
                        },
                    }
                    for c in body["spec"]["containers"]
                ],
            }
        else:
            body["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        pods = BY_GROUP_RESOURCE[("", "pods")]
        namespace = body["metadata"]["namespace"]
        return self.registry.create(pods, namespace, body, client=SETUP, keep_status=True)

    def add_workload(
        self,
        *,
        kind: WorkloadKind,
        name: str,
        namespace: str = "default",
        replicas: int = 1,
        nodes: Sequence[str] | None = None,
        pdb_min_available: int | str | None = None,
        pdb_max_unavailable: int | str | None = None,
        labels: Mapping[str, str] | None = None,
        termination_grace_seconds: int = 30,
        empty_dir: bool = False,
        node_selector: Mapping[str, str] | None = None,
    ) -> None:
        """A workload with its owner objects and Ready pods spread over `nodes` (default: every
        schedulable node; a DaemonSet runs on every node), plus a PDB when asked. `node_selector`
        goes into the pod template: pods placed on `nodes` here stay there (as if the label had
        been removed since they were scheduled), replacements need a node that matches it."""
        self._ensure_namespace(namespace)
        pod_labels = {"app": name, **dict(labels or {})}
        template_spec: JsonObj = {
            "containers": [{"name": "app", "image": PAUSE_IMAGE}],
            "terminationGracePeriodSeconds": termination_grace_seconds,
        }
        if empty_dir:
            template_spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        if node_selector:
            template_spec["nodeSelector"] = dict(node_selector)
        template = {"metadata": {"labels": pod_labels}, "spec": template_spec}
        selector = {"matchLabels": {"app": name}}
        spec: JsonObj = {"selector": selector, "template": template}
        if kind != "DaemonSet":
            spec["replicas"] = replicas
        group_resource = {
            "Deployment": "deployments",
            "StatefulSet": "statefulsets",
            "DaemonSet": "daemonsets",
        }[kind]
        info = BY_GROUP_RESOURCE[("apps", group_resource)]
        body = {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "labels": dict(pod_labels)},
            "spec": spec,
        }
        if kind == "StatefulSet":
            spec["serviceName"] = name
        owner = self.registry.create(info, namespace, body, client=SETUP)
        if kind == "DaemonSet":
            targets = [n["metadata"]["name"] for n in self.store.sorted_objects("nodes")]
            pod_owner = owner
        else:
            targets = (
                list(nodes) if nodes else [n["metadata"]["name"] for n in self.cluster.schedulable_nodes()]
            )
            if not targets:
                targets = [n["metadata"]["name"] for n in self.store.sorted_objects("nodes")]
            pod_owner = owner
            if kind == "Deployment":
                template_hash = f"{self.rng.getrandbits(40):010x}"
                rs_template = deep_copy(template)
                rs_template["metadata"]["labels"]["pod-template-hash"] = template_hash
                rs_body = {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{name}-{template_hash}",
                        "labels": dict(rs_template["metadata"]["labels"]),
                        "ownerReferences": [
                            self._owner_ref(kind="Deployment", namespace=namespace, name=name)
                        ],
                    },
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": name, "pod-template-hash": template_hash}},
                        "template": rs_template,
                    },
                }
                pod_owner = self.registry.create(
                    BY_GROUP_RESOURCE[("apps", "replicasets")], namespace, rs_body, client=SETUP
                )
        count = len(targets) if kind == "DaemonSet" else replicas
        for index in range(count):
            node = targets[index % len(targets)] if targets else None
            if kind == "StatefulSet":
                pod = self.cluster.pod_from_template(pod_owner, name=f"{name}-{index}")
                pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = f"{name}-{index}"
                pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = str(index)
            else:
                generated = f"{pod_owner['metadata']['name']}-{self.registry.random_suffix()}"
                pod = self.cluster.pod_from_template(pod_owner, name=generated)
            if kind == "DaemonSet":
                pod["spec"]["tolerations"] = [
                    {"key": key, "operator": "Exists", "effect": "NoSchedule"}
                    for key in DAEMONSET_TOLERATIONS
                ]
            if node is not None:
                pod["spec"]["nodeName"] = node
                node_obj = self.store.get("nodes", "", node)
                ready = node_obj is not None and is_node_ready(node_obj)
                self._create_pod_with_status(pod, phase="Running", ready=ready)
            else:
                self._create_pod_with_status(pod, phase="Pending", ready=False)
        if pdb_min_available is not None or pdb_max_unavailable is not None:
            self._create_pdb(
                name=name,
                selector={"matchLabels": {"app": name}},
                namespace=namespace,
                min_available=pdb_min_available,
                max_unavailable=pdb_max_unavailable,
            )
        self.cluster.reconcile_now(pod_owner)
        if pod_owner is not owner:
            self.cluster.reconcile_now(owner)
        self.cluster.sync_pdbs(namespace)

    # -- behaviours ------------------------------------------------------------------------------

    def request_reboot(self, *, name: str, client: str) -> None:
        """A daemon's reboot method was called (`client`: that daemon): recorded as
        `reboot_requested` before the machine goes down, then the machine reboots."""
        self.note(event="reboot_requested", client=client, verb="reboot", name=name)
        self.reboot_node(name=name)

    def note(self, *, event: str, client: str, name: str, verb: str = "") -> None:
        """Record a happening outside the API about node `name` (a reboot need, a reboot request)."""
        node = self.store.get("nodes", "", name)
        self.registry.record(
            event=event,
            client=client,
            verb=verb,
            kind="Node",
            namespace="",
            name=name,
            resource_version="" if node is None else str(node["metadata"].get("resourceVersion", "")),
        )

    def reboot_node(self, *, name: str) -> None:
        """NotReady now, pods on it stop; after timing.boot_seconds a new bootID, Ready again and
        the pods restarted (restartCount + 1), Ready after timing.pod_ready_delay."""
        self.cluster.reboot(name)

    def machine_boot_id(self, *, name: str) -> str:
        """The machine's own boot id (its /proc/sys/kernel/random/boot_id), ahead of a late kubelet."""
        return self.cluster.machine_boot_id(name)

    def machine_up(self, *, name: str) -> bool:
        """The machine runs (a rebooted daemon may start), whatever its Node object shows yet."""
        return self.cluster.machine_up(name)

    def add_machine_listener(self, listener: Callable[[str, bool], None]) -> None:
        """`listener(node, up)` when a machine goes down (a reboot starts) or is back up."""
        self.cluster.machine_listeners.append(listener)

    def power_loss(self, *, name: str, seconds: float) -> None:
        """Node `name`'s machine dies now, unasked (its kubelet and daemons with it), and boots
        `seconds` later; its Node keeps showing Ready for the node monitor's grace period."""
        self.cluster.power_loss(name, down_for=seconds)

    def set_boot_failure(self, *, name: str, fails: bool = True) -> None:
        if fails:
            self.cluster.boot_failures.add(name)
        else:
            self.cluster.boot_failures.discard(name)

    def break_after_reboot(self, *, namespace: str, pod_prefix: str) -> None:
        self.cluster.broken.append((namespace, pod_prefix))

    def add_pdb(
        self,
        *,
        name: str,
        selector: Mapping[str, Any],
        namespace: str = "default",
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
    ) -> None:
        """A PodDisruptionBudget with any label selector (`matchLabels` / `matchExpressions`)."""
        self._create_pdb(
            name=name,
            selector=selector,
            namespace=namespace,
            min_available=min_available,
            max_unavailable=max_unavailable,
        )
        self.cluster.sync_pdbs(namespace)

    def _create_pdb(
        self,
        *,
        name: str,
        selector: Mapping[str, Any],
        namespace: str,
        min_available: int | str | None,
        max_unavailable: int | str | None,
    ) -> None:
        spec: JsonObj = {"selector": dict(selector)}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        body = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.registry.create(
            BY_GROUP_RESOURCE[("policy", "poddisruptionbudgets")], namespace, body, client=SETUP
        )

    def set_pod_ready(self, *, namespace: str, name: str, ready: bool) -> None:
        """The kubelet reports the pod's readiness changed (a readiness probe failing or passing)."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise KeyError(f"pod {namespace}/{name} does not exist")
        self.cluster.set_pod_ready(pod, ready=ready)

    def fail_image_pulls(self, *, namespace: str, pod_prefix: str) -> None:
        """Every pod whose name starts with `pod_prefix` and starts from now on (a replacement
        scheduled elsewhere, a pod on a node coming up) stays not Ready in ImagePullBackOff."""
        self.cluster.image_pull_failures.append((namespace, pod_prefix))

    def repair_pod(self, *, namespace: str, pod_prefix: str) -> None:
        self.cluster.repair(namespace, pod_prefix)

    def set_node_ready(self, *, name: str, ready: bool) -> None:
        self.cluster.set_node_ready(name, ready=ready)

    def set_node_boot_id(self, *, name: str, boot_id: str) -> None:
        """The kubelet posts `status.nodeInfo.bootID` (late, or empty: a kubelet that reports none)."""
        self.cluster.set_node_boot_id(name, boot_id=boot_id)
