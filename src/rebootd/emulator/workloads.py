"""The workload controllers a drain depends on: Deployment, ReplicaSet, StatefulSet, DaemonSet, and
the garbage collector for their dependents.

Rule: each reconcile reads the owner and its pods (indexed by controller uid) and writes through the
`Registry` under the controller's own client name: missing replicas are created (a ReplicaSet pod
with a new random suffix as soon as the old one terminates, a StatefulSet pod with the same name
once the old one is gone, a DaemonSet pod on every matching node) and the owner's status follows
its pods. Scheduling and starting pods is the cluster's kubelet/scheduler's business.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from rebootd.emulator.errors import JsonObj
from rebootd.emulator.objects import controller_ref, deep_copy, is_pod_ready
from rebootd.emulator.registry import DeleteOptions, Registry
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.emulator.store import Store

PODS = BY_GROUP_RESOURCE[("", "pods")]
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
DAEMONSET_TOLERATIONS = (
    "node.kubernetes.io/unschedulable",
    UNREACHABLE_TAINT,
    "node.kubernetes.io/not-ready",
)


class WorkloadControllers:
    def __init__(
        self, *, registry: Registry, store: Store, rng: random.Random, soon: Callable[[], None]
    ) -> None:
        self.registry = registry
        self.store = store
        self.rng = rng
        self._soon = soon
        self.dirty: set[tuple[str, str, str]] = set()  # (kind, namespace, name)

    def mark(self, kind: str, namespace: str, name: str) -> None:
        """Reconcile this owner on the next flush."""
        self.dirty.add((kind, namespace, name))
        self._soon()

    def flush(self) -> None:
        owners, self.dirty = self.dirty, set()
        for kind, namespace, name in sorted(owners):
            self.reconcile(kind, namespace, name)

    def owned_pods(self, owner: JsonObj) -> list[JsonObj]:
        return self.store.pods_of_owner(owner["metadata"].get("uid", ""))

    def reconcile_now(self, owner: JsonObj) -> None:
        """Reconcile a workload object synchronously (set-up helpers)."""
        self.reconcile(owner["kind"], owner["metadata"]["namespace"], owner["metadata"]["name"])

    def reconcile(self, kind: str, namespace: str, name: str) -> None:
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
            self.mark("Deployment", rs["metadata"]["namespace"], ref["name"])

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
                for key in DAEMONSET_TOLERATIONS:
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

    def collect_dependents(self, uid: str) -> None:
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


def _drop_zero(status: JsonObj, *, keep: tuple[str, ...]) -> JsonObj:
    """Workload status integers are omitempty in JSON."""
    return {k: v for k, v in status.items() if v or k in keep}


__all__ = ["CONTROLLER_CLIENT", "WORKLOAD_STORAGE", "WorkloadControllers"]
