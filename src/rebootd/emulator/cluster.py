"""The simulated cluster behind the API: kubelet, scheduler, node lifecycle and boots, the namespace
controller, and the routing of store events to the workload (`workloads`) and disruption
(`disruption`) controllers.

Rule: behaviours react to store events (never to HTTP) and write through the `Registry` under
their own client names ("kubelet", "replicaset-controller", ...), so their writes are real API
writes with watch events and history. Reactions are deferred to the next loop iteration (or a
timer) and coalesced per object, so a burst of changes costs one reconcile, and a listener never
writes from inside a dispatch. Every timer is tracked and cancelled by `close()`.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable

import structlog

from rebootd.clock import Clock
from rebootd.emulator.disruption import PDBS, DisruptionController
from rebootd.emulator.errors import ApiError, JsonObj
from rebootd.emulator.objects import (
    controller_ref,
    is_node_ready,
    is_pod_ready,
    set_condition,
)
from rebootd.emulator.registry import Registry
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.emulator.store import ADDED, DELETED, Store, StoreEvent
from rebootd.emulator.timing import EmulatorTiming
from rebootd.emulator.workloads import UNREACHABLE_TAINT, WORKLOAD_STORAGE, WorkloadControllers

log = structlog.get_logger("rebootd.emulator")

PODS = BY_GROUP_RESOURCE[("", "pods")]
NODES = BY_GROUP_RESOURCE[("", "nodes")]
EVENTS = BY_GROUP_RESOURCE[("", "events")]
NAMESPACES = BY_GROUP_RESOURCE[("", "namespaces")]
KUBELET = "kubelet"
HEARTBEATS = "leases.coordination.k8s.io"
HEARTBEAT_NAMESPACE = "kube-node-lease"


def _tolerates(pod: JsonObj, taint: JsonObj) -> bool:
    for toleration in (pod.get("spec") or {}).get("tolerations") or []:
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration.get("key") == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
            "value", ""
        ):
            return True
    return False


class Cluster:
    def __init__(
        self, *, registry: Registry, store: Store, clock: Clock, timing: EmulatorTiming, rng: random.Random
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.timing = timing
        self.rng = rng
        self.boot_failures: set[str] = set()
        self.broken: list[tuple[str, str]] = []  # (namespace, pod name prefix) that crash after a reboot
        self.rebooting: set[str] = set()  # machines down (the Node may still show Ready: grace)
        self.boot_ids: dict[str, str] = {}  # the machine's own boot id (/proc/.../boot_id), once rebooted
        self.machine_listeners: list[
            Callable[[str, bool], None]
        ] = []  # (node, up) when a machine goes down / up
        self._generation: dict[str, int] = {}  # reboots per machine, so a stale timer does nothing
        self._posted: set[str] = set()  # machines whose kubelet posted status since their last boot
        # (namespace, pod name prefix) whose image cannot be pulled: every start of such a pod fails
        self.image_pull_failures: list[tuple[str, str]] = []
        # Nodes whose kubelet is an API client (rebootd.sim.kubelet): their pods are started and
        # their graceful deletes finished by that kubelet, never here.
        self.api_kubelets: set[str] = set()
        self._handles: set[asyncio.TimerHandle] = set()
        self._deferred: list[tuple[float, Callable[[], None]]] = []
        self._flush_scheduled = False
        self.workloads = WorkloadControllers(registry=registry, store=store, rng=rng, soon=self._soon)
        self.disruption = DisruptionController(
            registry=registry, store=store, clock=clock, timing=timing, later=self.later, soon=self._soon
        )
        self._unscheduled: set[tuple[str, str]] = set()
        self._pending_deletions: set[tuple[str, str]] = set()
        self._ip_counter = 0
        self._closed = False
        store.add_listener(self._on_event)

    # -- timers ----------------------------------------------------------------------------------

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` after `delay` seconds on the running loop (or once started)."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._deferred.append((delay, callback))
            return
        handle: asyncio.TimerHandle

        def run() -> None:
            self._handles.discard(handle)
            if self._closed:
                return
            try:
                callback()
            except ApiError as exc:
                log.debug("rebootd.emulator.behaviour_conflict", error=exc.message)

        handle = loop.call_later(max(0.0, delay), run)
        self._handles.add(handle)

    def start(self) -> None:
        deferred, self._deferred = self._deferred, []
        for delay, callback in deferred:
            self.later(delay, callback)
        if self.timing.heartbeat_interval > 0:
            self.later(self.timing.heartbeat_interval, self._heartbeat)

    # -- the kubelets' heartbeats ------------------------------------------------------------------

    def kubelet_alive(self, name: str) -> bool:
        """The node's kubelet is running: its machine is up and, after a reboot, it has posted."""
        return self.machine_up(name) and (name not in self._generation or name in self._posted)

    def _heartbeat(self) -> None:
        """Every live kubelet renews its Lease in kube-node-lease (renewTime); a dead machine's
        Lease stands still, whatever its Node's Ready condition still says."""
        now = self.registry.now_micro()
        for lease in list(self.store.iter_objects(HEARTBEATS, namespace=HEARTBEAT_NAMESPACE)):
            name = lease["metadata"]["name"]
            if name in self.api_kubelets:
                continue  # that node's kubelet is an API client: it renews its own Lease
            if self.store.get("nodes", "", name) is None or not self.kubelet_alive(name):
                continue
            renewed = dict(lease, spec=dict(lease.get("spec") or {}, renewTime=now))
            renewed["metadata"] = dict(lease["metadata"])
            self.registry.put_internal(HEARTBEATS, renewed, lease, client=KUBELET, verb="update")
        self.later(self.timing.heartbeat_interval, self._heartbeat)

    def close(self) -> None:
        self._closed = True
        for handle in list(self._handles):
            handle.cancel()
        self._handles.clear()
        self._deferred.clear()

    def _soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.later(0.0, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.workloads.flush()
        if self._unscheduled:
            self._schedule_pending()
        self.disruption.flush()

    # -- event routing ---------------------------------------------------------------------------

    def _on_event(self, event: StoreEvent) -> None:
        if self._closed:
            return
        obj = event.obj
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        if event.storage == "pods":
            self._on_pod(event)
            self.disruption.note_pod(event)
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") in WORKLOAD_STORAGE:
                self.workloads.mark(ref["kind"], ns, ref["name"])
            self._soon()
        elif event.storage == PDBS:
            self.disruption.note_budget(event)
        elif event.storage in WORKLOAD_STORAGE.values():
            if event.type == DELETED:
                uid = meta.get("uid", "")
                self.later(0.0, lambda: self.workloads.collect_dependents(uid))
            else:
                self.workloads.mark(obj["kind"], ns, meta["name"])
        elif event.storage == "nodes":
            if event.type == DELETED:
                self.later(0.0, lambda: self._node_removed(meta["name"]))
                return
            if self._unscheduled or event.type == ADDED:
                self._soon()
            old_labels = ((event.old or {}).get("metadata") or {}).get("labels")
            if event.type == ADDED or old_labels != meta.get("labels"):  # DaemonSet node selection changed
                for ds in self.store.iter_objects("daemonsets.apps"):
                    self.workloads.mark("DaemonSet", ds["metadata"]["namespace"], ds["metadata"]["name"])
                self._soon()
        elif event.storage == "namespaces" and event.type != DELETED and meta.get("deletionTimestamp"):
            name = meta["name"]
            self.later(0.05, lambda: self._purge_namespace(name))

    def _on_pod(self, event: StoreEvent) -> None:
        pod = event.obj
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        if event.type == DELETED:
            self._unscheduled.discard(key)
            self._pending_deletions.discard(key)
            return
        if (pod.get("spec") or {}).get("nodeName") in self.api_kubelets:
            return
        old_meta = (event.old or {}).get("metadata") or {}
        if meta.get("deletionTimestamp") and (
            not old_meta.get("deletionTimestamp")
            or old_meta.get("deletionGracePeriodSeconds") != meta.get("deletionGracePeriodSeconds")
        ):
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            uid = meta.get("uid")
            self.later(grace * self.timing.grace_scale, lambda: self._finish_deletion(key, uid))
            return
        spec = pod.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        if not spec.get("nodeName"):
            if spec.get("schedulerName", "default-scheduler") == "default-scheduler":
                self._unscheduled.add(key)
                self._soon()
            return
        if event.type == ADDED and (pod.get("status") or {}).get("phase") == "Pending":
            uid = meta.get("uid")
            self.later(self.timing.pod_ready_delay, lambda: self._start_pod(key, uid, restarted=False))

    # -- kubelet ---------------------------------------------------------------------------------

    def _current_pod(self, key: tuple[str, str], uid: str | None) -> JsonObj | None:
        pod = self.store.get("pods", *key)
        if pod is None or (uid is not None and pod["metadata"].get("uid") != uid):
            return None
        return pod

    def _node_up(self, name: str) -> bool:
        node = self.store.get("nodes", "", name)
        return node is not None and is_node_ready(node) and name not in self.rebooting

    def _finish_deletion(self, key: tuple[str, str], uid: str | None) -> None:
        pod = self._current_pod(key, uid)
        if pod is None:
            return
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if node and not self._node_up(node):
            self._pending_deletions.add(key)  # kubelet is down: the pod stays Terminating
            return
        self.registry.finish_deletion(PODS, key[0], key[1], client=KUBELET)

    def next_pod_ip(self) -> str:
        self._ip_counter += 1
        n = self._ip_counter
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def running_status(
        self,
        pod: JsonObj,
        *,
        ready: bool,
        restarts: int = 0,
        broken: bool = False,
        waiting_reason: str = "CrashLoopBackOff",
    ) -> JsonObj:
        """The status kubelet reports for a started pod."""
        now = self.registry.now()
        status = dict(pod.get("status") or {})
        conditions = list(status.get("conditions") or [])
        for kind in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
            conditions = set_condition(conditions, kind=kind, status="True", now=now)
        for kind in ("ContainersReady", "Ready"):
            conditions = set_condition(conditions, kind=kind, status="True" if ready else "False", now=now)
        status["conditions"] = conditions
        status["phase"] = "Running"
        status.setdefault("podIP", self.next_pod_ip())
        status["podIPs"] = [{"ip": status["podIP"]}]
        status.setdefault("hostIP", self._node_ip((pod.get("spec") or {}).get("nodeName") or ""))
        status.setdefault("startTime", now)
        status.setdefault("qosClass", "BestEffort")
        previous = {c.get("name"): c for c in status.get("containerStatuses") or []}
        container_statuses = []
        for container in (pod.get("spec") or {}).get("containers") or []:
            name = container.get("name", "app")
            before = previous.get(name) or {}
            entry: JsonObj = {
                "name": name,
                "image": container.get("image", ""),
                "imageID": f"docker.io/library/{container.get('image', 'app')}",
                "containerID": before.get("containerID")
                if before.get("containerID") and not restarts
                else f"containerd://{self.rng.getrandbits(64):016x}",
                "ready": ready,
                "started": ready or not broken,
                "restartCount": int(before.get("restartCount", 0)) + restarts,
            }
            if broken:
                message = (
                    f"back-off 5m0s restarting failed container={name}"
                    if waiting_reason == "CrashLoopBackOff"
                    else f'Back-off pulling image "{container.get("image", "")}"'
                )
                entry["state"] = {"waiting": {"reason": waiting_reason, "message": message}}
                entry["started"] = False
            else:
                entry["state"] = {"running": {"startedAt": now}}
            if restarts:
                entry["lastState"] = {
                    "terminated": {
                        "exitCode": 255,
                        "reason": "Unknown",
                        "startedAt": status.get("startTime", now),
                        "finishedAt": now,
                    }
                }
            elif before.get("lastState"):
                entry["lastState"] = before["lastState"]
            container_statuses.append(entry)
        status["containerStatuses"] = container_statuses
        return status

    def _node_ip(self, node_name: str) -> str:
        node = self.store.get("nodes", "", node_name)
        for address in ((node or {}).get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address.get("address"))
        return ""

    def _is_broken(self, pod: JsonObj) -> bool:
        meta = pod["metadata"]
        return any(meta["namespace"] == ns and meta["name"].startswith(prefix) for ns, prefix in self.broken)

    def _image_pull_fails(self, pod: JsonObj) -> bool:
        meta = pod["metadata"]
        return any(
            meta["namespace"] == ns and meta["name"].startswith(prefix)
            for ns, prefix in self.image_pull_failures
        )

    def _start_pod(self, key: tuple[str, str], uid: str | None, *, restarted: bool) -> None:
        pod = self._current_pod(key, uid)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if not self._node_up(node):
            return  # started when the node boots
        broken = restarted and self._is_broken(pod)
        reason = "CrashLoopBackOff"
        if self._image_pull_fails(pod):
            broken, reason = True, "ImagePullBackOff"
        new = dict(pod)
        new["metadata"] = dict(pod["metadata"])
        new["status"] = self.running_status(pod, ready=not broken, broken=broken, waiting_reason=reason)
        self.registry.put_internal("pods", new, pod, client=KUBELET, verb="update")

    def set_pod_ready(self, pod: JsonObj, *, ready: bool, restarts: int = 0, broken: bool = False) -> JsonObj:
        new = dict(pod)
        new["metadata"] = dict(pod["metadata"])
        new["status"] = self.running_status(pod, ready=ready, restarts=restarts, broken=broken)
        return self.registry.put_internal("pods", new, pod, client=KUBELET, verb="update")

    # -- scheduler -------------------------------------------------------------------------------

    def schedulable_nodes(self, pod: JsonObj | None = None) -> list[JsonObj]:
        result = []
        for node in self.store.sorted_objects("nodes"):
            spec = node.get("spec") or {}
            if (
                spec.get("unschedulable")
                or not is_node_ready(node)
                or node["metadata"]["name"] in self.rebooting
            ):
                continue
            taints = [t for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
            if pod is not None and any(not _tolerates(pod, t) for t in taints):
                continue
            if pod is None and taints:
                continue
            selector = ((pod or {}).get("spec") or {}).get("nodeSelector") or {}
            labels = node["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            result.append(node)
        return result

    def pick_node(self, pod: JsonObj) -> str | None:
        """Least-loaded schedulable node (by pods of the same owner, then all pods); seeded ties."""
        candidates = self.schedulable_nodes(pod)
        if not candidates:
            return None
        ref = controller_ref(pod)
        owner_uid = ref.get("uid") if ref else None

        def load(node: JsonObj) -> tuple[int, int, float]:
            pods = self.store.pods_on_node(node["metadata"]["name"])
            same = sum(1 for p in pods if owner_uid and (controller_ref(p) or {}).get("uid") == owner_uid)
            return same, len(pods), self.rng.random()

        return str(min(candidates, key=load)["metadata"]["name"])

    def _schedule_pending(self) -> None:
        retry = False
        for key in sorted(self._unscheduled):
            pod = self.store.get("pods", *key)
            if (
                pod is None
                or (pod.get("spec") or {}).get("nodeName")
                or pod["metadata"].get("deletionTimestamp")
            ):
                self._unscheduled.discard(key)
                continue
            node = self.pick_node(pod)
            if node is None:
                retry = True
                continue
            self._unscheduled.discard(key)
            self.bind(pod, node)
        if retry:
            self.later(self.timing.scheduler_retry, self._soon)

    def bind(self, pod: JsonObj, node: str) -> JsonObj:
        new = dict(pod)
        new["metadata"] = dict(pod["metadata"])
        new["spec"] = dict(pod.get("spec") or {}, nodeName=node)
        status = dict(pod.get("status") or {})
        status["conditions"] = set_condition(
            list(status.get("conditions") or []), kind="PodScheduled", status="True", now=self.registry.now()
        )
        new["status"] = status
        stored = self.registry.put_internal("pods", new, pod, client="default-scheduler", verb="update")
        uid = stored["metadata"].get("uid")
        key = (stored["metadata"]["namespace"], stored["metadata"]["name"])
        self.later(self.timing.pod_ready_delay, lambda: self._start_pod(key, uid, restarted=False))
        return stored

    # -- workload controllers --------------------------------------------------------------------

    def pod_from_template(self, owner: JsonObj, *, name: str = "", generate_name: str = "") -> JsonObj:
        return self.workloads.pod_from_template(owner, name=name, generate_name=generate_name)

    def reconcile_now(self, owner: JsonObj) -> None:
        """Reconcile a workload object synchronously (set-up helpers)."""
        self.workloads.reconcile_now(owner)

    def _node_removed(self, name: str) -> None:
        for pod in self.store.pods_on_node(name):
            self.registry.finish_deletion(
                PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], client="pod-gc"
            )

    def _purge_namespace(self, name: str) -> None:
        for info in (PODS, BY_GROUP_RESOURCE[("coordination.k8s.io", "leases")], EVENTS):
            for obj in list(self.store.iter_objects(info.storage, name)):
                self.registry.finish_deletion(
                    info, name, obj["metadata"]["name"], client="namespace-controller"
                )
        for storage in (*WORKLOAD_STORAGE.values(), PDBS):
            for obj in list(self.store.iter_objects(storage, name)):
                self.store.remove(storage, name, obj["metadata"]["name"])
        self.registry.finish_deletion(NAMESPACES, "", name, client="namespace-controller")

    # -- disruption controller -------------------------------------------------------------------

    def sync_pdbs(self, namespace: str) -> None:
        """Recompute every PDB of `namespace` now (the disruption controller's sync)."""
        self.disruption.sync_pdbs(namespace)

    # -- nodes and boots -------------------------------------------------------------------------

    def event(
        self, *, node: JsonObj, reason: str, message: str, type_: str = "Normal", component: str = KUBELET
    ) -> None:
        name = node["metadata"]["name"]
        now = self.registry.now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{self.rng.getrandbits(64):016x}", "namespace": "default"},
            "involvedObject": {
                "kind": "Node",
                "name": name,
                "uid": node["metadata"].get("uid", name),
                "apiVersion": "v1",
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component, "host": name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": name,
            "eventTime": None,
        }
        if self.store.get("namespaces", "", "default") is not None:
            self.registry.create(EVENTS, "default", body, client=component)

    def _write_node(
        self,
        node: JsonObj,
        *,
        spec: JsonObj | None = None,
        status: JsonObj | None = None,
        client: str = KUBELET,
    ) -> JsonObj:
        new = dict(node)
        new["metadata"] = dict(node["metadata"])
        if spec is not None:
            new["spec"] = spec
        if status is not None:
            new["status"] = status
        return self.registry.put_internal("nodes", new, node, client=client, verb="update")

    def set_node_boot_id(self, name: str, *, boot_id: str) -> None:
        node = self.store.get("nodes", "", name)
        if node is None:
            raise KeyError(f"node {name!r} does not exist")
        status = dict(node.get("status") or {})
        status["nodeInfo"] = {**(status.get("nodeInfo") or {}), "bootID": boot_id}
        self._write_node(node, status=status)

    def set_node_ready(
        self, name: str, *, ready: bool, status: str | None = None, start_pods: bool = True
    ) -> JsonObj:
        node = self.store.get("nodes", "", name)
        if node is None:
            raise KeyError(f"node {name!r} does not exist")
        now = self.registry.now()
        node_status = dict(node.get("status") or {})
        if ready:
            value, reason, message = "True", "KubeletReady", "kubelet is posting ready status"
        elif status == "Unknown":
            value, reason, message = "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
        else:
            value, reason, message = "False", "KubeletNotReady", "container runtime is down"
        node_status["conditions"] = set_condition(
            list(node_status.get("conditions") or []),
            kind="Ready",
            status=value,
            now=now,
            reason=reason,
            message=message,
            heartbeat=True,
        )
        spec = dict(node.get("spec") or {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE_TAINT]
        if not ready:
            taints.append({"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now})
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
        was_ready = is_node_ready(node)
        stored = self._write_node(
            node, spec=spec, status=node_status, client="node-controller" if not ready else KUBELET
        )
        if was_ready != ready:
            self.registry.record(
                event="node_ready" if ready else "node_not_ready",
                client=KUBELET,
                verb="",
                kind="Node",
                namespace="",
                name=name,
                resource_version=stored["metadata"]["resourceVersion"],
            )
            if ready:
                self.event(node=stored, reason="NodeReady", message=f"Node {name} status is now: NodeReady")
            else:
                self.event(
                    node=stored,
                    reason="NodeNotReady",
                    message=f"Node {name} status is now: NodeNotReady",
                    component="node-controller",
                )
        if not ready:
            for pod in self.store.pods_on_node(name):
                if is_pod_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                    status_copy = dict(pod.get("status") or {})
                    status_copy["conditions"] = set_condition(
                        list(status_copy.get("conditions") or []), kind="Ready", status="False", now=now
                    )
                    status_copy["containerStatuses"] = [
                        dict(c, ready=False) for c in status_copy.get("containerStatuses") or []
                    ]
                    new = dict(pod, status=status_copy)
                    new["metadata"] = dict(pod["metadata"])
                    self.registry.put_internal("pods", new, pod, client="node-controller", verb="update")
        else:
            self._node_came_up(name, start_pods=start_pods)
        return stored

    def _node_came_up(self, name: str, *, start_pods: bool) -> None:
        for key in sorted(self._pending_deletions):
            pod = self.store.get("pods", *key)
            if pod is not None and (pod.get("spec") or {}).get("nodeName") == name:
                self._pending_deletions.discard(key)
                self.registry.finish_deletion(PODS, key[0], key[1], client=KUBELET)
        if not start_pods:
            self._soon()
            return
        for pod in self.store.pods_on_node(name):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            uid = pod["metadata"].get("uid")
            if not is_pod_ready(pod) and not self._is_broken(pod) and not self._image_pull_fails(pod):
                self.later(
                    self.timing.pod_ready_delay, functools.partial(self._start_pod, key, uid, restarted=False)
                )
        self._soon()

    def machine_boot_id(self, name: str) -> str:
        """The machine's own boot id (what its /proc/sys/kernel/random/boot_id reads): the Node's
        bootID until its first reboot here, then the boot id of its latest boot, which the Node
        shows only once the kubelet has posted its status."""
        known = self.boot_ids.get(name)
        if known is not None:
            return known
        node = self.store.get("nodes", "", name)
        return str((((node or {}).get("status") or {}).get("nodeInfo") or {}).get("bootID", ""))

    def machine_up(self, name: str) -> bool:
        """The machine is running (its processes can start), whatever its Node shows."""
        return name not in self.rebooting

    def _tell(self, name: str, up: bool) -> None:
        for listener in list(self.machine_listeners):
            listener(name, up)

    def reboot(self, name: str) -> None:
        self._go_down(name, event="reboot_started", down_for=self.timing.boot_seconds)

    def power_loss(self, name: str, *, down_for: float) -> None:
        """The machine dies without anyone asking (power, a kernel panic) and boots `down_for`
        seconds later: recorded as `power_lost`, not as a reboot."""
        self._go_down(name, event="power_lost", down_for=down_for)

    def _go_down(self, name: str, *, event: str, down_for: float) -> None:
        node = self.store.get("nodes", "", name)
        if node is None:
            raise KeyError(f"node {name!r} does not exist")
        boot_id = ((node.get("status") or {}).get("nodeInfo") or {}).get("bootID", "")
        self.rebooting.add(name)
        generation = self._generation.get(name, 0) + 1
        self._generation[name] = generation
        self._posted.discard(name)
        self.registry.record(
            event=event,
            client=KUBELET,
            verb="",
            kind="Node",
            namespace="",
            name=name,
            resource_version=node["metadata"]["resourceVersion"],
            detail=boot_id,
        )
        self._tell(name, False)
        grace = self.timing.node_monitor_grace
        if grace > 0:
            self.later(grace, lambda: self._grace_passed(name, generation))
        else:
            self.set_node_ready(name, ready=False, status="Unknown")
        self.later(down_for, lambda: self._boot_complete(name, generation))

    def _grace_passed(self, name: str, generation: int) -> None:
        """The node monitor's grace period ended with no status from the rebooted kubelet."""
        if self._generation.get(name) != generation or name in self._posted:
            return
        if self.store.get("nodes", "", name) is not None:
            self.set_node_ready(name, ready=False, status="Unknown")

    def _boot_complete(self, name: str, generation: int | None = None) -> None:
        if generation is not None and self._generation.get(name) != generation:
            return
        node = self.store.get("nodes", "", name)
        if node is None:
            self.rebooting.discard(name)
            return
        if name in self.boot_failures:
            return  # never comes back; stays NotReady
        self.boot_ids[name] = str(self.registry.new_uid())
        self.rebooting.discard(name)
        self._tell(name, True)
        delay = self.timing.kubelet_post_delay
        if delay > 0:
            # The machine is up (its daemon restarts) but its kubelet has not posted yet.
            self.event(node=node, reason="Starting", message="Starting kubelet.")
            self.later(delay, lambda: self._post_status(name, generation=self._generation.get(name, 0)))
        else:
            self._post_status(name, generation=self._generation.get(name, 0), starting=True)

    def _post_status(self, name: str, *, generation: int, starting: bool = False) -> None:
        """The rebooted kubelet posts its status: the new bootID, then Ready; pods restart."""
        if self._generation.get(name, 0) != generation or name in self.rebooting:
            return
        node = self.store.get("nodes", "", name)
        if node is None:
            return
        self._posted.add(name)
        status = dict(node.get("status") or {})
        info = dict(status.get("nodeInfo") or {})
        info["bootID"] = self.machine_boot_id(name)
        status["nodeInfo"] = info
        node = self._write_node(node, status=status)
        if starting:
            self.event(node=node, reason="Starting", message="Starting kubelet.")
        self.event(
            node=node,
            reason="Rebooted",
            message=f"Node {name} has been rebooted, boot id: {info['bootID']}",
            type_="Warning",
        )
        for key in sorted(self._pending_deletions):
            pod = self.store.get("pods", *key)
            if pod is not None and (pod.get("spec") or {}).get("nodeName") == name:
                self._pending_deletions.discard(key)
                self.registry.finish_deletion(PODS, key[0], key[1], client=KUBELET)
        # containers restart: restartCount + 1, not Ready until pod_ready_delay (or never, if broken)
        restarted: list[tuple[tuple[str, str], str | None]] = []
        for pod in self.store.pods_on_node(name):
            if (
                pod["metadata"].get("deletionTimestamp")
                or (pod.get("status") or {}).get("phase") != "Running"
            ):
                continue
            self.set_pod_ready(pod, ready=False, restarts=1)
            restarted.append(
                ((pod["metadata"]["namespace"], pod["metadata"]["name"]), pod["metadata"].get("uid"))
            )
        stale_ready = is_node_ready(node)  # a reboot within the grace period: never shown NotReady
        stored = self.set_node_ready(name, ready=True, start_pods=False)  # restarted pods start below
        if stale_ready:
            # The kubelet's first Ready of the new boot: the reboot ends here in the history too.
            self.registry.record(
                event="node_ready",
                client=KUBELET,
                verb="",
                kind="Node",
                namespace="",
                name=name,
                resource_version=stored["metadata"]["resourceVersion"],
            )
        for key, uid in restarted:
            self.later(
                self.timing.pod_ready_delay, functools.partial(self._start_pod, key, uid, restarted=True)
            )

    def repair(self, namespace: str, prefix: str) -> None:
        self.broken = [(ns, p) for ns, p in self.broken if not (ns == namespace and p == prefix)]
        self.image_pull_failures = [
            (ns, p) for ns, p in self.image_pull_failures if not (ns == namespace and p == prefix)
        ]
        for pod in list(self.store.iter_objects("pods", namespace)):
            if pod["metadata"]["name"].startswith(prefix) and not is_pod_ready(pod):
                node = (pod.get("spec") or {}).get("nodeName") or ""
                if node and self._node_up(node) and not pod["metadata"].get("deletionTimestamp"):
                    self.set_pod_ready(pod, ready=True)


__all__ = ["Cluster"]
