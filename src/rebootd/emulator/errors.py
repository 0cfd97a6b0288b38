"""API errors of the emulator, shaped exactly as kube-apiserver's `Status` bodies.

Rule: every failure inside the emulator is an `ApiError` carrying the Status the real server would
send (message texts copied from k8s.io/apimachinery/pkg/api/errors); the HTTP layer only serialises
it. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One `field.Error`: `type` is the cause reason (FieldValueInvalid ...), `body` its ErrorBody()."""

    type: str
    field: str
    body: str

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def go_quote(value: Any) -> str:
    """Format a value the way `field.Invalid` does with %#v for the common JSON types."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def invalid_value(field: str, value: Any, detail: str, *, raw: str | None = None) -> FieldError:
    shown = raw if raw is not None else go_quote(value)
    return FieldError("FieldValueInvalid", field, f"Invalid value: {shown}: {detail}")


def required_value(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def forbidden_value(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, f"Forbidden: {detail}")


def unsupported_value(field: str, value: Any, supported: Sequence[str]) -> FieldError:
    listed = ", ".join(go_quote(s) for s in supported)
    return FieldError(
        "FieldValueNotSupported", field, f"Unsupported value: {go_quote(value)}: supported values: {listed}"
    )


class ApiError(Exception):
    """A failure answered with a `Status` body and its HTTP code."""

    def __init__(
        self,
        *,
        code: int,
        reason: str,
        message: str,
        details: JsonObj | None = None,
        retry_after: int | None = None,
        continue_token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details else None
        self.retry_after = retry_after
        self.continue_token = continue_token
        if retry_after:
            self.details = dict(self.details or {})
            self.details["retryAfterSeconds"] = retry_after

    def status(self) -> JsonObj:
        metadata: JsonObj = {}
        if self.continue_token:
            metadata["continue"] = self.continue_token
        body: JsonObj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": metadata,
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(*, name: str, group: str, kind: str) -> JsonObj:
    details: JsonObj = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def qualified(*, resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(*, resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        code=404,
        reason="NotFound",
        message=f'{qualified(resource=resource, group=group)} "{name}" not found',
        details=_details(name=name, group=group, kind=resource),
    )


def already_exists(*, resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        code=409,
        reason="AlreadyExists",
        message=f'{qualified(resource=resource, group=group)} "{name}" already exists',
        details=_details(name=name, group=group, kind=resource),
    )


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(*, resource: str, group: str, name: str, cause: str = MODIFIED) -> ApiError:
    return ApiError(
        code=409,
        reason="Conflict",
        message=f'Operation cannot be fulfilled on {qualified(resource=resource, group=group)} "{name}": '
        f"{cause}",
        details=_details(name=name, group=group, kind=resource),
    )


def invalid(*, kind: str, group: str, name: str, errors: Sequence[FieldError]) -> ApiError:
    """`NewInvalid(qualifiedKind, name, errs)`: `kind` is a Kind (`Lease`) or, as the generic store
    does for a missing resourceVersion, a plural resource (`leases`)."""
    texts = [str(e) for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(name=name, group=group, kind=kind)
    details["causes"] = [{"reason": e.type, "message": e.body, "field": e.field} for e in errors]
    return ApiError(
        code=422,
        reason="Invalid",
        message=f'{qualified(resource=kind, group=group)} "{name}" is invalid: {joined}',
        details=details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(code=400, reason="BadRequest", message=message)


def forbidden(
    *, resource: str, group: str, name: str, why: str, causes: Sequence[JsonObj] | None = None
) -> ApiError:
    target = (
        f'{qualified(resource=resource, group=group)} "{name}"'
        if name
        else qualified(resource=resource, group=group)
    )
    details = _details(name=name, group=group, kind=resource)
    if causes:
        details["causes"] = list(causes)
    return ApiError(code=403, reason="Forbidden", message=f"{target} is forbidden: {why}", details=details)


def too_many_requests(*, message: str, retry_after: int, causes: Sequence[JsonObj] = ()) -> ApiError:
    details: JsonObj = {}
    if causes:
        details["causes"] = list(causes)
    return ApiError(
        code=429, reason="TooManyRequests", message=message, details=details, retry_after=retry_after or None
    )


def expired(message: str, *, continue_token: str | None = None) -> ApiError:
    return ApiError(code=410, reason="Expired", message=message, continue_token=continue_token)


def gone(message: str) -> ApiError:
    return ApiError(code=410, reason="Gone", message=message)


def method_not_supported(*, resource: str, group: str, verb: str) -> ApiError:
    return ApiError(
        code=405,
        reason="MethodNotAllowed",
        message=f"{verb} is not supported on resources of kind "
        + go_quote(qualified(resource=resource, group=group)),
        details=_details(name="", group=group, kind=resource),
    )


def internal(message: str) -> ApiError:
    return ApiError(
        code=500,
        reason="InternalError",
        message=f"Internal error occurred: {message}",
        details={"causes": [{"message": message}]},
    )


def request_entity_too_large(limit: int) -> ApiError:
    """`NewRequestEntityTooLargeError("limit is N")`: a request body over the server's limit."""
    return ApiError(
        code=413, reason="RequestEntityTooLarge", message=f"Request entity too large: limit is {limit}"
    )


def etcd_request_too_large() -> ApiError:
    """etcd refuses a write over its --max-request-bytes; kube-apiserver passes the error on as a
    500 with no reason (ErrorToAPIStatus of a non-API error): "etcdserver: request is too large"."""
    return ApiError(code=500, reason="", message="etcdserver: request is too large")


def unauthorized() -> ApiError:
    return ApiError(code=401, reason="Unauthorized", message="Unauthorized")


def service_unavailable(message: str = "the server is currently unable to handle the request") -> ApiError:
    return ApiError(code=503, reason="ServiceUnavailable", message=message)


def path_not_found() -> ApiError:
    return ApiError(code=404, reason="NotFound", message="the server could not find the requested resource")
