"""The wire formats rebootd writes and the REST paths of the resources it touches.

Rule: the paths of the handful of resources rebootd uses are the only thing written by hand; a
MicroTime is written by `format_microtime` (exactly six fractional digits and `Z`: the
`isoformat()` serialisation is refused by a real apiserver). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

JsonObj = dict[str, Any]
WatchKind = Literal["nodes", "pods", "leases", "poddisruptionbudgets"]
PatchType = Literal["strategic", "merge", "json"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
# A list of the items' metadata only, as client-go's metadata client asks (plain JSON as fallback).
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


def format_microtime(dt: datetime) -> str:
    """A MicroTime as kube-apiserver writes it: UTC, exactly six fractional digits, `Z`."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: MicroTime needs a timezone-aware datetime")
    u = dt.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


@dataclass(frozen=True)
class Resource:
    api_version: str  # "v1" or "GROUP/VERSION"
    plural: str
    kind: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


RESOURCES: dict[str, Resource] = {
    "nodes": Resource("v1", "nodes", "Node", namespaced=False),
    "pods": Resource("v1", "pods", "Pod", namespaced=True),
    "events": Resource("v1", "events", "Event", namespaced=True),
    "daemonsets": Resource("apps/v1", "daemonsets", "DaemonSet", namespaced=True),
    # listed only by `rebootd simulate --from-cluster` (a read-only snapshot), never by the daemon
    "deployments": Resource("apps/v1", "deployments", "Deployment", namespaced=True),
    "replicasets": Resource("apps/v1", "replicasets", "ReplicaSet", namespaced=True),
    "statefulsets": Resource("apps/v1", "statefulsets", "StatefulSet", namespaced=True),
    "leases": Resource("coordination.k8s.io/v1", "leases", "Lease", namespaced=True),
    "poddisruptionbudgets": Resource(
        "policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", namespaced=True
    ),
}


def resource_path(
    kind: str, *, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    """The REST path of a collection (all namespaces when `namespace` is None) or of one object."""
    res = RESOURCES[kind]
    if not res.namespaced and namespace is not None:
        raise ValueError(f"{kind} are cluster-scoped")
    if res.namespaced and name is not None and not namespace:
        raise ValueError(f"{kind} {name!r} needs a namespace")
    path = res.prefix
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{res.plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if sub is not None:
        path += f"/{sub}"
    return path


def selector_query(*, field_selector: str | None, label_selector: str | None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if field_selector:
        query.append(("fieldSelector", field_selector))
    if label_selector:
        query.append(("labelSelector", label_selector))
    return query


def resource_version(obj: JsonObj | None) -> str | None:
    if obj is None:
        return None
    rv = obj.get("metadata", {}).get("resourceVersion")
    return str(rv) if rv is not None else None
