"""The API resources the emulator serves and their discovery documents.

Rule: one immutable `ResourceInfo` per served (group, resource); everything that depends on the kind
of object (scope, field labels, status subresource, generation) is read from here, never from
string comparisons spread over the server. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
POD_FIELDS = META_FIELDS | {
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
}
NODE_FIELDS = frozenset({"metadata.name", "spec.unschedulable"})
EVENT_FIELDS = META_FIELDS | {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}
NAMESPACE_FIELDS = frozenset({"metadata.name", "status.phase"})

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    storage: str  # the store bucket: events.k8s.io events share core events' storage
    singular: str
    short_names: tuple[str, ...] = ()
    field_labels: frozenset[str] = META_FIELDS
    status_subresource: bool = False
    has_generation: bool = False
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


def _r(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    storage: str | None = None,
    short: tuple[str, ...] = (),
    fields: frozenset[str] = META_FIELDS,
    status: bool = False,
    generation: bool = False,
    categories: tuple[str, ...] = (),
) -> ResourceInfo:
    return ResourceInfo(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        storage=storage or (f"{plural}.{group}" if group else plural),
        singular=kind.lower(),
        short_names=short,
        field_labels=fields,
        status_subresource=status,
        has_generation=generation,
        categories=categories,
    )


RESOURCES: tuple[ResourceInfo, ...] = (
    _r(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        fields=NAMESPACE_FIELDS,
        status=True,
    ),
    _r("", "v1", "nodes", "Node", namespaced=False, short=("no",), fields=NODE_FIELDS, status=True),
    _r(
        "",
        "v1",
        "pods",
        "Pod",
        namespaced=True,
        short=("po",),
        fields=POD_FIELDS,
        status=True,
        categories=("all",),
    ),
    _r("", "v1", "events", "Event", namespaced=True, short=("ev",), fields=EVENT_FIELDS),
    _r(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        namespaced=True,
        short=("deploy",),
        status=True,
        generation=True,
        categories=("all",),
    ),
    _r(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        namespaced=True,
        short=("rs",),
        status=True,
        generation=True,
        categories=("all",),
    ),
    _r(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        namespaced=True,
        short=("sts",),
        status=True,
        generation=True,
        categories=("all",),
    ),
    _r(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        namespaced=True,
        short=("ds",),
        status=True,
        generation=True,
        categories=("all",),
    ),
    _r("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    _r(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        namespaced=True,
        short=("pdb",),
        status=True,
        generation=True,
    ),
    _r(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        namespaced=True,
        storage="events",
        short=("ev",),
        fields=EVENT_FIELDS,
    ),
)


def _by_storage() -> dict[str, ResourceInfo]:
    found: dict[str, ResourceInfo] = {}
    for info in RESOURCES:
        found.setdefault(info.storage, info)
    return found


def _kind_to_storage() -> dict[str, str]:
    found: dict[str, str] = {}
    for info in RESOURCES:
        found.setdefault(info.kind, info.storage)
    return found


BY_GROUP_RESOURCE: Mapping[tuple[str, str], ResourceInfo] = MappingProxyType(
    {(r.group, r.plural): r for r in RESOURCES}
)
BY_STORAGE_KIND: Mapping[str, ResourceInfo] = MappingProxyType(_by_storage())
KIND_TO_STORAGE: Mapping[str, str] = MappingProxyType(_kind_to_storage())

# Group versions served; policy/v1beta1 exists only for the Eviction body.
GROUP_VERSIONS: dict[str, str] = {
    "apps": "v1",
    "coordination.k8s.io": "v1",
    "policy": "v1",
    "events.k8s.io": "v1",
}


def resource_for(*, group: str, version: str, plural: str) -> ResourceInfo | None:
    info = BY_GROUP_RESOURCE.get((group, plural))
    if info is None or info.version != version:
        return None
    return info


def storage_of_kind(kind: str) -> str:
    """The store bucket of a Kind name (`Pod`, `Lease`, ...). Raises KeyError for unknown kinds."""
    return KIND_TO_STORAGE[kind]


def info_of_storage(storage: str) -> ResourceInfo:
    return BY_STORAGE_KIND[storage]


def _api_resource(info: ResourceInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": list(info.verbs),
        "storageVersionHash": "",
    }
    if info.short_names:
        entry["shortNames"] = list(info.short_names)
    if info.categories:
        entry["categories"] = list(info.categories)
    return entry


def _status_resource(info: ResourceInfo) -> dict[str, Any]:
    return {
        "name": f"{info.plural}/status",
        "singularName": "",
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": ["get", "patch", "update"],
    }


def api_resource_list(group_version: str) -> dict[str, Any] | None:
    """`/api/v1` or `/apis/G/V`: the APIResourceList, or None when not served."""
    group, _, version = group_version.rpartition("/")
    infos = [r for r in RESOURCES if r.group == group and r.version == version]
    if not infos:
        return None
    resources: list[dict[str, Any]] = []
    for info in infos:
        resources.append(_api_resource(info))
        if info.status_subresource:
            resources.append(_status_resource(info))
        if info.plural == "pods" and not info.group:
            resources.append(
                {
                    "name": "pods/eviction",
                    "singularName": "",
                    "namespaced": True,
                    "group": "policy",
                    "version": "v1",
                    "kind": "Eviction",
                    "verbs": ["create"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def api_versions(*, server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str) -> dict[str, Any]:
    version = GROUP_VERSIONS[group]
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    groups = []
    for group in GROUP_VERSIONS:
        entry = api_group(group)
        del entry["kind"], entry["apiVersion"]
        groups.append(entry)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


VERSION_INFO: Mapping[str, str] = MappingProxyType(
    {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
)


def _paths(info: ResourceInfo) -> tuple[str, str]:
    base = "/api/v1" if not info.group else f"/apis/{info.group}/{info.version}"
    scope = f"{base}/namespaces/{{namespace}}" if info.namespaced else base
    return f"{scope}/{info.plural}", f"{scope}/{info.plural}/{{name}}"


def openapi_v3_root() -> dict[str, Any]:
    """`/openapi/v3`: where each group version's document is (kubectl asks before `create -f`)."""
    paths: dict[str, Any] = {}
    for group_version in ["v1", *(f"{g}/{v}" for g, v in GROUP_VERSIONS.items())]:
        key = "api/v1" if group_version == "v1" else f"apis/{group_version}"
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}"}
    return {"paths": paths}


def openapi_v3_document(key: str) -> dict[str, Any] | None:
    """A minimal OpenAPI v3 document for `api/v1` or `apis/G/V`: the operations with their
    group-version-kind and the `fieldValidation` parameter, which is all kubectl's query-parameter
    verifier reads to choose server-side validation. No schemas (kubectl explain is not served)."""
    group_version = "v1" if key == "api/v1" else key.removeprefix("apis/")
    infos = [r for r in RESOURCES if r.api_version == group_version]
    if not infos:
        return None
    validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    paths: dict[str, Any] = {}
    for info in infos:
        gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        collection, item = _paths(info)
        paths[collection] = {
            "post": {"x-kubernetes-group-version-kind": gvk, "parameters": [validation], "responses": {}},
        }
        paths[item] = {
            "put": {"x-kubernetes-group-version-kind": gvk, "parameters": [validation], "responses": {}},
            "patch": {"x-kubernetes-group-version-kind": gvk, "parameters": [validation], "responses": {}},
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
