"""The simulated cluster behind the API: kubelet, scheduler, workload, disruption, namespace and
garbage-collection controllers, and node boots.

Rule: behaviours react to store events (never to HTTP) and write through the `Registry` under
their own client names ("kubelet", "replicaset-controller", ...), so their writes are real API
writes with watch events and history. Reactions are deferred to the next loop iteration (or a
timer) and coalesced per object, so a burst of changes costs one reconcile, and a listener never
writes from inside a dispatch. Every timer is tracked and cancelled by `close()`.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from rebootd.clock import Clock
from rebootd.selectors import LabelSelector, SelectorError, label_selector_from_object
from rebootd.sim.errors import ApiError, JsonObj
from rebootd.sim.objects import (
    condition,
    controller_ref,
    deep_copy,
    is_node_ready,
    is_pod_ready,
    parse_time,
    set_condition,
)
from rebootd.sim.registry import DeleteOptions, Registry
from rebootd.sim.resources import BY_GROUP_RESOURCE
from rebootd.sim.store import ADDED, DELETED, Store, StoreEvent
from rebootd.sim.timing import EmulatorTiming

log = structlog.get_logger("rebootd.sim")

PODS = BY_GROUP_RESOURCE[("", "pods")]
NODES = BY_GROUP_RESOURCE[("", "nodes")]
EVENTS = BY_GROUP_RESOURCE[("", "events")]
NAMESPACES = BY_GROUP_RESOURCE[("", "namespaces")]
PDBS = "poddisruptionbudgets.policy"
WORKLOAD_STORAGE = {
    "ReplicaSet": "replicasets.apps",
    "StatefulSet": "statefulsets.apps",
    "DaemonSet": "daemonsets.apps",
    "Deployment": "deployments.apps",
}
CONTROLLER_CLIENT = {
    "ReplicaSet": "replicaset-controller",
    "StatefulSet": "statefulset-controller",
    "DaemonSet": "daemonset-controller",
    "Deployment": "deployment-controller",
}
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
# a PDB's cached membership: ((uid, generation), selector or None when invalid, member pod keys)
_Membership = tuple[tuple[str, int], LabelSelector | None, set[tuple[str, str]]]
KUBELET = "kubelet"


def _int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        percent = int(value[:-1])
        scaled = percent * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


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
        self.rebooting: set[str] = set()
        self._handles: set[asyncio.TimerHandle] = set()
        self._deferred: list[tuple[float, Callable[[], None]]] = []
        self._dirty_pdbs: set[tuple[str, str]] = set()  # (namespace, name)
        # per PDB: ((uid, generation), selector or None when invalid, member pod keys), kept up to
        # date from pod events so a recompute never scans a namespace's pods
        self._pdb_members: dict[tuple[str, str], _Membership] = {}
        self._dirty_owners: set[tuple[str, str, str]] = set()  # (kind, namespace, name)
        self._flush_scheduled = False
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
                log.debug("rebootd.sim.behaviour_conflict", error=exc.message)

        handle = loop.call_later(max(0.0, delay), run)
        self._handles.add(handle)

    def start(self) -> None:
        deferred, self._deferred = self._deferred, []
        for delay, callback in deferred:
            self.later(delay, callback)

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
        owners, self._dirty_owners = self._dirty_owners, set()
        for kind, namespace, name in sorted(owners):
            self._reconcile(kind, namespace, name)
        if self._unscheduled:
            self._schedule_pending()
        dirty, self._dirty_pdbs = self._dirty_pdbs, set()
        for namespace, name in sorted(dirty):
            pdb = self.store.get(PDBS, namespace, name)
            if pdb is None:
                self._pdb_members.pop((namespace, name), None)
            else:
                self._sync_pdb(pdb)

    # -- event routing ---------------------------------------------------------------------------

    def _on_event(self, event: StoreEvent) -> None:
        if self._closed:
            return
        obj = event.obj
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        if event.storage == "pods":
            self._on_pod(event)
            self._note_pod_for_pdbs(event)
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") in WORKLOAD_STORAGE:
                self._dirty_owners.add((ref["kind"], ns, ref["name"]))
            self._soon()
        elif event.storage == PDBS and event.type != DELETED:
            status = obj.get("status") or {}
            if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
                self._dirty_pdbs.add((ns, meta["name"]))
                self._soon()
        elif event.storage in WORKLOAD_STORAGE.values():
            kind = obj["kind"]
            if event.type == DELETED:
                self.later(0.0, lambda: self._collect_dependents(meta.get("uid", "")))
            else:
                self._dirty_owners.add((kind, ns, meta["name"]))
                self._soon()
        elif event.storage == "nodes":
            if event.type == DELETED:
                self.later(0.0, lambda: self._node_removed(meta["name"]))
                return
            if self._unscheduled or event.type == ADDED:
                self._soon()
            old_labels = ((event.old or {}).get("metadata") or {}).get("labels")
            if event.type == ADDED or old_labels != meta.get("labels"):  # DaemonSet node selection changed
                for ds in self.store.iter_objects("daemonsets.apps"):
                    self._dirty_owners.add(("DaemonSet", ds["metadata"]["namespace"], ds["metadata"]["name"]))
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
        self, pod: JsonObj, *, ready: bool, restarts: int = 0, broken: bool = False
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
                entry["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 5m0s restarting failed container={name}",
                    }
                }
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

    def _start_pod(self, key: tuple[str, str], uid: str | None, *, restarted: bool) -> None:
        pod = self._current_pod(key, uid)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if not self._node_up(node):
            return  # started when the node boots
        broken = restarted and self._is_broken(pod)
        new = dict(pod)
        new["metadata"] = dict(pod["metadata"])
        new["status"] = self.running_status(pod, ready=not broken, broken=broken)
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

    def owned_pods(self, owner: JsonObj) -> list[JsonObj]:
        return self.store.pods_of_owner(owner["metadata"].get("uid", ""))

    def reconcile_now(self, owner: JsonObj) -> None:
        """Reconcile a workload object synchronously (set-up helpers)."""
        self._reconcile(owner["kind"], owner["metadata"]["namespace"], owner["metadata"]["name"])

    def _reconcile(self, kind: str, namespace: str, name: str) -> None:
        owner = self.store.get(WORKLOAD_STORAGE[kind], namespace, name)
        if owner is None or owner["metadata"].get("deletionTimestamp"):
            return
        if kind == "Deployment":
            self._reconcile_deployment(owner)
        elif kind == "ReplicaSet":
            self._reconcile_replicaset(owner)
        elif kind == "StatefulSet":
            self._reconcile_statefulset(owner)
        else:
            self._reconcile_daemonset(owner)

    def pod_from_template(self, owner: JsonObj, *, name: str = "", generate_name: str = "") -> JsonObj:
        template = deep_copy(((owner.get("spec") or {}).get("template")) or {})
        meta = template.get("metadata") or {}
        metadata: JsonObj = {"namespace": owner["metadata"]["namespace"]}
        if name:
            metadata["name"] = name
        else:
            metadata["generateName"] = generate_name
        metadata["labels"] = dict(meta.get("labels") or {})
        if meta.get("annotations"):
            metadata["annotations"] = dict(meta["annotations"])
        metadata["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        spec = template.get("spec") or {
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
        }
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    def _create_pod(self, owner: JsonObj, body: JsonObj, *, node: str | None = None) -> JsonObj:
        if node is not None:
            body["spec"]["nodeName"] = node
        client = CONTROLLER_CLIENT.get(owner["kind"], "controller")
        return self.registry.create(PODS, owner["metadata"]["namespace"], body, client=client)

    def _reconcile_deployment(self, deployment: JsonObj) -> None:
        uid = deployment["metadata"]["uid"]
        ns = deployment["metadata"]["namespace"]
        sets = [
            rs
            for rs in self.store.iter_objects("replicasets.apps", ns)
            if (controller_ref(rs) or {}).get("uid") == uid
        ]
        replicas = int((deployment.get("spec") or {}).get("replicas", 1))
        if not sets:
            template_hash = f"{self.rng.getrandbits(40):010x}"[:10]
            template = deep_copy((deployment.get("spec") or {}).get("template") or {})
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
            selector = deep_copy((deployment.get("spec") or {}).get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
            body = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{deployment['metadata']['name']}-{template_hash}",
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": deployment["metadata"]["name"],
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            }
            self.registry.create(
                BY_GROUP_RESOURCE[("apps", "replicasets")], ns, body, client="deployment-controller"
            )
            return
        for rs in sets:
            if int((rs.get("spec") or {}).get("replicas", 1)) != replicas:
                new = dict(rs)
                new["metadata"] = dict(
                    rs["metadata"], generation=int(rs["metadata"].get("generation", 1)) + 1
                )
                new["spec"] = dict(rs["spec"], replicas=replicas)
                self.registry.put_internal(
                    "replicasets.apps", new, rs, client="deployment-controller", verb="update"
                )
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in sets)
        total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in sets)
        status: JsonObj = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": total,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if total - ready:
            status["unavailableReplicas"] = total - ready
        self._write_status(deployment, _drop_zero(status, keep=("observedGeneration",)))

    def _write_status(self, owner: JsonObj, status: JsonObj) -> None:
        if owner.get("status") == status:
            return
        new = dict(owner, status=status)
        new["metadata"] = dict(owner["metadata"])
        storage = WORKLOAD_STORAGE[owner["kind"]]
        self.registry.put_internal(
            storage, new, owner, client=CONTROLLER_CLIENT[owner["kind"]], verb="update"
        )

    def _active(self, pods: Iterable[JsonObj]) -> list[JsonObj]:
        return [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]

    def _reconcile_replicaset(self, rs: JsonObj) -> None:
        replicas = int((rs.get("spec") or {}).get("replicas", 1))
        pods = self.owned_pods(rs)
        active = self._active(pods)
        base = rs["metadata"]["name"] + "-"
        for _ in range(replicas - len(active)):
            body = self.pod_from_template(rs, generate_name=base)
            self._create_pod(rs, body)
        if len(active) > replicas:
            for pod in sorted(active, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)[
                : len(active) - replicas
            ]:
                self.registry.delete(
                    PODS,
                    pod["metadata"]["namespace"],
                    pod["metadata"]["name"],
                    DeleteOptions(),
                    client="replicaset-controller",
                )
        pods = self._active(self.owned_pods(rs))
        ready = sum(1 for p in pods if is_pod_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        self._write_status(rs, _drop_zero(status, keep=("replicas", "observedGeneration")))
        ref = controller_ref(rs)
        if ref is not None and ref.get("kind") == "Deployment":
            self._dirty_owners.add(("Deployment", rs["metadata"]["namespace"], ref["name"]))
            self._soon()

    def _reconcile_statefulset(self, sts: JsonObj) -> None:
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        ns = sts["metadata"]["namespace"]
        name = sts["metadata"]["name"]
        for ordinal in range(replicas):
            pod_name = f"{name}-{ordinal}"
            if self.store.get("pods", ns, pod_name) is None:
                body = self.pod_from_template(sts, name=pod_name)
                body["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = pod_name
                body["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = str(ordinal)
                self._create_pod(sts, body)
        pods = self._active(self.owned_pods(sts))
        ready = sum(1 for p in pods if is_pod_ready(p))
        status = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "currentReplicas": len(pods),
            "updatedReplicas": len(pods),
            "availableReplicas": ready,
        }
        self._write_status(
            sts, _drop_zero(status, keep=("replicas", "observedGeneration", "availableReplicas"))
        )

    def _reconcile_daemonset(self, ds: JsonObj) -> None:
        pods = self._active(self.owned_pods(ds))
        by_node = {(p.get("spec") or {}).get("nodeName"): p for p in pods}
        template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        selector = template_spec.get("nodeSelector") or {}
        targets = []
        for node in self.store.sorted_objects("nodes"):
            labels = node["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            targets.append(node["metadata"]["name"])
            if node["metadata"]["name"] not in by_node:
                body = self.pod_from_template(ds, generate_name=ds["metadata"]["name"] + "-")
                tolerations = body["spec"].setdefault("tolerations", [])
                for key in (
                    "node.kubernetes.io/unschedulable",
                    UNREACHABLE_TAINT,
                    "node.kubernetes.io/not-ready",
                ):
                    tolerations.append({"key": key, "operator": "Exists", "effect": "NoSchedule"})
                self._create_pod(ds, body, node=node["metadata"]["name"])
        pods = self._active(self.owned_pods(ds))
        ready = sum(1 for p in pods if is_pod_ready(p))
        status = {
            "currentNumberScheduled": len(pods),
            "numberMisscheduled": 0,
            "desiredNumberScheduled": len(targets),
            "numberReady": ready,
            "observedGeneration": ds["metadata"].get("generation", 1),
            "updatedNumberScheduled": len(pods),
            "numberAvailable": ready,
        }
        if len(targets) - ready > 0:
            status["numberUnavailable"] = len(targets) - ready
        self._write_status(ds, status)

    def _collect_dependents(self, uid: str) -> None:
        """The garbage collector (background propagation) for deleted workload objects."""
        if not uid:
            return
        for storage in ("replicasets.apps", "pods"):
            info = BY_GROUP_RESOURCE[("apps", "replicasets")] if storage != "pods" else PODS
            for obj in list(self.store.iter_objects(storage)):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    self.registry.delete(
                        info,
                        obj["metadata"]["namespace"],
                        obj["metadata"]["name"],
                        DeleteOptions(),
                        client="generic-garbage-collector",
                    )

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

    def _expected_scale(self, pods: list[JsonObj]) -> int:
        seen: set[str] = set()
        total = 0
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                total += 1
                continue
            if ref["uid"] in seen:
                continue
            seen.add(ref["uid"])
            kind = ref.get("kind")
            ns = pod["metadata"]["namespace"]
            owner = (
                self.store.get(WORKLOAD_STORAGE.get(kind, ""), ns, ref["name"])
                if kind in WORKLOAD_STORAGE
                else None
            )
            if owner is None:
                total += 1
                continue
            if kind == "ReplicaSet":
                deploy_ref = controller_ref(owner)
                deployment = (
                    self.store.get("deployments.apps", ns, deploy_ref["name"])
                    if deploy_ref is not None and deploy_ref.get("kind") == "Deployment"
                    else None
                )
                source = deployment if deployment is not None else owner
                total += int((source.get("spec") or {}).get("replicas", 1))
            elif kind == "DaemonSet":
                total += int((owner.get("status") or {}).get("desiredNumberScheduled", 0)) or sum(
                    1 for p in pods if (controller_ref(p) or {}).get("uid") == ref["uid"]
                )
            else:
                total += int((owner.get("spec") or {}).get("replicas", 1))
        return total

    def _membership(self, pdb: JsonObj) -> tuple[LabelSelector | None, set[tuple[str, str]]]:
        meta = pdb["metadata"]
        key = (meta["namespace"], meta["name"])
        version = (str(meta.get("uid", "")), int(meta.get("generation", 1)))
        entry = self._pdb_members.get(key)
        if entry is None or entry[0] != version:
            try:
                spec_selector = (pdb.get("spec") or {}).get("selector")
                selector: LabelSelector | None = label_selector_from_object(spec_selector)
            except SelectorError:
                selector = None
            members = set()
            if selector is not None:
                for pod in self.store.iter_objects("pods", meta["namespace"]):
                    if selector.matches(pod["metadata"].get("labels") or {}):
                        members.add((meta["namespace"], pod["metadata"]["name"]))
            entry = (version, selector, members)
            self._pdb_members[key] = entry
        return entry[1], entry[2]

    def _note_pod_for_pdbs(self, event: StoreEvent) -> None:
        """Keep PDB memberships current and mark the budgets this pod change concerns."""
        meta = event.obj["metadata"]
        ns = meta["namespace"]
        pod_key = (ns, meta["name"])
        labels = meta.get("labels") or {}
        for pdb in self.store.iter_objects(PDBS, ns):
            selector, members = self._membership(pdb)
            was_member = pod_key in members
            if event.type != DELETED and selector is not None and selector.matches(labels):
                members.add(pod_key)
            else:
                members.discard(pod_key)
            if was_member or pod_key in members:
                self._dirty_pdbs.add((ns, pdb["metadata"]["name"]))

    def sync_pdbs(self, namespace: str) -> None:
        """Recompute every PDB of `namespace` now (the disruption controller's sync)."""
        for pdb in list(self.store.iter_objects(PDBS, namespace)):
            self._sync_pdb(pdb)

    def _sync_pdb(self, pdb: JsonObj) -> None:
        namespace = pdb["metadata"]["namespace"]
        now = self.clock.now()
        ttl = self.timing.disrupted_pod_ttl
        recheck: float | None = None
        spec = pdb.get("spec") or {}
        selector, members = self._membership(pdb)
        if selector is None:
            return
        matched = [p for p in (self.store.get("pods", *k) for k in sorted(members)) if p is not None]
        status = dict(pdb.get("status") or {})
        disrupted: dict[str, str] = {}
        for pod_name, stamp in (status.get("disruptedPods") or {}).items():
            pod = next((p for p in matched if p["metadata"]["name"] == pod_name), None)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                continue
            moment = parse_time(stamp)
            if moment is None:
                continue
            age = (now - moment).total_seconds()
            if age >= ttl:
                continue
            disrupted[pod_name] = stamp
            recheck = min(recheck if recheck is not None else ttl, ttl - age)
        healthy = sum(
            1
            for p in matched
            if not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["name"] not in disrupted
            and is_pod_ready(p)
        )
        if "maxUnavailable" in spec:
            expected = self._expected_scale(matched)
            max_unavailable = _int_or_percent(spec["maxUnavailable"], expected, round_up=True)
            desired = max(0, expected - max_unavailable)
        elif isinstance(spec.get("minAvailable"), str):
            expected = self._expected_scale(matched)
            desired = _int_or_percent(spec["minAvailable"], expected, round_up=True)
        else:
            expected = len(matched)
            desired = int(spec.get("minAvailable", 1) if "minAvailable" in spec else 1)
        allowed = max(0, healthy - desired) if expected > 0 else 0
        new_status: JsonObj = {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
        }
        if disrupted:
            new_status["disruptedPods"] = disrupted
        reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
        new_status["conditions"] = set_condition(
            list(status.get("conditions") or []),
            kind="DisruptionAllowed",
            status="True" if allowed > 0 else "False",
            now=self.registry.now(),
            reason=reason,
        )
        old_cond = condition(pdb, "DisruptionAllowed")
        if old_cond is not None and old_cond.get("status") == ("True" if allowed > 0 else "False"):
            new_status["conditions"] = status.get("conditions")
        if new_status != status:
            new = dict(pdb, status=new_status)
            new["metadata"] = dict(pdb["metadata"])
            self.registry.put_internal(PDBS, new, pdb, client="disruption-controller", verb="update")
        if recheck is not None:  # a disruptedPods entry expires then: recompute
            key = (namespace, pdb["metadata"]["name"])

            def expire() -> None:
                self._dirty_pdbs.add(key)
                self._soon()

            self.later(recheck + 0.01, expire)

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
            if not is_pod_ready(pod) and not self._is_broken(pod):
                self.later(
                    self.timing.pod_ready_delay, functools.partial(self._start_pod, key, uid, restarted=False)
                )
        self._soon()

    def reboot(self, name: str) -> None:
        node = self.store.get("nodes", "", name)
        if node is None:
            raise KeyError(f"node {name!r} does not exist")
        boot_id = ((node.get("status") or {}).get("nodeInfo") or {}).get("bootID", "")
        self.rebooting.add(name)
        self.registry.record(
            event="reboot_started",
            client=KUBELET,
            verb="",
            kind="Node",
            namespace="",
            name=name,
            resource_version=node["metadata"]["resourceVersion"],
            detail=boot_id,
        )
        self.set_node_ready(name, ready=False, status="Unknown")
        self.later(self.timing.boot_seconds, lambda: self._boot_complete(name))

    def _boot_complete(self, name: str) -> None:
        node = self.store.get("nodes", "", name)
        if node is None:
            self.rebooting.discard(name)
            return
        if name in self.boot_failures:
            return  # never comes back; stays NotReady
        status = dict(node.get("status") or {})
        info = dict(status.get("nodeInfo") or {})
        info["bootID"] = str(self.registry.new_uid())
        status["nodeInfo"] = info
        node = self._write_node(node, status=status)
        self.rebooting.discard(name)
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
        self.set_node_ready(name, ready=True, start_pods=False)  # restarted pods start below
        for key, uid in restarted:
            self.later(
                self.timing.pod_ready_delay, functools.partial(self._start_pod, key, uid, restarted=True)
            )

    def repair(self, namespace: str, prefix: str) -> None:
        self.broken = [(ns, p) for ns, p in self.broken if not (ns == namespace and p == prefix)]
        for pod in list(self.store.iter_objects("pods", namespace)):
            if pod["metadata"]["name"].startswith(prefix) and not is_pod_ready(pod):
                node = (pod.get("spec") or {}).get("nodeName") or ""
                if node and self._node_up(node) and not pod["metadata"].get("deletionTimestamp"):
                    self.set_pod_ready(pod, ready=True)


def _drop_zero(status: JsonObj, *, keep: tuple[str, ...]) -> JsonObj:
    """Workload status integers are omitempty in JSON."""
    return {k: v for k, v in status.items() if v or k in keep}


__all__ = ["Cluster"]
