"""Small helpers over plain-dict Kubernetes objects: timestamps, conditions, readiness, owners.

Rule: pure functions over JSON-shaped dicts; times are formatted exactly as the apiserver writes
them (metav1.Time: RFC 3339 seconds with `Z`; MicroTime: six fractional digits with `Z`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

JsonObj = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime | None:
    """Parse a metav1.Time / MicroTime string leniently (for the emulator's own reading)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def deep_copy(obj: JsonObj) -> JsonObj:
    """A deep copy of a JSON-shaped dict (json round trip is faster than copy.deepcopy)."""
    result: JsonObj = json.loads(json.dumps(obj))
    return result


def clone(obj: Any) -> Any:
    return copy.deepcopy(obj)


def meta(obj: Mapping[str, Any]) -> JsonObj:
    value: JsonObj = obj.get("metadata") or {}
    return value


def condition(obj: Mapping[str, Any], kind: str) -> JsonObj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            result: JsonObj = cond
            return result
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_node_ready(node: Mapping[str, Any]) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def controller_ref(obj: Mapping[str, Any]) -> JsonObj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            result: JsonObj = ref
            return result
    return None


def set_condition(
    conditions: list[JsonObj],
    *,
    kind: str,
    status: str,
    now: str,
    reason: str = "",
    message: str = "",
    heartbeat: bool = False,
) -> list[JsonObj]:
    """Return `conditions` with `kind` set; lastTransitionTime changes only when the status does."""
    result: list[JsonObj] = []
    found = False
    for cond in conditions:
        if cond.get("type") != kind:
            result.append(cond)
            continue
        found = True
        updated = dict(cond)
        if cond.get("status") != status:
            updated["lastTransitionTime"] = now
        updated["status"] = status
        if reason:
            updated["reason"] = reason
        if message:
            updated["message"] = message
        if heartbeat:
            updated["lastHeartbeatTime"] = now
        result.append(updated)
    if not found:
        new: JsonObj = {"type": kind, "status": status}
        if heartbeat:
            new["lastHeartbeatTime"] = now
        new["lastTransitionTime"] = now
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        result.append(new)
    return result


def strip_type(obj: JsonObj) -> JsonObj:
    """A list item as the apiserver sends it: no kind/apiVersion (shallow copy)."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
