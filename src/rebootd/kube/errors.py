"""The API's failures as typed exceptions.

Rule: a failed call is a `KubeError` carrying the server's `Status` (reason, message, body,
Retry-After), or status 0 for a transport or configuration failure; the statuses callers act on
have a subclass (404 `NotFound`, 409 `Conflict`, 410 `Expired`, 422 `Invalid`, 429
`TooManyRequests`). Pure: mapping a response to its error needs no I/O.
"""

from __future__ import annotations

import json

from rebootd.kube.paths import JsonObj


class KubeError(Exception):
    """A failed API call: the server's Status, or status 0 for transport/configuration failures."""

    def __init__(
        self,
        *,
        status: int,
        reason: str,
        message: str,
        retry_after: float | None = None,
        body: JsonObj | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.body: JsonObj = body if body is not None else {}


class NotFound(KubeError):
    """404."""


class Conflict(KubeError):
    """409 (Conflict or AlreadyExists): never retried here, the caller re-reads and decides."""


class Expired(KubeError):
    """410: a watch resourceVersion or a list continue token is too old."""


class Invalid(KubeError):
    """422."""


class TooManyRequests(KubeError):
    """429 after the retries are exhausted, or at once for an eviction (PDB says no)."""


_ERRORS_BY_STATUS: dict[int, type[KubeError]] = {
    404: NotFound,
    409: Conflict,
    410: Expired,
    422: Invalid,
    429: TooManyRequests,
}


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After: N` (seconds, as kube-apiserver sends it); anything else is ignored."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_status(
    *, status: int, body: JsonObj, http_reason: str = "", retry_after: float | None = None
) -> KubeError:
    """The typed error for an HTTP status and its `Status` body (pure)."""
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    if retry_after is None and isinstance(details, dict):
        seconds = details.get("retryAfterSeconds")
        if isinstance(seconds, int | float) and seconds > 0:
            retry_after = float(seconds)
    reason = body.get("reason") or http_reason or "Unknown"
    message = body.get("message") or http_reason or f"HTTP {status}"
    cls = _ERRORS_BY_STATUS.get(status, KubeError)
    return cls(status=status, reason=str(reason), message=str(message), retry_after=retry_after, body=body)


def error_from_response(
    *, status: int, http_reason: str, raw: bytes, retry_after_header: str | None
) -> KubeError:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {}
    body: JsonObj = parsed if isinstance(parsed, dict) else {}
    if not body and raw:
        body = {"message": raw[:500].decode("utf-8", "replace")}
    return error_from_status(
        status=status, body=body, http_reason=http_reason, retry_after=parse_retry_after(retry_after_header)
    )
