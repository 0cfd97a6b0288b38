"""The verbs' semantics: what kube-apiserver's generic registry and per-type strategies do.

Rule: every write, from HTTP or from a simulated controller, goes through `Registry`, which applies
the server's rules in the server's order (decode -> preconditions -> optimistic concurrency ->
strategy -> validation -> no-op detection -> store), records the write in the history, and raises
`ApiError` with the real Status otherwise. It knows nothing of HTTP, timers or controllers: the
simulated kubelet reacts to the store's events (e.g. a pod marked for graceful deletion).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rebootd.clock import Clock
from rebootd.emulator import errors
from rebootd.emulator.errors import JsonObj
from rebootd.emulator.fieldselectors import object_fields
from rebootd.emulator.history import BudgetFacts, HistoryRecord, PodFacts
from rebootd.emulator.objects import deep_copy, is_pod_ready, micro_time, parse_time, rfc3339, set_condition
from rebootd.emulator.patch import APPLY_PATCH, PATCH_TYPES, apply_patch, unsupported_media_type
from rebootd.emulator.resources import BY_GROUP_RESOURCE, ResourceInfo, info_of_storage
from rebootd.emulator.store import Store
from rebootd.emulator.validation import decode_check, missing_resource_version, prune_unknown_fields, validate
from rebootd.selectors import FieldSelector, LabelSelector, SelectorError, label_selector_from_object

# etcd's default --max-request-bytes (1.5 MiB): a write of a larger object is refused by etcd. The
# object's JSON form stands in for etcd's protobuf encoding (a little larger: conservative).
ETCD_MAX_REQUEST_BYTES = 1536 * 1024

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
# Strategies that refuse an update without metadata.resourceVersion (AllowUnconditionalUpdate false).
NO_UNCONDITIONAL_UPDATE = frozenset({"leases.coordination.k8s.io"})
# Strategies that create on PUT (AllowCreateOnUpdate true).
CREATE_ON_UPDATE = frozenset({"leases.coordination.k8s.io", "events"})
# Stores whose DELETE answers with the object itself (ReturnDeletedObject).
RETURNS_DELETED_OBJECT = frozenset({"pods"})
NAMESPACE_TERMINATING = "NamespaceTerminating"
# An eviction request as it arrived: the pod (None when missing) and the PDBs covering it.
Arrival = tuple[PodFacts | None, tuple[BudgetFacts, ...]]
PDBS = "poddisruptionbudgets.policy"
SCALED = frozenset({"replicasets.apps", "statefulsets.apps", "replicationcontrollers"})
MULTIPLE_PDBS = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)


@dataclass(frozen=True)
class DeleteOptions:
    grace_period: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    propagation: str | None = None
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any] | None, *, query: Mapping[str, str]) -> DeleteOptions:
        """DeleteOptions from the request: the body wins over the query parameters."""
        body = body or {}
        grace: int | None = None
        if body.get("gracePeriodSeconds") is not None:
            grace = int(body["gracePeriodSeconds"])
        elif query.get("gracePeriodSeconds") not in (None, ""):
            try:
                grace = int(query["gracePeriodSeconds"])
            except ValueError as exc:
                raise errors.bad_request(
                    f"invalid gracePeriodSeconds: {query['gracePeriodSeconds']}"
                ) from exc
        pre = body.get("preconditions") or {}
        dry = body.get("dryRun") or ([query["dryRun"]] if query.get("dryRun") else [])
        return cls(
            grace_period=grace,
            uid=pre.get("uid"),
            resource_version=pre.get("resourceVersion"),
            propagation=body.get("propagationPolicy") or query.get("propagationPolicy"),
            dry_run=bool(dry),
        )


@dataclass
class FieldValidation:
    """The request's `fieldValidation` (Ignore, Warn, Strict) and the warnings it produced."""

    mode: str = "Warn"
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Selection:
    """What a list or watch selects: a namespace (None = all), labels and fields."""

    namespace: str | None = None
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    def predicate(self, storage: str) -> Callable[[JsonObj], bool] | None:
        labels = self.labels if self.labels is not None and not self.labels.is_empty else None
        fields = self.fields if self.fields is not None and not self.fields.is_empty else None
        if labels is None and fields is None:
            return None

        def matches(obj: JsonObj) -> bool:
            if labels is not None and not labels.matches(obj["metadata"].get("labels") or {}):
                return False
            return fields is None or fields.matches(object_fields(storage, obj))

        return matches


def events_v1_view(obj: JsonObj) -> JsonObj:
    """A stored core/v1 Event as events.k8s.io/v1 shows it."""
    mapping = {
        "eventTime": "eventTime",
        "series": "series",
        "reportingComponent": "reportingController",
        "reportingInstance": "reportingInstance",
        "action": "action",
        "reason": "reason",
        "involvedObject": "regarding",
        "related": "related",
        "message": "note",
        "type": "type",
        "source": "deprecatedSource",
        "firstTimestamp": "deprecatedFirstTimestamp",
        "lastTimestamp": "deprecatedLastTimestamp",
        "count": "deprecatedCount",
    }
    view: JsonObj = {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": obj["metadata"]}
    for core_key, v1_key in mapping.items():
        value = obj.get(core_key)
        if value not in (None, "", {}):
            view[v1_key] = value
    if "eventTime" not in view:
        view["eventTime"] = None
    return view


def events_core_from_v1(obj: JsonObj) -> JsonObj:
    reverse = {
        "eventTime": "eventTime",
        "series": "series",
        "reportingController": "reportingComponent",
        "reportingInstance": "reportingInstance",
        "action": "action",
        "reason": "reason",
        "regarding": "involvedObject",
        "related": "related",
        "note": "message",
        "type": "type",
        "deprecatedSource": "source",
        "deprecatedFirstTimestamp": "firstTimestamp",
        "deprecatedLastTimestamp": "lastTimestamp",
        "deprecatedCount": "count",
    }
    core: JsonObj = {"kind": "Event", "apiVersion": "v1", "metadata": obj.get("metadata") or {}}
    for v1_key, core_key in reverse.items():
        if v1_key in obj and obj[v1_key] is not None:
            core[core_key] = obj[v1_key]
    core.setdefault("involvedObject", {})
    return core


class Registry:
    def __init__(
        self, *, store: Store, clock: Clock, rng: random.Random, history: list[HistoryRecord]
    ) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.history = history
        self._now_second = -1
        self._now_text = ""

    # -- helpers ---------------------------------------------------------------------------------

    def now(self) -> str:
        """metav1.Time of now (formatting is cached per second: it dominates bulk set-up)."""
        moment = self.clock.now()
        second = int(moment.timestamp())
        if second != self._now_second:
            self._now_second, self._now_text = second, rfc3339(moment)
        return self._now_text

    def now_micro(self) -> str:
        return micro_time(self.clock.now())

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def random_suffix(self, length: int = 5) -> str:
        return "".join(self.rng.choice(NAME_ALPHABET) for _ in range(length))

    def record(self, **fields: Any) -> None:
        self.history.append(HistoryRecord(monotonic=self.clock.monotonic(), time=self.clock.now(), **fields))

    def view(self, info: ResourceInfo, obj: JsonObj) -> JsonObj:
        """The stored object as the API version of `info` shows it (shared, do not mutate)."""
        if info.group == "events.k8s.io":
            return events_v1_view(obj)
        return obj

    def _storage_body(self, info: ResourceInfo, body: JsonObj) -> JsonObj:
        if info.group == "events.k8s.io":
            return events_core_from_v1(body)
        return body

    def _prune(self, info: ResourceInfo, body: Any, fields: FieldValidation | None) -> None:
        if fields is None or not isinstance(body, dict):
            return  # in-process writes by the simulated controllers are well-formed
        unknown = prune_unknown_fields(info, body, mode=fields.mode)
        if fields.mode == "Warn":
            fields.warnings.extend(f'unknown field "{path}"' for path in unknown)

    # -- reads -----------------------------------------------------------------------------------

    def get(self, info: ResourceInfo, namespace: str, name: str) -> JsonObj:
        obj = self.store.get(info.storage, namespace if info.namespaced else "", name)
        if obj is None:
            raise errors.not_found(resource=info.plural, group=info.group, name=name)
        return obj

    def select(self, info: ResourceInfo, selection: Selection) -> list[JsonObj]:
        """Stored objects matching `selection`, in key order (shared, do not mutate)."""
        node = selection.fields.exact("spec.nodeName") if selection.fields is not None else None
        if info.storage == "pods" and node is not None:
            candidates = self.store.pods_on_node(node)
            if selection.namespace is not None:
                candidates = [p for p in candidates if p["metadata"].get("namespace") == selection.namespace]
            candidates.sort(key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))
        else:
            candidates = self.store.sorted_objects(info.storage, selection.namespace)
        predicate = selection.predicate(info.storage)
        if predicate is None:
            return candidates
        return [obj for obj in candidates if predicate(obj)]

    # -- namespace lifecycle -----------------------------------------------------------------------

    def check_namespace(
        self, info: ResourceInfo, namespace: str, name: str, *, subresource: str = ""
    ) -> None:
        if not info.namespaced:
            return
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise errors.not_found(resource="namespaces", group="", name=namespace)
        if (ns.get("status") or {}).get("phase") == "Terminating":
            raise errors.forbidden(
                resource=info.plural,
                group=info.group,
                name=name,
                why=f"unable to create new content in namespace {namespace} because it is being terminated",
                causes=[
                    {
                        "reason": NAMESPACE_TERMINATING,
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            )

    # -- create ----------------------------------------------------------------------------------

    def create(
        self,
        info: ResourceInfo,
        namespace: str,
        body: Any,
        *,
        client: str,
        dry_run: bool = False,
        verb: str = "create",
        keep_status: bool = False,
        fields: FieldValidation | None = None,
    ) -> JsonObj:
        """POST. `body` becomes the stored object: callers pass a dict nobody else holds. `keep_status`
        is for the simulated controllers that create objects with a status (the HTTP layer never
        sets it: the real strategies reset status on create)."""
        decode_check(info, body)
        self._prune(info, body, fields)
        obj = self._storage_body(info, body)  # the caller hands over a dict nobody else holds
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            body_ns = meta.get("namespace") or ""
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        name = meta.get("name") or ""
        if not name:
            if meta.get("generateName"):
                name = meta["generateName"] + self.random_suffix()
                meta["name"] = name
            else:
                raise errors.invalid(
                    kind=info.kind,
                    group=info.group,
                    name="",
                    errors=[errors.required_value("metadata.name", "name or generateName is required")],
                )
        self.check_namespace(info, namespace, name)
        stored = self._new_object(info, obj, meta, keep_status=keep_status)
        validate(info, stored, None)
        if self.store.get(info.storage, meta.get("namespace", ""), name) is not None:
            raise errors.already_exists(resource=info.plural, group=info.group, name=name)
        if dry_run:
            return stored
        return self._commit(info, stored, None, client=client, verb=verb)

    def _new_object(self, info: ResourceInfo, obj: JsonObj, meta: JsonObj, *, keep_status: bool) -> JsonObj:
        storage_info = info_of_storage(info.storage)
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            meta.pop(key, None)
        meta["uid"] = self.new_uid()
        meta["creationTimestamp"] = self.now()
        if storage_info.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        stored: JsonObj = {
            "kind": storage_info.kind,
            "apiVersion": storage_info.api_version,
            "metadata": meta,
        }
        for key, value in obj.items():
            if key not in ("kind", "apiVersion", "metadata"):
                stored[key] = value
        status = stored.get("status")
        self._prepare_create(storage_info, stored)
        if keep_status and status is not None:
            stored["status"] = status
        return stored

    def _prepare_create(self, info: ResourceInfo, obj: JsonObj) -> None:
        if info.plural == "pods":
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("serviceAccountName", "default")
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif info.plural == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        elif info.plural == "poddisruptionbudgets":
            obj["status"] = {
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            }
        elif info.plural == "leases":
            spec = obj.get("spec") or {}
            spec.pop("preferredHolder", None)
            spec.pop("strategy", None)
            obj["spec"] = _normalise_lease(spec)
        elif info.plural == "nodes":
            obj.setdefault("spec", {})

    # -- update ----------------------------------------------------------------------------------

    def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        body: Any,
        *,
        client: str,
        subresource: str = "",
        dry_run: bool = False,
        fields: FieldValidation | None = None,
    ) -> tuple[JsonObj, bool]:
        """PUT. Returns (object, created)."""
        decode_check(info, body)
        self._prune(info, body, fields)
        obj = self._storage_body(info, deep_copy(body))
        meta = obj.setdefault("metadata", {})
        if meta.get("name", "") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match the name on the URL ({name})"
            )
        ns = namespace if info.namespaced else ""
        if info.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        old = self.store.get(info.storage, ns, name)
        self._check_uid_precondition(info, name, meta.get("uid"), old)
        if old is None:
            if info.storage not in CREATE_ON_UPDATE or subresource:
                raise errors.not_found(resource=info.plural, group=info.group, name=name)
            return self.create(info, namespace, body, client=client, dry_run=dry_run, verb="update"), True
        return self._update_existing(
            info, old, obj, client=client, subresource=subresource, dry_run=dry_run, verb="update"
        ), False

    def _check_uid_precondition(self, info: ResourceInfo, name: str, uid: Any, old: JsonObj | None) -> None:
        if not uid:
            return
        current = (old or {}).get("metadata", {}).get("uid", "")
        if uid != current:
            raise errors.conflict(
                resource=info.plural,
                group=info.group,
                name=name,
                cause=f"Precondition failed: UID in precondition: {uid}, UID in object meta: {current}",
            )

    def _update_existing(
        self,
        info: ResourceInfo,
        old: JsonObj,
        obj: JsonObj,
        *,
        client: str,
        subresource: str,
        dry_run: bool,
        verb: str,
    ) -> JsonObj:
        name = old["metadata"]["name"]
        rv = obj["metadata"].get("resourceVersion") or ""
        if not rv:
            if info.storage in NO_UNCONDITIONAL_UPDATE:
                raise missing_resource_version(info=info, name=name)
        else:
            try:
                int(rv)
            except ValueError as exc:
                raise errors.bad_request(f"invalid resource version: {rv}") from exc
            if rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(resource=info.plural, group=info.group, name=name)
        new = self._prepare_update(info, obj, old, subresource=subresource)
        validate(info, new, old)
        if _same(new, old):
            return old
        if dry_run:
            return new
        return self._commit(info, new, old, client=client, verb=verb)

    def _prepare_update(self, info: ResourceInfo, obj: JsonObj, old: JsonObj, *, subresource: str) -> JsonObj:
        storage_info = info_of_storage(info.storage)
        if subresource == "status":
            new = dict(old)
            new["metadata"] = dict(old["metadata"])
            for key in ("labels", "annotations"):
                if key in obj["metadata"]:
                    new["metadata"][key] = obj["metadata"][key]
                else:
                    new["metadata"].pop(key, None)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            return new
        meta = dict(obj["metadata"])
        for key in ("selfLink", "managedFields"):
            meta.pop(key, None)
        for key in (*SYSTEM_META, "name", "namespace"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        new = {"kind": storage_info.kind, "apiVersion": storage_info.api_version, "metadata": meta}
        for key, value in obj.items():
            if key not in ("kind", "apiVersion", "metadata"):
                new[key] = value
        if storage_info.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if storage_info.plural == "leases":
            spec = new.get("spec") or {}
            old_spec = old.get("spec") or {}
            for gated in ("preferredHolder", "strategy"):
                if gated not in old_spec:
                    spec.pop(gated, None)
            new["spec"] = _normalise_lease(spec)
        if storage_info.has_generation and new.get("spec") != old.get("spec"):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return new

    # -- patch -----------------------------------------------------------------------------------

    def patch(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        *,
        content_type: str,
        raw: bytes,
        client: str,
        subresource: str = "",
        field_manager: str | None = None,
        dry_run: bool = False,
        fields: FieldValidation | None = None,
    ) -> tuple[JsonObj, bool]:
        """PATCH. Returns (object, created): only server-side apply creates."""
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in PATCH_TYPES:
            raise unsupported_media_type()
        if media == APPLY_PATCH and not field_manager:
            raise errors.invalid(
                kind="PatchOptions",
                group="meta.k8s.io",
                name="",
                errors=[errors.required_value("fieldManager", "is required for apply patch")],
            )
        ns = namespace if info.namespaced else ""
        old = self.store.get(info.storage, ns, name)
        if old is None:
            if media != APPLY_PATCH or subresource:
                raise errors.not_found(resource=info.plural, group=info.group, name=name)
            applied = apply_patch(content_type=media, target=None, raw=raw)
            applied_meta = applied.setdefault("metadata", {})
            if applied_meta.get("name", name) != name:
                raise errors.bad_request(
                    f"the name of the object ({applied_meta.get('name')}) does not match "
                    f"the name on the URL ({name})"
                )
            applied_meta["name"] = name
            return self.create(
                info, namespace, applied, client=client, dry_run=dry_run, verb="patch", fields=fields
            ), True
        current = deep_copy(self.view(info, old))
        patched = apply_patch(content_type=media, target=current, raw=raw)
        decode_check(info, patched)
        self._prune(info, patched, fields)
        patched = self._storage_body(info, patched)
        meta = patched.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match the name on the URL ({name})"
            )
        if not meta.get("resourceVersion"):
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        self._check_uid_precondition(info, name, meta.get("uid"), old)
        return self._update_existing(
            info, old, patched, client=client, subresource=subresource, dry_run=dry_run, verb="patch"
        ), False

    # -- delete ----------------------------------------------------------------------------------

    def delete(
        self, info: ResourceInfo, namespace: str, name: str, options: DeleteOptions, *, client: str
    ) -> JsonObj:
        """DELETE. Returns the response body (the object for pods, a Success Status otherwise)."""
        ns = namespace if info.namespaced else ""
        old = self.store.get(info.storage, ns, name)
        if old is None:
            raise errors.not_found(resource=info.plural, group=info.group, name=name)
        meta = old["metadata"]
        if options.uid is not None and options.uid != meta.get("uid"):
            raise errors.conflict(
                resource=info.plural,
                group=info.group,
                name=name,
                cause=(
                    f"Precondition failed: UID in precondition: {options.uid}, "
                    f"UID in object meta: {meta.get('uid')}"
                ),
            )
        if options.resource_version is not None and options.resource_version != meta.get("resourceVersion"):
            raise errors.conflict(
                resource=info.plural,
                group=info.group,
                name=name,
                cause=(
                    f"Precondition failed: ResourceVersion in precondition: {options.resource_version}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}"
                ),
            )
        if info.storage == "pods" and not options.dry_run:  # a direct delete, for the invariants
            self.record(
                event="pod_delete",
                client=client,
                verb="delete",
                kind="Pod",
                namespace=ns,
                name=name,
                resource_version=str(meta.get("resourceVersion", "")),
                pod=PodFacts.of(old),
                budgets=tuple(BudgetFacts.of(p) for p in self._matching_pdbs(old)),
                code=200,
            )
        result = self._delete_object(info, old, options, client=client)
        if info.storage in RETURNS_DELETED_OBJECT:
            return self.view(info, result)
        if result["metadata"].get("deletionTimestamp") and self.store.get(info.storage, ns, name) is not None:
            return self.view(info, result)
        details: JsonObj = {"name": name}
        if info.group:
            details["group"] = info.group
        details["kind"] = info.plural
        details["uid"] = meta.get("uid", "")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _delete_object(
        self, info: ResourceInfo, old: JsonObj, options: DeleteOptions, *, client: str
    ) -> JsonObj:
        meta = old["metadata"]
        grace = self._grace_period(info, old, options)
        finalizers = meta.get("finalizers") or []
        if info.storage == "namespaces":
            return self._mark_deleting(
                info, old, grace=0, client=client, dry_run=options.dry_run, terminating=True
            )
        if grace > 0 or finalizers:
            if meta.get("deletionTimestamp"):
                current = meta.get("deletionGracePeriodSeconds")
                if current and grace < current:
                    return self._mark_deleting(info, old, grace=grace, client=client, dry_run=options.dry_run)
                if not current and not finalizers:
                    return self._remove(info, old, client=client, dry_run=options.dry_run)
                return old
            return self._mark_deleting(info, old, grace=grace, client=client, dry_run=options.dry_run)
        return self._remove(info, old, client=client, dry_run=options.dry_run)

    def _grace_period(self, info: ResourceInfo, old: JsonObj, options: DeleteOptions) -> int:
        if info.storage != "pods":
            return 0
        spec = old.get("spec") or {}
        grace = options.grace_period
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds", 30) or 0)
        if not spec.get("nodeName"):
            grace = 0
        if (old.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            grace = 0
        if grace < 0:
            grace = 1
        return grace

    def _mark_deleting(
        self,
        info: ResourceInfo,
        old: JsonObj,
        *,
        grace: int,
        client: str,
        dry_run: bool,
        terminating: bool = False,
    ) -> JsonObj:
        new = dict(old)
        meta = dict(old["metadata"])
        moment = self.clock.now() + timedelta(seconds=grace)
        previous = parse_time(meta.get("deletionTimestamp") or "")
        if previous is not None and meta.get("deletionGracePeriodSeconds"):
            # shortening a pending deletion: deletionTimestamp - old grace + new grace
            moment = (
                previous
                - timedelta(seconds=int(meta["deletionGracePeriodSeconds"]))
                + timedelta(seconds=grace)
            )
        meta["deletionTimestamp"] = rfc3339(moment)
        meta["deletionGracePeriodSeconds"] = grace
        new["metadata"] = meta
        if terminating:
            new["status"] = dict(old.get("status") or {}, phase="Terminating")
        if dry_run:
            return new
        return self._commit(info, new, old, client=client, verb="delete")

    def _remove(self, info: ResourceInfo, old: JsonObj, *, client: str, dry_run: bool) -> JsonObj:
        if dry_run:
            return old
        meta = old["metadata"]
        gone = self.store.remove(info.storage, meta.get("namespace", ""), meta["name"])
        self.record(
            event="write",
            client=client,
            verb="delete",
            kind=old["kind"],
            namespace=meta.get("namespace", ""),
            name=meta["name"],
            resource_version=(gone or old)["metadata"]["resourceVersion"],
            pod=PodFacts.of(gone or old) if info.storage == "pods" else None,
            removed=True,
        )
        return gone or old

    def finish_deletion(self, info: ResourceInfo, namespace: str, name: str, *, client: str) -> None:
        """What kubelet's final `delete grace=0` or the namespace controller does: remove now."""
        obj = self.store.get(info.storage, namespace, name)
        if obj is not None:
            self._remove(info, obj, client=client, dry_run=False)

    # -- commit ----------------------------------------------------------------------------------

    def _commit(
        self, info: ResourceInfo, new: JsonObj, old: JsonObj | None, *, client: str, verb: str
    ) -> JsonObj:
        meta = new["metadata"]
        deleting = (
            meta.get("deletionTimestamp") and not meta.get("finalizers") and info.storage != "namespaces"
        )
        if (
            old is not None
            and deleting
            and (info.storage != "pods" or not meta.get("deletionGracePeriodSeconds"))
        ):
            # no finalizer (left) and no grace period pending: the object is deleted now
            return self._remove(info, old, client=client, dry_run=False)
        if len(json.dumps(new, separators=(",", ":"))) > ETCD_MAX_REQUEST_BYTES:
            raise errors.etcd_request_too_large()
        stored = self.store.put(info.storage, new)
        before = after = None
        if info.storage == "nodes":
            before = bool(((old or {}).get("spec") or {}).get("unschedulable")) if old is not None else None
            after = bool((stored.get("spec") or {}).get("unschedulable"))
        detail = ""
        if info.plural == "leases":  # the lock state, for halt checks over the history
            detail = (meta.get("annotations") or {}).get("rebootd.io/state", "")
        elif info.storage == "nodes":  # the node's queue record (lock format 3), for queue figures
            detail = (meta.get("annotations") or {}).get("rebootd.io/queued", "")
        pod = PodFacts.of(stored) if info.storage == "pods" else None
        budgets = (BudgetFacts.of(stored),) if info.storage == PDBS else ()
        replicas = None
        if info.storage in SCALED:
            replicas = int((stored.get("spec") or {}).get("replicas", 1))
        self.record(
            event="write",
            client=client,
            verb=verb,
            kind=stored["kind"],
            namespace=meta.get("namespace", ""),
            name=meta["name"],
            resource_version=meta["resourceVersion"],
            unschedulable_before=before,
            unschedulable_after=after,
            detail=detail,
            pod=pod,
            budgets=budgets,
            replicas=replicas,
        )
        return stored

    def put_internal(
        self, storage: str, new: JsonObj, old: JsonObj | None, *, client: str, verb: str
    ) -> JsonObj:
        """A controller's write of a prepared object (status updates, kubelet), no strategy."""
        info = info_of_storage(storage)
        if old is not None and _same(new, old):
            return old
        return self._commit(info, new, old, client=client, verb=verb)

    # -- eviction --------------------------------------------------------------------------------

    def evict(self, namespace: str, name: str, body: Any, *, client: str) -> JsonObj:
        """POST pods/NAME/eviction, following pkg/registry/core/pod/storage/eviction.go. Every
        request that names a pod is recorded: granted ones as `eviction` (in `_evict_delete`),
        refused ones as `eviction_refused`, both with the covering PDBs as they were on arrival."""
        pods = BY_GROUP_RESOURCE[("", "pods")]
        found = self.store.get("pods", namespace, name)
        arrival: Arrival = (
            (PodFacts.of(found), tuple(BudgetFacts.of(p) for p in self._matching_pdbs(found)))
            if found is not None
            else (None, ())
        )
        dry_run = isinstance(body, dict) and bool((body.get("deleteOptions") or {}).get("dryRun"))
        try:
            status = self._evict(pods, namespace, name, body, client=client, arrival=arrival)
        except errors.ApiError as exc:
            if dry_run:  # a dry run disrupts nothing, granted or refused: not recorded
                raise
            self._record_refusal(
                namespace, name, client=client, arrival=arrival, code=exc.code, why=exc.message
            )
            raise
        code = int(status.get("code", 201))
        if code >= 300 and not dry_run:
            why = str(status.get("message", ""))
            self._record_refusal(namespace, name, client=client, arrival=arrival, code=code, why=why)
        return status

    def _record_refusal(
        self, namespace: str, name: str, *, client: str, arrival: Arrival, code: int, why: str
    ) -> None:
        pod, budgets = arrival
        self.record(
            event="eviction_refused",
            client=client,
            verb="evict",
            kind="Pod",
            namespace=namespace,
            name=name,
            pod=pod,
            budgets=budgets,
            code=code,
            detail=why,
            pdb=budgets[0].name if len(budgets) == 1 else None,
            disruptions_allowed=budgets[0].disruptions_allowed if len(budgets) == 1 else None,
        )

    def _evict(
        self, pods: ResourceInfo, namespace: str, name: str, body: Any, *, client: str, arrival: Arrival
    ) -> JsonObj:
        if not isinstance(body, dict):
            raise errors.bad_request("not a Eviction object")
        api_version = body.get("apiVersion") or "policy/v1"
        if api_version not in ("policy/v1", "policy/v1beta1") or body.get("kind") not in (
            None,
            "",
            "Eviction",
        ):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version"
            )
        if (body.get("metadata") or {}).get("name") != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        self.check_namespace(pods, namespace, name, subresource="eviction")
        raw_options = body.get("deleteOptions") or {}
        options = DeleteOptions.from_body(raw_options, query={})
        pod = self.get(pods, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
            self._evict_delete(pod, options, client=client, pdb=None, allowed=None, arrival=arrival)
            return _success(201)
        pdbs = self._matching_pdbs(pod)
        if len(pdbs) > 1:
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": MULTIPLE_PDBS,
                "code": 500,
            }
        if not pdbs:
            self._evict_delete(pod, options, client=client, pdb=None, allowed=None, arrival=arrival)
            return _success(201)
        pdb = pdbs[0]
        status = pdb.get("status") or {}
        if not is_pod_ready(pod):
            policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy")
            healthy, desired = int(status.get("currentHealthy", 0)), int(status.get("desiredHealthy", 0))
            if policy == "AlwaysAllow" or (healthy >= desired > 0):
                self._evict_delete(
                    pod, options, client=client, pdb=pdb["metadata"]["name"], allowed=None, arrival=arrival
                )
                return _success(201)
        self._check_and_decrement(pdb, pod, client=client, dry_run=options.dry_run, arrival=arrival)
        return _success(201)

    def _matching_pdbs(self, pod: JsonObj) -> list[JsonObj]:
        labels = pod["metadata"].get("labels") or {}
        found = []
        for pdb in self.store.sorted_objects("poddisruptionbudgets.policy", pod["metadata"]["namespace"]):
            try:
                selector = label_selector_from_object((pdb.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if selector.matches(labels):
                found.append(pdb)
        return found

    def _check_and_decrement(
        self, pdb: JsonObj, pod: JsonObj, *, client: str, dry_run: bool, arrival: Arrival
    ) -> None:
        name = pdb["metadata"]["name"]
        status = pdb.get("status") or {}
        if int(status.get("observedGeneration", 0)) < int(pdb["metadata"].get("generation", 1)):
            raise errors.too_many_requests(
                message="Cannot evict pod as it would violate the pod's disruption budget.",
                retry_after=10,
                causes=[
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {name} is still being processed by the server.",
                    }
                ],
            )
        allowed = int(status.get("disruptionsAllowed", 0))
        if allowed < 0:
            raise errors.forbidden(
                resource="poddisruptionbudget",
                group="policy",
                name=name,
                why="pdb disruptions allowed is negative",
            )
        if allowed == 0:
            raise errors.too_many_requests(
                message="Cannot evict pod as it would violate the pod's disruption budget.",
                retry_after=0,
                causes=[
                    {
                        "reason": "DisruptionBudget",
                        "message": (
                            f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} "
                            "healthy pods "
                            f"and has {status.get('currentHealthy', 0)} currently"
                        ),
                    }
                ],
            )
        if dry_run:
            return
        new_status = dict(status)
        new_status["disruptionsAllowed"] = allowed - 1
        disrupted = dict(status.get("disruptedPods") or {})
        disrupted[pod["metadata"]["name"]] = self.now()
        new_status["disruptedPods"] = disrupted
        if allowed - 1 == 0:
            new_status["conditions"] = set_condition(
                list(status.get("conditions") or []),
                kind="DisruptionAllowed",
                status="False",
                now=self.now(),
                reason="InsufficientPods",
            )
        new_pdb = dict(pdb, status=new_status)
        new_pdb["metadata"] = dict(pdb["metadata"])
        self.put_internal("poddisruptionbudgets.policy", new_pdb, pdb, client=client, verb="update")
        self._evict_delete(pod, DeleteOptions(), client=client, pdb=name, allowed=allowed, arrival=arrival)

    def _evict_delete(
        self,
        pod: JsonObj,
        options: DeleteOptions,
        *,
        client: str,
        pdb: str | None,
        allowed: int | None,
        arrival: Arrival,
    ) -> None:
        if options.dry_run:
            return
        pods = BY_GROUP_RESOURCE[("", "pods")]
        meta = pod["metadata"]
        self.record(
            event="eviction",
            client=client,
            verb="evict",
            kind="Pod",
            namespace=meta["namespace"],
            name=meta["name"],
            resource_version=meta["resourceVersion"],
            pdb=pdb,
            disruptions_allowed=allowed,
            pod=arrival[0],
            budgets=arrival[1],
            code=201,
        )
        current = pod
        if not meta.get("deletionTimestamp"):
            status = dict(pod.get("status") or {})
            status["conditions"] = set_condition(
                list(status.get("conditions") or []),
                kind="DisruptionTarget",
                status="True",
                now=self.now(),
                reason="EvictionByEvictionAPI",
                message="Eviction API: evicting",
            )
            new = dict(pod, status=status)
            new["metadata"] = dict(meta)
            current = self.put_internal("pods", new, pod, client=client, verb="update")
        self._delete_object(pods, current, options, client=client)


def _success(code: int) -> JsonObj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}


def _same(new: JsonObj, old: JsonObj) -> bool:
    """Equal apart from metadata.resourceVersion (a no-op write)."""
    if new.keys() != old.keys():
        return False
    for key, value in new.items():
        if key == "metadata":
            a = {k: v for k, v in value.items() if k != "resourceVersion"}
            b = {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
            if a != b:
                return False
        elif old[key] != value:
            return False
    return True


def _normalise_lease(spec: JsonObj) -> JsonObj:
    for key in ("leaseDurationSeconds", "leaseTransitions"):
        value = spec.get(key)
        if isinstance(value, float):
            spec[key] = int(value)
    return {k: v for k, v in spec.items() if v is not None}
