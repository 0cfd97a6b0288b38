"""Operations on this daemon's own Node: cordon, taints, labels, annotations, Events, readings.

Rule: every write changes only what it names and never clobbers what others wrote concurrently.
- Cordon/uncordon are kubectl's strategic merge patches, each a compare-and-swap on the Node's
  resourceVersion scoped to a slot grant: the cordon writes `rebootd.io/cordoned-by: <grant>` in
  the same write, and uncordon undoes only a cordon that names its grant (an admin-cordoned node
  is never uncordoned by rebootd, and a retried cordon whose response was lost is still ours).
- `spec.taints` has no merge key (a strategic merge would replace the whole list), so taints are
  changed by JSON patch guarded by a `test` of the list as read (or of the resourceVersion when the
  list is absent); a failed test (422) means someone else changed the Node: re-read and retry.
- Labels and annotations are strategic-merge maps: only the named keys change, `None` deletes.
- Events are best effort: `record_event` logs a failure and never raises.
- `boot_id`, `is_ready`, `ready_transition` are pure readings of a Node object. The cycle's proof of
  reboot uses the first two (the host's boot id changed, then the Node reports it and is Ready);
  the Ready condition's transition time is no part of it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from rebootd.clock import Clock
from rebootd.kube import Conflict, Invalid, Kube, KubeError
from rebootd.logs import get_logger
from rebootd.marks import CORDON_ANNOTATION, cordoned_by, mark_of

EVENT_NAMESPACE = "default"
MAX_WRITE_ATTEMPTS = 10
DEFAULT_TAINT_EFFECT = "PreferNoSchedule"
MAX_NAME_LENGTH = 253

JsonObj = dict[str, Any]
EventType = Literal["Normal", "Warning"]


class NodeChanged(Exception):
    """A guarded write found the Node no longer as the caller required (e.g. its mark removed)."""


class NodeWriteConflict(KubeError):
    """A guarded write lost to concurrent writers `MAX_WRITE_ATTEMPTS` times in a row."""


# --- pure readings --------------------------------------------------------------------------


def boot_id(node_obj: Mapping[str, Any]) -> str:
    """`status.nodeInfo.bootID` ("" when the kubelet has not reported one)."""
    info = (node_obj.get("status") or {}).get("nodeInfo") or {}
    return str(info.get("bootID") or "")


def _ready_condition(node_obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in (node_obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return None


def is_ready(node_obj: Mapping[str, Any]) -> bool:
    """True when the Node's Ready condition is `True`."""
    condition = _ready_condition(node_obj)
    return condition is not None and condition.get("status") == "True"


def parse_time(value: object) -> datetime | None:
    """A metav1.Time / MicroTime string as an aware datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def ready_transition(node_obj: Mapping[str, Any]) -> datetime | None:
    """When the Node last became Ready (the Ready condition's lastTransitionTime); None when it is
    not Ready now or the time is missing. Not proof of a reboot: the cycle compares boot ids."""
    condition = _ready_condition(node_obj)
    if condition is None or condition.get("status") != "True":
        return None
    return parse_time(condition.get("lastTransitionTime"))


def taints_of(node_obj: Mapping[str, Any]) -> list[JsonObj] | None:
    """The Node's `spec.taints` as stored (None when the field is absent)."""
    taints = (node_obj.get("spec") or {}).get("taints")
    return list(taints) if isinstance(taints, list) else None


def _same_taint(taint: Mapping[str, Any], *, key: str, effect: str) -> bool:
    return taint.get("key") == key and taint.get("effect") == effect


def taint_patch_add(
    node_obj: Mapping[str, Any], *, key: str, effect: str, value: str | None = None
) -> list[JsonObj] | None:
    """The guarded JSON patch adding taint (key, effect); None when the Node already has it."""
    current = taints_of(node_obj)
    taint: JsonObj = {"key": key, "effect": effect}
    if value is not None:
        taint["value"] = value
    if current is None:
        version = str((node_obj.get("metadata") or {}).get("resourceVersion") or "")
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/spec/taints", "value": [taint]},
        ]
    if any(_same_taint(t, key=key, effect=effect) for t in current):
        return None
    return [
        {"op": "test", "path": "/spec/taints", "value": current},
        {"op": "add", "path": "/spec/taints/-", "value": taint},
    ]


def taint_patch_remove(node_obj: Mapping[str, Any], *, key: str, effect: str) -> list[JsonObj] | None:
    """The guarded JSON patch removing taint (key, effect); None when the Node does not have it.
    Removing the last taint removes the field."""
    current = taints_of(node_obj) or []
    doomed = [i for i, t in enumerate(current) if _same_taint(t, key=key, effect=effect)]
    if not doomed:
        return None
    guard: JsonObj = {"op": "test", "path": "/spec/taints", "value": current}
    if len(doomed) == len(current):
        return [guard, {"op": "remove", "path": "/spec/taints"}]
    # highest index first, so that the lower indices stay valid while the ops apply
    return [guard, *({"op": "remove", "path": f"/spec/taints/{i}"} for i in reversed(doomed))]


# --- writes ---------------------------------------------------------------------------------


async def guarded_patch(
    kube: Kube, *, node: str, plan: Callable[[JsonObj], JsonObj | None], what: str
) -> JsonObj | None:
    """Read the Node, let `plan` decide a strategic-merge patch from what it read (None: nothing
    to write; it may raise to refuse), and write it carrying the resourceVersion read: a
    concurrent writer makes us re-read and decide again. Returns the patch written, or None."""
    log = get_logger(node=node)
    for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
        obj = await kube.get_node(name=node)
        patch = plan(obj)
        if patch is None:
            return None
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            patch = {**patch, "metadata": {**(patch.get("metadata") or {}), "resourceVersion": version}}
        try:
            await kube.patch_node(name=node, patch=patch, patch_type="strategic")
        except Conflict:
            log.info("rebootd.node.write_conflict", write=what, attempt=attempt)
            continue
        return patch
    raise NodeWriteConflict(
        status=409,
        reason="Conflict",
        message=f"{what} of node {node} lost {MAX_WRITE_ATTEMPTS} races in a row",
    )


CordonResult = Literal["cordoned", "ours", "admin"]


async def cordon(kube: Kube, *, node: str, grant: str) -> CordonResult:
    """Cordon the Node for grant `grant` (kubectl cordon, plus `rebootd.io/cordoned-by: grant` in
    the same write). Only while the Node carries that grant's mark, else NodeChanged; the patch
    carries the resourceVersion read, so the check and the cordon are one step, and a concurrent
    cordon by an admin makes us re-read instead of claiming it.

    Returns "cordoned" (this call cordoned it), "ours" (already cordoned by this grant: a resumed
    pass, or a cordon whose response was lost and that was retried) or "admin" (unschedulable
    already, by someone else's cordon: never ours to undo)."""
    found: CordonResult = "cordoned"

    def plan(obj: JsonObj) -> JsonObj | None:
        nonlocal found
        mark = mark_of(obj)
        if mark is None or mark.grant != grant:
            raise NodeChanged(f"node {node}: the mark of grant {grant} this cordon requires is gone")
        if (obj.get("spec") or {}).get("unschedulable"):
            found = "ours" if cordoned_by(obj, grant) else "admin"
            return None
        found = "cordoned"
        return {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDON_ANNOTATION: grant}}}

    await guarded_patch(kube, node=node, plan=plan, what="cordon")
    get_logger(node=node).info("rebootd.node.cordon", result=found, grant=grant)
    return found


async def uncordon(kube: Kube, *, node: str, grant: str) -> bool:
    """Make the Node schedulable again (kubectl uncordon) if, and only if, grant `grant` cordoned
    it (`rebootd.io/cordoned-by`); one guarded write that also clears the ownership annotation.
    An admin's cordon, or one made after ours was undone, stays. True when uncordoned."""

    def plan(obj: JsonObj) -> JsonObj | None:
        if not cordoned_by(obj, grant):
            return None
        return {"spec": {"unschedulable": None}, "metadata": {"annotations": {CORDON_ANNOTATION: None}}}

    written = await guarded_patch(kube, node=node, plan=plan, what="uncordon")
    get_logger(node=node).info("rebootd.node.uncordoned" if written else "rebootd.node.not_ours_to_uncordon")
    return written is not None


async def _guarded_taint_write(
    kube: Kube, *, node: str, key: str, effect: str, value: str | None, add: bool
) -> bool:
    log = get_logger(node=node, taint=key, effect=effect)
    for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
        obj = await kube.get_node(name=node)
        ops = (
            taint_patch_add(obj, key=key, effect=effect, value=value)
            if add
            else taint_patch_remove(obj, key=key, effect=effect)
        )
        if ops is None:
            return False
        try:
            await kube.patch_node(name=node, patch=ops, patch_type="json")
        except Invalid:  # the `test` failed: the taints (or the Node) changed since we read them
            log.info("rebootd.node.taint_conflict", attempt=attempt)
            continue
        log.info("rebootd.node.taint_added" if add else "rebootd.node.taint_removed")
        return True
    raise NodeWriteConflict(
        status=409,
        reason="Conflict",
        message=f"taint {key}:{effect} on node {node} lost {MAX_WRITE_ATTEMPTS} races in a row",
    )


async def add_taint(
    kube: Kube, *, node: str, key: str, effect: str = DEFAULT_TAINT_EFFECT, value: str | None = None
) -> bool:
    """Add taint (key, effect) without touching the others; False when it was already there."""
    return await _guarded_taint_write(kube, node=node, key=key, effect=effect, value=value, add=True)


async def remove_taint(kube: Kube, *, node: str, key: str, effect: str = DEFAULT_TAINT_EFFECT) -> bool:
    """Remove taint (key, effect) without touching the others; False when it was not there."""
    return await _guarded_taint_write(kube, node=node, key=key, effect=effect, value=None, add=False)


async def set_labels(kube: Kube, *, node: str, labels: Mapping[str, str | None]) -> None:
    """Set (or with None delete) the named labels; the others stay as they are."""
    if labels:
        await kube.patch_node(name=node, patch={"metadata": {"labels": dict(labels)}}, patch_type="strategic")


async def set_annotations(
    kube: Kube,
    *,
    node: str,
    annotations: Mapping[str, str | None],
    labels: Mapping[str, str | None] | None = None,
) -> None:
    """Set (or with None delete) the named annotations (and labels); the others stay as they are."""
    if annotations or labels:
        meta: dict[str, Any] = {}
        if annotations:
            meta["annotations"] = dict(annotations)
        if labels:
            meta["labels"] = dict(labels)
        await kube.patch_node(name=node, patch={"metadata": meta}, patch_type="strategic")


# --- events ---------------------------------------------------------------------------------


def format_time(dt: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC with whole seconds (`2006-01-02T15:04:05Z`); `dt` is aware."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(
    *,
    node: str,
    node_uid: str,
    reason: str,
    message: str,
    type: EventType,
    component: str,
    host: str,
    now: datetime,
    suffix: str,
) -> JsonObj:
    """A core/v1 Event about the Node, as `kubectl describe node` finds them (section 8 of
    docs/kube-api-contract.md). The name is client-go's `<object>.<hex time>`, with `suffix`
    against same-nanosecond clashes."""
    stamp = f"{int(now.timestamp() * 1_000_000) * 1000:x}{suffix}"
    name = f"{node[: MAX_NAME_LENGTH - len(stamp) - 1]}.{stamp}"
    ts = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": EVENT_NAMESPACE},
        "involvedObject": {"kind": "Node", "name": node, "uid": node_uid, "apiVersion": "v1"},
        "reason": reason,
        "message": message,
        "type": type,
        "source": {"component": component, "host": host},
        "reportingComponent": component,
        "reportingInstance": host,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }


async def record_event(
    kube: Kube,
    *,
    node: str,
    node_uid: str,
    reason: str,
    message: str,
    type: EventType = "Normal",
    component: str = "rebootd",
    host: str | None = None,
    clock: Clock,
) -> None:
    """Post an Event about the Node (visible in `kubectl describe node`). Best effort: a failure is
    logged as `rebootd.node.event_failed` and never raised."""
    log = get_logger(node=node)
    try:
        if not node_uid:  # `kubectl describe node` selects its Events by the Node's uid
            node_uid = str(((await kube.get_node(name=node)).get("metadata") or {}).get("uid") or "")
        body = event_body(
            node=node,
            node_uid=node_uid,
            reason=reason,
            message=message,
            type=type,
            component=component,
            host=host if host is not None else node,
            now=clock.now(),
            suffix=secrets.token_hex(2),
        )
        await kube.create_event(namespace=EVENT_NAMESPACE, body=body)
    except Exception as exc:  # noqa: BLE001 - Events are best effort: nothing may fail because of one
        log.warning("rebootd.node.event_failed", reason=reason, error=f"{exc.__class__.__name__}: {exc}")
        return
    log.info("rebootd.node.event_recorded", reason=reason, type=type)
