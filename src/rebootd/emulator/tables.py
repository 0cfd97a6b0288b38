"""Server-side `Table` output (what `kubectl get` asks for), for the kinds the emulator serves.

Rule: columns and cell formats follow kube-apiserver's printers (pkg/printers/internalversion);
kinds without a printer get the generic Name / Created At table. Pure functions of the objects and
the current time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from rebootd.emulator.objects import condition, parse_time

JsonObj = dict[str, Any]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(obj: JsonObj, now: datetime) -> str:
    created = parse_time(obj["metadata"].get("creationTimestamp") or "")
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def _since(value: str | None, now: datetime) -> str:
    moment = parse_time(value or "")
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


Column = tuple[str, str, int, str]  # name, type, priority, format
Row = Callable[[JsonObj, datetime], list[Any]]

_NAME: Column = ("Name", "string", 0, "name")
_AGE: Column = ("Age", "string", 0, "")


def _pod_row(pod: JsonObj, now: datetime) -> list[Any]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    last_restart = None
    for container in statuses:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason"):
            reason = terminated["reason"]
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished:
            last_restart = finished if last_restart is None or finished > last_restart else last_restart
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restart_text = str(restarts)
    if restarts and last_restart:
        restart_text = f"{restarts} ({_since(last_restart, now)} ago)"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        done = sum(
            1 for g in gates if (condition(pod, g.get("conditionType", "")) or {}).get("status") == "True"
        )
        gates_text = f"{done}/{len(gates)}"
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restart_text,
        _age(pod, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _node_row(node: JsonObj, now: datetime) -> list[Any]:
    status = node.get("status") or {}
    ready = condition(node, "Ready")
    state = "Unknown"
    if ready is not None:
        state = "Ready" if ready.get("status") == "True" else "NotReady"
    parts = [state]
    if (node.get("spec") or {}).get("unschedulable"):
        parts.append("SchedulingDisabled")
    labels = node["metadata"].get("labels") or {}
    roles = sorted(
        key.split("/", 1)[1] for key in labels if key.startswith("node-role.kubernetes.io/") and "/" in key
    )
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        node["metadata"]["name"],
        ",".join(parts),
        ",".join(roles) or "<none>",
        _age(node, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>",
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _lease_row(lease: JsonObj, now: datetime) -> list[Any]:
    holder = (lease.get("spec") or {}).get("holderIdentity") or ""
    return [lease["metadata"]["name"], holder, _age(lease, now)]


def _pdb_row(pdb: JsonObj, now: datetime) -> list[Any]:
    spec = pdb.get("spec") or {}
    return [
        pdb["metadata"]["name"],
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        int((pdb.get("status") or {}).get("disruptionsAllowed", 0)),
        _age(pdb, now),
    ]


def _namespace_row(ns: JsonObj, now: datetime) -> list[Any]:
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", ""), _age(ns, now)]


def _event_row(event: JsonObj, now: datetime) -> list[Any]:
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    return [
        _since(last, now),
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        event.get("message", ""),
    ]


def _deployment_row(obj: JsonObj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        _age(obj, now),
    ]


def _replicaset_row(obj: JsonObj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        int(spec.get("replicas", 1)),
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        _age(obj, now),
    ]


def _statefulset_row(obj: JsonObj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        _age(obj, now),
    ]


def _daemonset_row(obj: JsonObj, now: datetime) -> list[Any]:
    status = obj.get("status") or {}
    selector = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("nodeSelector") or {}
    return [
        obj["metadata"]["name"],
        int(status.get("desiredNumberScheduled", 0)),
        int(status.get("currentNumberScheduled", 0)),
        int(status.get("numberReady", 0)),
        int(status.get("updatedNumberScheduled", 0)),
        int(status.get("numberAvailable", 0)),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
        _age(obj, now),
    ]


def _generic_row(obj: JsonObj, now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]


PRINTERS: Mapping[str, tuple[Sequence[Column], Row]] = MappingProxyType(
    {
        "pods": (
            [
                _NAME,
                ("Ready", "string", 0, ""),
                ("Status", "string", 0, ""),
                ("Restarts", "string", 0, ""),
                _AGE,
                ("IP", "string", 1, ""),
                ("Node", "string", 1, ""),
                ("Nominated Node", "string", 1, ""),
                ("Readiness Gates", "string", 1, ""),
            ],
            _pod_row,
        ),
        "nodes": (
            [
                _NAME,
                ("Status", "string", 0, ""),
                ("Roles", "string", 0, ""),
                _AGE,
                ("Version", "string", 0, ""),
                ("Internal-IP", "string", 1, ""),
                ("External-IP", "string", 1, ""),
                ("OS-Image", "string", 1, ""),
                ("Kernel-Version", "string", 1, ""),
                ("Container-Runtime", "string", 1, ""),
            ],
            _node_row,
        ),
        "leases.coordination.k8s.io": ([_NAME, ("Holder", "string", 0, ""), _AGE], _lease_row),
        "poddisruptionbudgets.policy": (
            [
                _NAME,
                ("Min Available", "string", 0, ""),
                ("Max Unavailable", "string", 0, ""),
                ("Allowed Disruptions", "integer", 0, ""),
                _AGE,
            ],
            _pdb_row,
        ),
        "namespaces": ([_NAME, ("Status", "string", 0, ""), _AGE], _namespace_row),
        "events": (
            [
                ("Last Seen", "string", 0, ""),
                ("Type", "string", 0, ""),
                ("Reason", "string", 0, ""),
                ("Object", "string", 0, ""),
                ("Message", "string", 0, ""),
            ],
            _event_row,
        ),
        "deployments.apps": (
            [
                _NAME,
                ("Ready", "string", 0, ""),
                ("Up-to-date", "integer", 0, ""),
                ("Available", "integer", 0, ""),
                _AGE,
            ],
            _deployment_row,
        ),
        "replicasets.apps": (
            [
                _NAME,
                ("Desired", "integer", 0, ""),
                ("Current", "integer", 0, ""),
                ("Ready", "integer", 0, ""),
                _AGE,
            ],
            _replicaset_row,
        ),
        "statefulsets.apps": ([_NAME, ("Ready", "string", 0, ""), _AGE], _statefulset_row),
        "daemonsets.apps": (
            [
                _NAME,
                ("Desired", "integer", 0, ""),
                ("Current", "integer", 0, ""),
                ("Ready", "integer", 0, ""),
                ("Up-to-date", "integer", 0, ""),
                ("Available", "integer", 0, ""),
                ("Node Selector", "string", 0, ""),
                _AGE,
            ],
            _daemonset_row,
        ),
    }
)
_GENERIC: tuple[Sequence[Column], Row] = ([_NAME, ("Created At", "date", 0, "")], _generic_row)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def to_table(
    storage: str,
    objects: Sequence[JsonObj],
    *,
    now: datetime,
    resource_version: str,
    continue_token: str = "",
    include_object: str = "Metadata",
    headers: bool = True,
    remaining: int | None = None,
) -> JsonObj:
    columns, row = PRINTERS.get(storage, _GENERIC)
    rows = []
    for obj in objects:
        entry: JsonObj = {"cells": row(obj, now)}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(entry)
    metadata: JsonObj = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    table: JsonObj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}
    if headers:
        table["columnDefinitions"] = [
            {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}
            for name, kind, priority, fmt in columns
        ]
    else:
        table["columnDefinitions"] = None
    table["rows"] = rows
    return table
