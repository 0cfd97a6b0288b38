"""Field selectors for the emulator: which fields each resource exposes, and their string values.

Rule: parsing and matching are `rebootd.selectors` (the apimachinery grammar, shared with the rest of
rebootd); this module only maps a stored object to the `field -> string` values kube-apiserver's
per-type `GetAttrs`/`ToSelectableFields` functions produce, and turns selector errors into the 400
Status the server answers. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from rebootd.emulator.errors import bad_request
from rebootd.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)


def parse_fields(text: str, *, supported: frozenset[str]) -> FieldSelector:
    """The `fieldSelector` query parameter; 400 `field label not supported: X` and syntax errors."""
    try:
        return parse_field_selector(text, supported=supported)
    except SelectorError as exc:
        raise bad_request(str(exc)) from exc


def parse_labels(text: str) -> LabelSelector:
    """The `labelSelector` query parameter; a syntax error is a 400 with the parser's message."""
    try:
        return parse_label_selector(text)
    except SelectorError as exc:
        raise bad_request(str(exc)) from exc


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _meta(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}


def pod_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    fields = _meta(obj)
    fields.update(
        {
            "spec.nodeName": spec.get("nodeName") or "",
            "spec.restartPolicy": spec.get("restartPolicy") or "",
            "spec.schedulerName": spec.get("schedulerName") or "",
            "spec.serviceAccountName": spec.get("serviceAccountName") or "",
            "spec.hostNetwork": _bool(spec.get("hostNetwork")),
            "status.phase": status.get("phase") or "",
            "status.podIP": status.get("podIP") or "",
            "status.nominatedNodeName": status.get("nominatedNodeName") or "",
        }
    )
    return fields


def node_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    fields = _meta(obj)
    fields["spec.unschedulable"] = _bool((obj.get("spec") or {}).get("unschedulable"))
    return fields


def event_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    fields = _meta(obj)
    involved = obj.get("involvedObject") or {}
    for key in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        fields[f"involvedObject.{key}"] = str(involved.get(key) or "")
    fields["reason"] = obj.get("reason") or ""
    fields["reportingComponent"] = obj.get("reportingComponent") or ""
    fields["source"] = (obj.get("source") or {}).get("component") or ""
    fields["type"] = obj.get("type") or ""
    return fields


def namespace_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    fields = _meta(obj)
    fields["status.phase"] = (obj.get("status") or {}).get("phase") or ""
    return fields


FIELD_GETTERS: Mapping[str, Callable[[Mapping[str, Any]], dict[str, str]]] = MappingProxyType(
    {
        "pods": pod_fields,
        "nodes": node_fields,
        "events": event_fields,
        "namespaces": namespace_fields,
    }
)


def object_fields(storage: str, obj: Mapping[str, Any]) -> dict[str, str]:
    getter = FIELD_GETTERS.get(storage, _meta)
    return getter(obj)
