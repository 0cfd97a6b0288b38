"""Cluster snapshots for `rebootd simulate --from-cluster / --from-snapshot`: only what a rollout
depends on, as versioned YAML, and their loading into the emulator.

Rule: a snapshot holds Nodes (name, topology and role labels, labels a DaemonSet selects on,
taints, unschedulable, Ready), Pods (namespace, name, node, labels, controller owner, phase,
ready, terminationGracePeriodSeconds, whether they use emptyDir / local storage, tolerations),
PodDisruptionBudgets (selector, minAvailable / maxUnavailable), the workload controllers
(Deployments, ReplicaSets, StatefulSets, DaemonSets: replicas, selector, template labels, grace
period; a DaemonSet's nodeSelector and tolerations) and, optionally, the literal `REBOOTD_*`
values of an installed rebootd DaemonSet. Nothing else: no env values of other containers, no
images, no Secrets or ConfigMaps (they are never read). `strip` is pure (API objects in, snapshot
out); `read_cluster` only lists (get/list through the operator commands' kubeconfig rules);
`populate` puts a snapshot into an emulator that has not started its rollout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rebootd.emulator.emulator import Emulator
from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.kube import Kube

API_VERSION = "rebootd.io/snapshot/v1"
KIND = "ClusterSnapshot"
# Node labels kept: where a node is (zones, regions), what it is (role, os, arch).
KEPT_LABEL_PREFIXES = (
    "topology.kubernetes.io/",
    "failure-domain.beta.kubernetes.io/",
    "node-role.kubernetes.io/",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
)
CONTROLLER_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")
# The tolerations of rebootd's own DaemonSet (deploy/kustomize/base) when no installed one is given.
DEFAULT_REBOOTD_TOLERATIONS: tuple[Mapping[str, str], ...] = ({"operator": "Exists", "effect": "NoSchedule"},)
REBOOTD_CONTAINER = "rebootd"


class SnapshotError(ValueError):
    """A snapshot file that is not a snapshot of this version (a usage error)."""


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot (the YAML's sections, each a list of plain mappings)."""

    nodes: list[dict[str, Any]]
    pods: list[dict[str, Any]] = field(default_factory=list)
    pdbs: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    rebootd: dict[str, Any] = field(default_factory=dict)  # {env: {...}, tolerations, nodeSelector}
    source: str = ""

    def to_yaml(self) -> str:
        doc: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "source": self.source,
            "nodes": self.nodes,
            "workloads": self.workloads,
            "pods": self.pods,
            "pdbs": self.pdbs,
        }
        if self.rebootd:
            doc["rebootd"] = self.rebootd
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)

    def rebootd_env(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.rebootd.get("env") or {}).items()}

    def rebootd_tolerations(self) -> list[Mapping[str, Any]]:
        given = self.rebootd.get("tolerations")
        return list(given) if given is not None else [dict(t) for t in DEFAULT_REBOOTD_TOLERATIONS]

    def rebootd_node_selector(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.rebootd.get("nodeSelector") or {}).items()}


def load(path: Path) -> Snapshot:
    """Read and check a snapshot file."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise SnapshotError(f"{path} is not a {KIND}")
    if doc.get("apiVersion") != API_VERSION:
        raise SnapshotError(f"{path}: apiVersion {doc.get('apiVersion')!r}, expected {API_VERSION}")
    nodes = doc.get("nodes") or []
    if not isinstance(nodes, list) or not nodes:
        raise SnapshotError(f"{path}: a snapshot needs at least one node")
    for key in ("nodes", "pods", "pdbs", "workloads"):
        items = doc.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("name") for i in items):
            raise SnapshotError(f"{path}: {key} must be a list of mappings with a name")
    return Snapshot(
        nodes=nodes,
        pods=list(doc.get("pods") or []),
        pdbs=list(doc.get("pdbs") or []),
        workloads=list(doc.get("workloads") or []),
        rebootd=dict(doc.get("rebootd") or {}),
        source=str(doc.get("source") or ""),
    )


# --- stripping API objects (pure) ---------------------------------------------------------------


def _kept_node_labels(labels: Mapping[str, str], selected: set[str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(KEPT_LABEL_PREFIXES) or k in selected}


def _ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _controller(meta: Mapping[str, Any]) -> dict[str, str] | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return {"kind": str(ref.get("kind")), "name": str(ref.get("name"))}
    return None


def _taint(t: Mapping[str, Any]) -> dict[str, str]:
    out = {"key": str(t.get("key", "")), "effect": str(t.get("effect", ""))}
    if t.get("value"):
        out["value"] = str(t["value"])
    return out


def _toleration(t: Mapping[str, Any]) -> dict[str, Any]:
    return {k: t[k] for k in ("key", "operator", "value", "effect") if t.get(k) is not None}


def _local_storage(spec: Mapping[str, Any]) -> bool:
    return any("emptyDir" in (v or {}) for v in spec.get("volumes") or [])


def _is_rebootd(ds: Mapping[str, Any]) -> bool:
    containers = ((ds.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return any(c.get("name") == REBOOTD_CONTAINER for c in containers)


def _rebootd_section(ds: Mapping[str, Any]) -> dict[str, Any]:
    """The installed rebootd's literal REBOOTD_* values (valueFrom and envFrom are not followed:
    they would mean reading ConfigMaps or Secrets), tolerations and nodeSelector."""
    pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    env: dict[str, str] = {}
    unread: list[str] = []  # where the rest of its settings come from (names only, never read)
    for container in pod_spec.get("containers") or []:
        if container.get("name") != REBOOTD_CONTAINER:
            continue
        for source in container.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if source.get(key):
                    unread.append(f"{kind} {source[key].get('name', '?')}")
        for var in container.get("env") or []:
            if "valueFrom" in var and str(var.get("name", "")).startswith("REBOOTD_"):
                unread.append(f"{var['name']} (valueFrom)")
            name = str(var.get("name", ""))
            if name.startswith("REBOOTD_") and "value" in var and "valueFrom" not in var:
                env[name] = str(var["value"])
    meta = ds.get("metadata") or {}
    return {
        "daemonset": f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        "env": env,
        "unread": unread,
        "tolerations": [_toleration(t) for t in pod_spec.get("tolerations") or []],
        "nodeSelector": dict(pod_spec.get("nodeSelector") or {}),
    }


def strip(
    *,
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    pdbs: Iterable[Mapping[str, Any]],
    controllers: Iterable[Mapping[str, Any]],
    source: str = "cluster",
) -> Snapshot:
    """API objects (as listed) -> a snapshot holding only what a rollout depends on. The rebootd
    DaemonSet (a container named `rebootd`) becomes the snapshot's `rebootd` section."""
    workloads: list[dict[str, Any]] = []
    rebootd: dict[str, Any] = {}
    selected_labels: set[str] = set()
    rebootd_ds: set[tuple[str, str]] = set()
    for obj in sorted(controllers, key=lambda o: (str(o.get("kind")), _key(o))):
        kind = str(obj.get("kind"))
        if kind not in CONTROLLER_KINDS:
            continue
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        if kind == "DaemonSet" and _is_rebootd(obj):
            rebootd = _rebootd_section(obj)
            rebootd_ds.add((str(meta.get("namespace")), str(meta.get("name"))))
            selected_labels |= set(rebootd.get("nodeSelector") or {})
            continue
        tpl = spec.get("template") or {}
        tpl_spec = tpl.get("spec") or {}
        item: dict[str, Any] = {
            "kind": kind,
            "namespace": meta.get("namespace", "default"),
            "name": meta.get("name"),
            "selector": spec.get("selector") or {},
            "templateLabels": dict((tpl.get("metadata") or {}).get("labels") or {}),
            "terminationGracePeriodSeconds": int(tpl_spec.get("terminationGracePeriodSeconds", 30)),
            "localStorage": _local_storage(tpl_spec),
        }
        if kind != "DaemonSet":
            item["replicas"] = int(spec.get("replicas", 1))
        else:
            item["nodeSelector"] = dict(tpl_spec.get("nodeSelector") or {})
            item["tolerations"] = [_toleration(t) for t in tpl_spec.get("tolerations") or []]
            selected_labels |= set(item["nodeSelector"])
        owner = _controller(meta)
        if owner is not None:
            item["owner"] = owner
        workloads.append(item)
    out_nodes = []
    for node in sorted(nodes, key=_key):
        meta, spec = node.get("metadata") or {}, node.get("spec") or {}
        out_nodes.append(
            {
                "name": meta.get("name"),
                "labels": _kept_node_labels(meta.get("labels") or {}, selected_labels),
                "taints": [_taint(t) for t in spec.get("taints") or [] if not _transient(t)],
                "unschedulable": bool(spec.get("unschedulable", False)),
                "ready": _ready(node),
            }
        )
    out_pods = []
    for pod in sorted(pods, key=_key):
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        owner = _controller(meta)
        if (
            owner is not None
            and owner["kind"] == "DaemonSet"
            and (meta.get("namespace"), owner["name"]) in {(ns, n) for ns, n in rebootd_ds}
        ):
            continue  # the installed rebootd's own pods: the simulation runs its own daemons
        item = {
            "namespace": meta.get("namespace", "default"),
            "name": meta.get("name"),
            "node": spec.get("nodeName"),
            "labels": dict(meta.get("labels") or {}),
            "phase": (pod.get("status") or {}).get("phase", "Pending"),
            "ready": _pod_ready(pod),
            "terminationGracePeriodSeconds": int(spec.get("terminationGracePeriodSeconds", 30)),
            "localStorage": _local_storage(spec),
        }
        if owner is not None:
            item["owner"] = owner
        if spec.get("tolerations"):
            item["tolerations"] = [_toleration(t) for t in spec["tolerations"]]
        out_pods.append(item)
    out_pdbs = []
    for pdb in sorted(pdbs, key=_key):
        meta, spec = pdb.get("metadata") or {}, pdb.get("spec") or {}
        item = {"namespace": meta.get("namespace", "default"), "name": meta.get("name")}
        item["selector"] = spec.get("selector") or {}
        for key in ("minAvailable", "maxUnavailable"):
            if spec.get(key) is not None:
                item[key] = spec[key]
        out_pdbs.append(item)
    return Snapshot(
        nodes=out_nodes, pods=out_pods, pdbs=out_pdbs, workloads=workloads, rebootd=rebootd, source=source
    )


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _transient(taint: Mapping[str, Any]) -> bool:
    """Taints the node lifecycle controller sets on its own (unreachable, not-ready, cordon)."""
    return str(taint.get("key", "")).startswith(
        ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready", "node.kubernetes.io/unschedulable")
    )


# --- reading a cluster (list only) --------------------------------------------------------------

LISTED_KINDS = ("deployments", "replicasets", "statefulsets", "daemonsets")


async def read_cluster(*, kube: Kube) -> Snapshot:
    """List Nodes, Pods, PDBs and the workload controllers (nothing else, no write) and strip them."""
    nodes = await kube.list_nodes()
    pods = await kube.list_pods()
    pdbs = await kube.list_pdbs()
    controllers: list[dict[str, Any]] = []
    for kind in LISTED_KINDS:
        items, _ = await kube.list_with_version(kind=kind)
        singular = {
            "deployments": "Deployment",
            "replicasets": "ReplicaSet",
            "statefulsets": "StatefulSet",
            "daemonsets": "DaemonSet",
        }[kind]
        controllers += [{**item, "kind": singular} for item in items]  # list items carry no kind
    return strip(nodes=nodes, pods=pods, pdbs=pdbs, controllers=controllers)


# --- loading into the emulator ------------------------------------------------------------------

_RESOURCE = {
    "Deployment": ("apps", "deployments"),
    "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
}
SETUP = "snapshot-loader"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def populate(emulator: Emulator, snapshot: Snapshot) -> None:
    """Create the snapshot's objects in `emulator` (before its rollout starts): nodes, controllers
    (owners first), pods on their nodes with their owners, PDBs; then let the controllers and the
    PDBs' status catch up."""
    for node in snapshot.nodes:
        emulator.add_node(
            name=str(node["name"]),
            labels={str(k): str(v) for k, v in (node.get("labels") or {}).items()},
            unschedulable=bool(node.get("unschedulable", False)),
            ready=bool(node.get("ready", True)),
            taints=list(node.get("taints") or []),
        )
    namespaces = sorted(
        {str(o.get("namespace", "default")) for o in (*snapshot.workloads, *snapshot.pods, *snapshot.pdbs)}
    )
    for ns in namespaces:
        emulator.add_namespace(name=ns)
    owners: list[dict[str, Any]] = []
    order = {kind: i for i, kind in enumerate(("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"))}
    for w in sorted(snapshot.workloads, key=lambda w: order.get(str(w.get("kind")), 9)):
        owners.append(_create_controller(emulator, w))
    for pod in snapshot.pods:
        owner = pod.get("owner") or {}
        if (
            owner
            and emulator.get_object(
                kind=str(owner.get("kind")),
                namespace=str(pod.get("namespace", "default")),
                name=str(owner.get("name")),
            )
            is None
        ):
            owner = {}  # an owner kind the snapshot does not hold (a Job, a custom resource): a bare pod
        emulator.add_pod(
            name=str(pod["name"]),
            namespace=str(pod.get("namespace", "default")),
            node=pod.get("node"),
            owner_kind=owner.get("kind"),
            owner_name=owner.get("name"),
            labels={str(k): str(v) for k, v in (pod.get("labels") or {}).items()},
            phase=str(pod.get("phase", "Running")),
            ready=bool(pod.get("ready", True)),
            termination_grace_seconds=int(pod.get("terminationGracePeriodSeconds", 30)),
            empty_dir=bool(pod.get("localStorage", False)),
            tolerations=pod.get("tolerations"),
        )
    for pdb in snapshot.pdbs:
        emulator.add_pdb(
            name=str(pdb["name"]),
            namespace=str(pdb.get("namespace", "default")),
            selector=pdb.get("selector") or {},
            min_available=pdb.get("minAvailable"),
            max_unavailable=pdb.get("maxUnavailable"),
        )
    for owner in owners:
        emulator.cluster.reconcile_now(owner)
    for ns in namespaces:
        emulator.cluster.sync_pdbs(ns)


def _create_controller(emulator: Emulator, w: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(w["kind"])
    namespace = str(w.get("namespace", "default"))
    template_spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": PAUSE_IMAGE}],
        "terminationGracePeriodSeconds": int(w.get("terminationGracePeriodSeconds", 30)),
    }
    if w.get("localStorage"):
        template_spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    if w.get("nodeSelector"):
        template_spec["nodeSelector"] = dict(w["nodeSelector"])
    if w.get("tolerations"):
        template_spec["tolerations"] = list(w["tolerations"])
    spec: dict[str, Any] = {
        "selector": w.get("selector") or {},
        "template": {"metadata": {"labels": dict(w.get("templateLabels") or {})}, "spec": template_spec},
    }
    if kind != "DaemonSet":
        spec["replicas"] = int(w.get("replicas", 1))
    if kind == "StatefulSet":
        spec["serviceName"] = str(w["name"])
    metadata: dict[str, Any] = {"name": str(w["name"]), "namespace": namespace}
    owner = w.get("owner")
    if owner:
        parent = emulator.get_object(kind=str(owner["kind"]), namespace=namespace, name=str(owner["name"]))
        if parent is not None:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": str(owner["kind"]),
                    "name": str(owner["name"]),
                    "uid": parent["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
    body = {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, "spec": spec}
    info = BY_GROUP_RESOURCE[_RESOURCE[kind]]
    created: dict[str, Any] = emulator.registry.create(info, namespace, body, client=SETUP)
    return created


# --- what the rollout can and cannot do (pure) ---------------------------------------------------


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' toleration match (operator Exists / Equal, empty key with Exists = everything)."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and str(t.get("value", "")) == str(taint.get("value", "")):
            return True
    return False


def untolerated_taint(snapshot: Snapshot, node: Mapping[str, Any]) -> str | None:
    """The taint (key=value:effect) that keeps the rebootd DaemonSet off `node`, or a nodeSelector
    it does not match; None when rebootd runs there."""
    tolerations = snapshot.rebootd_tolerations()
    for taint in node.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            value = f"={taint['value']}" if taint.get("value") else ""
            shown = f"{taint.get('key')}{value}:{taint.get('effect')}"
            return f"taint {shown} not tolerated by the rebootd DaemonSet"
    labels = node.get("labels") or {}
    for key, value in snapshot.rebootd_node_selector().items():
        if labels.get(key) != value:
            return f"the rebootd DaemonSet's nodeSelector {key}={value} does not match"
    return None
