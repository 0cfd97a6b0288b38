"""A real kube-apiserver's audit log turned into the simulator's history, so the same invariants
judge a rollout on a real control plane.

Rule: pure. `history_from_audit` reads audit events (RequestResponse level for writes, as the
project's launcher configures it; reads are not logged) in the order of their `stageTimestamp`,
keeps the last object seen of every Node, Pod and PodDisruptionBudget, and emits what the
emulator would have recorded for each:
- a successful write: `write` (Node writes with spec.unschedulable before and after, Pod writes
  with the pod's facts, PDB writes with the budget, Lease writes with the `rebootd.io/state`
  annotation, ReplicaSet/StatefulSet writes with spec.replicas; a delete `removed`);
- a DELETE of a pod: `pod_delete` as well, with the pod and its covering budgets as they were;
- `create pods/eviction`: `eviction` (201) or `eviction_refused` (any other code), with the pod
  and the budgets covering it as they were when it arrived;
- a Node status write that shows Ready after it was not Ready, or Ready with a new bootID:
  `node_ready` (and `node_not_ready` for the reverse).
Who did it (`client`) is the daemon's identity `rebootd@NODE` from its User-Agent (every daemon
holds the same ServiceAccount token), `kubelet` for simulated kubelets, `admin` for the
launcher's admin (whose user name `rebootd-admin` must not pass for a daemon's), else the user name.
Happenings outside the API (a reboot need, a reboot request, a machine going down) are the
simulator's `Note`s, merged in by time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rebootd.controlplane.config import ADMIN
from rebootd.emulator.history import BudgetFacts, HistoryRecord, PodFacts
from rebootd.selectors import SelectorError, label_selector_from_object

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})
SCALED_KINDS = frozenset({"ReplicaSet", "StatefulSet", "ReplicationController"})
KIND_OF_RESOURCE = {
    "nodes": "Node",
    "pods": "Pod",
    "leases": "Lease",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "replicasets": "ReplicaSet",
    "statefulsets": "StatefulSet",
    "deployments": "Deployment",
    "daemonsets": "DaemonSet",
    "events": "Event",
}
STATE_ANNOTATION = "rebootd.io/state"


@dataclass(frozen=True)
class Note:
    """A happening outside the API, recorded by the simulator (wall time, UTC)."""

    time: datetime
    event: str  # reboot_needed | reboot_requested | reboot_started
    client: str
    node: str
    verb: str = ""
    detail: str = ""


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def client_of(event: Mapping[str, Any]) -> str:
    agent = str(event.get("userAgent") or "")
    if agent.startswith("rebootd@"):
        return agent.split()[0]
    if agent.startswith("kubelet/"):
        return "kubelet"
    username = str((event.get("user") or {}).get("username") or "anonymous")
    if username == ADMIN:  # the launcher's admin (the simulator's setup, an operator): not rebootd
        return "admin"
    return username.removeprefix("system:serviceaccount:kube-system:")


def _ready(node: Mapping[str, Any] | None) -> bool:
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _boot_id(node: Mapping[str, Any] | None) -> str:
    return str((((node or {}).get("status") or {}).get("nodeInfo") or {}).get("bootID") or "")


class _State:
    """The last object seen of each Node, Pod and PDB."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pdbs: dict[tuple[str, str], dict[str, Any]] = {}

    def covering(self, pod: Mapping[str, Any] | None) -> tuple[BudgetFacts, ...]:
        if pod is None:
            return ()
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        out = []
        for (namespace, _), pdb in sorted(self.pdbs.items()):
            if namespace != meta.get("namespace"):
                continue
            try:
                selector = label_selector_from_object((pdb.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if selector.matches(labels):
                out.append(BudgetFacts.of(pdb))
        return tuple(out)


def _record(audit: Mapping[str, Any], when: datetime, /, **fields: Any) -> HistoryRecord:
    ref = audit.get("objectRef") or {}
    fields.setdefault("kind", KIND_OF_RESOURCE.get(str(ref.get("resource")), str(ref.get("resource"))))
    fields.setdefault("namespace", str(ref.get("namespace") or ""))
    fields.setdefault("name", str(ref.get("name") or ""))
    return HistoryRecord(monotonic=when.timestamp(), time=when, client=client_of(audit), **fields)


def history_from_audit(
    events: Iterable[Mapping[str, Any]], notes: Sequence[Note] = ()
) -> list[HistoryRecord]:
    """The history of a run on a real control plane (see the module rule)."""
    timed: list[tuple[datetime, int, Mapping[str, Any] | Note]] = []
    for index, event in enumerate(events):
        if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
            continue
        timed.append((parse_time(str(event["stageTimestamp"])), index, event))
    timed += [(note.time, -1, note) for note in notes]
    timed.sort(key=lambda item: (item[0], item[1]))
    state = _State()
    out: list[HistoryRecord] = []
    for when, _, item in timed:
        if isinstance(item, Note):
            node = state.nodes.get(item.node)
            out.append(
                HistoryRecord(
                    monotonic=when.timestamp(),
                    time=when,
                    event=item.event,
                    client=item.client,
                    verb=item.verb,
                    kind="Node",
                    namespace="",
                    name=item.node,
                    resource_version=str(((node or {}).get("metadata") or {}).get("resourceVersion", "")),
                    detail=item.detail,
                )
            )
            continue
        out.extend(_records(item, when, state))
    return out


def _records(event: Mapping[str, Any], when: datetime, state: _State) -> list[HistoryRecord]:
    ref = event.get("objectRef") or {}
    resource, subresource = str(ref.get("resource") or ""), str(ref.get("subresource") or "")
    namespace, name = str(ref.get("namespace") or ""), str(ref.get("name") or "")
    code = int((event.get("responseStatus") or {}).get("code") or 0)
    response = event.get("responseObject")
    obj = response if isinstance(response, dict) and response.get("kind") not in (None, "Status") else None
    if resource == "pods" and subresource == "eviction":
        pod = state.pods.get((namespace, name))
        facts = PodFacts.of(pod) if pod is not None else None
        budgets = state.covering(pod)
        one = budgets[0] if len(budgets) == 1 else None
        granted = code == 201
        message = str((event.get("responseStatus") or {}).get("message") or "")
        return [
            _record(
                event,
                when,
                event="eviction" if granted else "eviction_refused",
                verb="evict",
                kind="Pod",
                pod=facts,
                budgets=budgets,
                code=code,
                detail="" if granted else message,
                pdb=None if one is None else one.name,
                disruptions_allowed=None if one is None else one.disruptions_allowed,
            )
        ]
    if code >= 300 or subresource not in ("", "status"):
        return []
    verb = str(event.get("verb"))
    out: list[HistoryRecord] = []
    if resource == "pods" and verb == "delete":
        before = state.pods.get((namespace, name))
        out.append(
            _record(
                event,
                when,
                event="pod_delete",
                verb="delete",
                kind="Pod",
                pod=PodFacts.of(before) if before is not None else None,
                budgets=state.covering(before),
                code=code,
            )
        )
    if obj is None and verb != "delete":
        return out
    name = name or str(((obj or {}).get("metadata") or {}).get("name") or "")
    namespace = namespace or str(((obj or {}).get("metadata") or {}).get("namespace") or "")
    removed = verb == "delete" and (
        obj is None or not (obj.get("metadata") or {}).get("deletionTimestamp") or resource != "pods"
    )
    fields: dict[str, Any] = {
        "event": "write",
        "verb": verb,
        "removed": removed,
        "name": name,
        "namespace": namespace,
    }
    meta = (obj or {}).get("metadata") or {}
    fields["resource_version"] = str(meta.get("resourceVersion") or "")
    if resource == "nodes":
        old = state.nodes.get(name)
        if obj is not None and not removed:
            before = ((old or {}).get("spec") or {}).get("unschedulable")
            fields["unschedulable_before"] = bool(before) if old is not None else None
            fields["unschedulable_after"] = bool((obj.get("spec") or {}).get("unschedulable"))
            state.nodes[name] = dict(obj)
        out.append(_record(event, when, **fields))
        if obj is not None and subresource == "status":
            was, now = _ready(old), _ready(obj)
            if now and (not was or _boot_id(old) != _boot_id(obj)):
                out.append(_record(event, when, event="node_ready", verb="", kind="Node", name=name))
            elif was and not now:
                out.append(_record(event, when, event="node_not_ready", verb="", kind="Node", name=name))
        if removed:
            state.nodes.pop(name, None)
        return out
    if resource == "pods":
        key = (namespace, name)
        if obj is not None:
            fields["pod"] = PodFacts.of(obj)
        if removed:
            state.pods.pop(key, None)
        elif obj is not None:
            state.pods[key] = dict(obj)
    elif resource == "poddisruptionbudgets" and obj is not None:
        fields["budgets"] = (BudgetFacts.of(obj),)
        if removed:
            state.pdbs.pop((namespace, name), None)
        else:
            state.pdbs[(namespace, name)] = dict(obj)
    elif resource == "leases" and obj is not None:
        fields["detail"] = str((meta.get("annotations") or {}).get(STATE_ANNOTATION) or "")
    elif obj is not None and obj.get("kind") in SCALED_KINDS:
        fields["replicas"] = int((obj.get("spec") or {}).get("replicas", 1))
    out.append(_record(event, when, **fields))
    return out
