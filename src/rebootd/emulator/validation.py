"""Decoding (400) and validation (422) of request bodies, strict where kube-apiserver is strict.

Rule: a body the real server cannot decode (wrong JSON types, a MicroTime without exactly six
fractional digits and a zone) is a 400 `X in version "v" cannot be handled as a X: ...`; a decoded
object that breaks a validation rule is a 422 `Invalid` with field causes. Messages follow the Go
sources (encoding/json, time.Parse, pkg/apis/*/validation). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rebootd.emulator.errors import (
    ApiError,
    FieldError,
    bad_request,
    forbidden_value,
    invalid,
    invalid_value,
    required_value,
)
from rebootd.emulator.resources import ResourceInfo
from rebootd.selectors import SelectorError, validate_label_key, validate_label_value

MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})")
_ZONE_RE = re.compile(r"^(Z|[+-]\d{2}:\d{2})$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
INT32_MAX = 2**31 - 1
# k8s.io/apimachinery/pkg/api/validation: TotalAnnotationSizeLimitB (keys and values, in bytes).
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024


class DecodeError(Exception):
    """The Go decoder's error text, before the `X in version ... cannot be handled` prefix."""


def parse_micro_time(value: str) -> str:
    """Check `value` against RFC3339Micro the way Go's time.Parse does; return the error text or ""."""
    prefix = f'parsing time "{value}" as "{MICRO_LAYOUT}": '
    match = _DATE_RE.match(value)
    if match is None:
        return prefix + f'cannot parse "{value}" as "2006"'
    rest = value[match.end() :]
    if len(rest) < 7 or rest[0] != "." or not rest[1:7].isdigit():
        return prefix + f'cannot parse "{rest}" as ".000000"'
    zone = rest[7:]
    if not _ZONE_RE.match(zone):
        return prefix + f'cannot parse "{zone}" as "Z07:00"'
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return prefix + "day out of range"
    return ""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _unmarshal_error(value: Any, *, struct: str, path: str, go_type: str) -> DecodeError:
    return DecodeError(
        f"json: cannot unmarshal {_type_name(value)} into Go struct field {struct}.{path} of type {go_type}"
    )


def _check_int32(value: Any, *, struct: str, path: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _unmarshal_error(value, struct=struct, path=path, go_type="int32")
    if isinstance(value, float) and not value.is_integer():
        raise _unmarshal_error(value, struct=struct, path=path, go_type="int32")
    if not -(2**31) <= int(value) <= INT32_MAX:
        raise _unmarshal_error(value, struct=struct, path=path, go_type="int32")


def _check_string(value: Any, *, struct: str, path: str) -> None:
    if value is not None and not isinstance(value, str):
        raise _unmarshal_error(value, struct=struct, path=path, go_type="string")


def _check_micro(value: Any, *, struct: str, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise _unmarshal_error(value, struct=struct, path=path, go_type="v1.MicroTime")
    problem = parse_micro_time(value)
    if problem:
        raise DecodeError(problem)


def _check_string_map(value: Any, *, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise _unmarshal_error(value, struct="ObjectMeta", path=path, go_type="map[string]string")
    for item in value.values():
        if not isinstance(item, str):
            raise _unmarshal_error(item, struct="ObjectMeta", path=path, go_type="string")


def decode_check(info: ResourceInfo, body: Any, *, version: str | None = None) -> dict[str, Any]:
    """Raise the 400 a real server answers when `body` cannot be decoded as `info.kind`."""
    shown_version = version or info.version
    prefix = f'{info.kind} in version "{shown_version}" cannot be handled as a {info.kind}: '
    if not isinstance(body, dict):
        raise bad_request(prefix + f"json: cannot unmarshal {_type_name(body)} into Go value of type struct")
    kind = body.get("kind")
    if kind not in (None, "", info.kind):
        raise bad_request(f"the object provided is unrecognized (must be of type {info.kind}): {kind}")
    try:
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise _unmarshal_error(metadata, struct=info.kind, path="metadata", go_type="v1.ObjectMeta")
        metadata = metadata or {}
        for key in ("name", "namespace", "generateName", "resourceVersion", "uid"):
            _check_string(metadata.get(key), struct="ObjectMeta", path=f"metadata.{key}")
        _check_string_map(metadata.get("labels"), path="metadata.labels")
        _check_string_map(metadata.get("annotations"), path="metadata.annotations")
        if info.kind == "Lease" and info.group == "coordination.k8s.io":
            _check_lease(body)
        if info.kind == "Event" and info.group == "events.k8s.io":
            _check_micro(body.get("eventTime"), struct="Event", path="eventTime")
    except DecodeError as exc:
        raise bad_request(prefix + str(exc)) from exc
    return body


def _check_lease(body: Mapping[str, Any]) -> None:
    spec = body.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise _unmarshal_error(spec, struct="Lease", path="spec", go_type="v1.LeaseSpec")
    _check_string(spec.get("holderIdentity"), struct="LeaseSpec", path="spec.holderIdentity")
    _check_int32(spec.get("leaseDurationSeconds"), struct="LeaseSpec", path="spec.leaseDurationSeconds")
    _check_int32(spec.get("leaseTransitions"), struct="LeaseSpec", path="spec.leaseTransitions")
    _check_micro(spec.get("acquireTime"), struct="LeaseSpec", path="spec.acquireTime")
    _check_micro(spec.get("renewTime"), struct="LeaseSpec", path="spec.renewTime")
    _check_string(spec.get("strategy"), struct="LeaseSpec", path="spec.strategy")
    _check_string(spec.get("preferredHolder"), struct="LeaseSpec", path="spec.preferredHolder")


def _name_errors(info: ResourceInfo, name: str) -> list[FieldError]:
    if info.plural == "namespaces":
        if not _DNS1123_LABEL.match(name) or len(name) > 63:
            return [invalid_value("metadata.name", name, _LABEL_MSG)]
        return []
    if info.plural == "events":
        return []
    if len(name) > 253:
        return [invalid_value("metadata.name", name, "must be no more than 253 characters")]
    if not _DNS1123_SUBDOMAIN.match(name):
        return [invalid_value("metadata.name", name, _SUBDOMAIN_MSG)]
    return []


def _label_errors(labels: Mapping[str, str]) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in labels.items():
        try:
            validate_label_key(key)
        except SelectorError as exc:
            errors.append(FieldError("FieldValueInvalid", "metadata.labels", str(exc).split(": ", 1)[-1]))
        try:
            validate_label_value(value)
        except SelectorError as exc:
            # ValidateLabels: field.Invalid(metadata.labels, value, msg); IsValidLabelValue counts bytes.
            detail = str(exc).split(": ", 1)[-1].replace("63 characters", "63 bytes")
            errors.append(FieldError("FieldValueInvalid", "metadata.labels", detail))
    return errors


def annotation_size_errors(annotations: Mapping[str, Any]) -> list[FieldError]:
    """ValidateAnnotationsSize: all keys and values together at most 262,144 bytes (UTF-8), else
    `field.TooLong(fldPath, "", TotalAnnotationSizeLimitB)`: "Too long: may not be more than N
    bytes" (as Kubernetes 1.37 says it; older releases said "must have at most N bytes")."""
    total = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        return [
            FieldError(
                "FieldValueTooLong",
                "metadata.annotations",
                f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes",
            )
        ]
    return []


def validate(info: ResourceInfo, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    """Raise 422 Invalid for an object the real validation rejects."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    errors: list[FieldError] = []
    if old is None:
        errors.extend(_name_errors(info, name))
    errors.extend(_label_errors(meta.get("labels") or {}))
    errors.extend(annotation_size_errors(meta.get("annotations") or {}))
    spec = obj.get("spec") or {}
    if info.kind == "Lease":
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and int(duration) <= 0:
            errors.append(invalid_value("spec.leaseDurationSeconds", int(duration), "must be greater than 0"))
        transitions = spec.get("leaseTransitions")
        if transitions is not None and int(transitions) < 0:
            errors.append(
                invalid_value("spec.leaseTransitions", int(transitions), "must be greater than or equal to 0")
            )
    elif info.kind == "Pod":
        if old is None and not spec.get("containers"):
            errors.append(required_value("spec.containers"))
        if old is not None:
            errors.extend(_pod_update_errors(spec, old.get("spec") or {}))
    elif info.kind == "Event" and info.group == "events.k8s.io" and old is None:
        errors.extend(_events_v1_errors(obj))
    elif info.kind == "PodDisruptionBudget" and "minAvailable" in spec and "maxUnavailable" in spec:
        errors.append(
            invalid_value(
                "spec",
                spec,
                "minAvailable and maxUnavailable cannot be both set",
                raw="policy.PodDisruptionBudgetSpec{...}",
            )
        )
    if errors:
        raise invalid(kind=info.kind, group=info.group, name=name, errors=errors)


def _events_v1_errors(event: Mapping[str, Any]) -> list[FieldError]:
    """ValidateEventCreate for events.k8s.io/v1 (checked on the stored core/v1 form)."""
    errors: list[FieldError] = []
    if not event.get("eventTime"):
        errors.append(required_value("eventTime"))
    if event.get("type") not in ("Normal", "Warning"):
        errors.append(invalid_value("type", "", f"has invalid value: {event.get('type', '')}"))
    for core_key, v1_key in (
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("action", "action"),
        ("reason", "reason"),
    ):
        if not event.get(core_key):
            errors.append(required_value(v1_key))
    return errors


_POD_MUTABLE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _pod_update_errors(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    def normalised(spec: Mapping[str, Any]) -> dict[str, Any]:
        result = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations")}
        for key in ("containers", "initContainers"):
            if isinstance(result.get(key), list):
                result[key] = [
                    {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                    for c in result[key]
                ]
        return result

    if normalised(new) != normalised(old):
        return [forbidden_value("spec", _POD_MUTABLE)]
    old_tolerations = old.get("tolerations") or []
    new_tolerations = new.get("tolerations") or []
    if any(t not in new_tolerations for t in old_tolerations):
        return [
            forbidden_value(
                "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
            )
        ]
    return []


def missing_resource_version(*, info: ResourceInfo, name: str) -> ApiError:
    """The generic store's answer to an unconditional update of a type that forbids it."""
    return invalid(
        kind=info.plural,
        group=info.group,
        name=name,
        errors=[invalid_value("metadata.resourceVersion", 0, "must be specified for an update", raw="0")],
    )


# -- unknown fields (fieldValidation=Ignore|Warn|Strict) ------------------------------------------
#
# A schema is a dict of known keys (value None: anything below is accepted; a dict: a nested object;
# a one-element list: an array of that schema). Built-in types prune unknown fields; the schemas
# cover the objects rebootd writes (Lease, Node, Events) fully and every other kind's top level
# and metadata, which is where a client's typo would otherwise go unnoticed.
_OWNER_REFERENCE: dict[str, Any] = dict.fromkeys(
    ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")
)
_OBJECT_META: dict[str, Any] = {
    **dict.fromkeys(
        (
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "finalizers",
            "managedFields",
        )
    ),
    "ownerReferences": [_OWNER_REFERENCE],
}
_TOP = {"apiVersion": None, "kind": None, "metadata": _OBJECT_META}
_OBJECT_REFERENCE = dict.fromkeys(
    ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
)
SCHEMAS: Mapping[str, dict[str, Any]] = {
    "Lease": {
        **_TOP,
        "spec": dict.fromkeys(
            (
                "acquireTime",
                "holderIdentity",
                "leaseDurationSeconds",
                "leaseTransitions",
                "preferredHolder",
                "renewTime",
                "strategy",
            )
        ),
    },
    "Node": {
        **_TOP,
        "spec": {
            **dict.fromkeys(
                ("podCIDR", "podCIDRs", "providerID", "unschedulable", "configSource", "externalID")
            ),
            "taints": [dict.fromkeys(("key", "value", "effect", "timeAdded"))],
        },
        "status": None,
    },
    "Event": {
        **_TOP,
        "involvedObject": _OBJECT_REFERENCE,
        "related": _OBJECT_REFERENCE,
        "source": dict.fromkeys(("component", "host")),
        "series": dict.fromkeys(("count", "lastObservedTime")),
        **dict.fromkeys(
            (
                "reason",
                "message",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "action",
                "reportingComponent",
                "reportingInstance",
            )
        ),
    },
    "Event.events.k8s.io": {
        **_TOP,
        "regarding": _OBJECT_REFERENCE,
        "related": _OBJECT_REFERENCE,
        "deprecatedSource": dict.fromkeys(("component", "host")),
        "series": dict.fromkeys(("count", "lastObservedTime")),
        **dict.fromkeys(
            (
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action",
                "reason",
                "note",
                "type",
                "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp",
                "deprecatedCount",
            )
        ),
    },
    "Namespace": {**_TOP, "spec": None, "status": None},
}
_GENERIC = {**_TOP, "spec": None, "status": None}
FIELD_VALIDATION_MODES = ("Ignore", "Warn", "Strict")


def _prune(value: Any, schema: Any, path: str, unknown: list[str]) -> None:
    if schema is None:
        return
    if isinstance(schema, list):
        if isinstance(value, list):
            for index, item in enumerate(value):
                _prune(item, schema[0], f"{path}[{index}]", unknown)
        return
    if not isinstance(value, dict):
        return
    for key in list(value):
        child = f"{path}.{key}" if path else key
        if key not in schema:
            unknown.append(child)
            del value[key]
        else:
            _prune(value[key], schema[key], child, unknown)


def prune_unknown_fields(info: ResourceInfo, obj: dict[str, Any], *, mode: str) -> list[str]:
    """Drop fields the type does not have (as decoding into the Go struct does) and return their
    paths; with mode Strict raise the 400 `strict decoding error` instead."""
    key = f"{info.kind}.{info.group}" if info.group == "events.k8s.io" else info.kind
    schema = SCHEMAS.get(key, _GENERIC)
    unknown: list[str] = []
    _prune(obj, schema, "", unknown)
    if unknown and mode == "Strict":
        listed = ", ".join(f'unknown field "{path}"' for path in unknown)
        prefix = f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}'
        raise bad_request(f"{prefix}: strict decoding error: {listed}")
    return unknown
