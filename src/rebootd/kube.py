"""Thin async facade over kubernetes-asyncio: the calls rebootd makes, nothing else.

Rule: every Kubernetes API call of rebootd goes through `Kube`, which returns the JSON exactly as
the server sent it (plain dicts, never generated model objects), raises typed `KubeError`s, retries
only what is safe to retry, and counts every attempt per verb (for metrics and benchmarks).

- Retries (`RetryPolicy`): 429 (not for evictions: the drain decides), 5xx (not 500 for evictions:
  that is the "more than one PodDisruptionBudget" configuration error), connection errors and
  timeouts; exponential backoff with full jitter, or the server's `Retry-After` when it sends one.
  400/403/404/409/410/422 are never retried: 409 goes back to the caller's read-modify-write.
- Transport failures (connection refused/reset, timeouts, a broken watch, a bad kubeconfig) are
  `KubeError`s with status 0. A retried write whose first attempt did reach the server may answer
  409 / 404 for our own change: callers treat those as "re-read and decide" anyway.
- `watch` is the raw stream (an async generator): a caller that stops early closes it with
  `contextlib.aclosing`, or the connection stays open until garbage collection.
- MicroTime fields are written as strings from `format_microtime` (exactly six fractional digits
  and `Z`): the library's `isoformat()` serialisation is refused by a real apiserver.
- `ObjectFollower` keeps the latest state of one named object by list+watch, so waiters react to a
  change within a second instead of polling.
- Footprint: the library is loaded through `rebootd._kubeclient` (only the modules we use; see
  there; the figures are in bench/README.md), and requests go through `ApiClient.call_api` with the
  resource path instead of the generated API classes (the heaviest part of the library). The
  paths of the handful of resources rebootd touches are the only thing written by hand here.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import quote, urlsplit

import aiohttp

from rebootd import _kubeclient
from rebootd.logs import get_logger

if TYPE_CHECKING:
    from rebootd.metrics import Metrics

JsonObj = dict[str, Any]
WatchKind = Literal["nodes", "pods", "leases", "poddisruptionbudgets"]
PatchType = Literal["strategic", "merge", "json"]
Sleep = Callable[[float], Awaitable[None]]

PAGE_SIZE = 500
PATCH_CONTENT_TYPES: dict[str, str] = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
WATCH_MAX_LINE = 64 * 1024 * 1024  # one watch event per line; etcd caps objects at ~1.5 MiB
# A list of the items' metadata only, as client-go's metadata client asks (plain JSON as fallback).
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
WATCH_READ_TIMEOUT = 150.0  # seconds without a byte on a watch: the connection is taken as dead
WATCH_STABLE_SECONDS = 1.0  # a watch up this long (or with an event) resets the follower's backoff


# --- errors -------------------------------------------------------------------------------------


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


# --- retry policy (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: `attempts` in all, full-jitter exponential backoff from `base` up to `cap`
    seconds, or the server's Retry-After (at most `max_retry_after`)."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base <= 0 or self.cap < self.base or self.max_retry_after < 0:
            raise ValueError(f"invalid retry policy {self!r}")

    def backoff(self, *, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        return rng.uniform(0.0, min(self.cap, self.base * 2 ** max(0, attempt - 1)))

    def delay(self, *, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt=attempt, rng=rng)


def is_retryable(*, status: int, verb: str) -> bool:
    """Status 0 is a transport failure (connection refused/reset, timeout)."""
    if status == 0:
        return True
    if status == 429:
        return verb != "evict"
    if status == 500 and verb == "evict":
        return False
    return status >= 500


# --- formats and paths (pure) -------------------------------------------------------------------


def format_microtime(dt: datetime) -> str:
    """A MicroTime as kube-apiserver writes it: UTC, exactly six fractional digits, `Z`."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: MicroTime needs a timezone-aware datetime")
    u = dt.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


@dataclass(frozen=True)
class Resource:
    api_version: str  # "v1" or "GROUP/VERSION"
    plural: str
    kind: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


RESOURCES: dict[str, Resource] = {
    "nodes": Resource("v1", "nodes", "Node", namespaced=False),
    "pods": Resource("v1", "pods", "Pod", namespaced=True),
    "events": Resource("v1", "events", "Event", namespaced=True),
    "daemonsets": Resource("apps/v1", "daemonsets", "DaemonSet", namespaced=True),
    # listed only by `rebootd simulate --from-cluster` (a read-only snapshot), never by the daemon
    "deployments": Resource("apps/v1", "deployments", "Deployment", namespaced=True),
    "replicasets": Resource("apps/v1", "replicasets", "ReplicaSet", namespaced=True),
    "statefulsets": Resource("apps/v1", "statefulsets", "StatefulSet", namespaced=True),
    "leases": Resource("coordination.k8s.io/v1", "leases", "Lease", namespaced=True),
    "poddisruptionbudgets": Resource(
        "policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", namespaced=True
    ),
}


def resource_path(
    kind: str, *, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    """The REST path of a collection (all namespaces when `namespace` is None) or of one object."""
    res = RESOURCES[kind]
    if not res.namespaced and namespace is not None:
        raise ValueError(f"{kind} are cluster-scoped")
    if res.namespaced and name is not None and not namespace:
        raise ValueError(f"{kind} {name!r} needs a namespace")
    path = res.prefix
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{res.plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if sub is not None:
        path += f"/{sub}"
    return path


def selector_query(*, field_selector: str | None, label_selector: str | None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if field_selector:
        query.append(("fieldSelector", field_selector))
    if label_selector:
        query.append(("labelSelector", label_selector))
    return query


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED / MODIFIED / DELETED / BOOKMARK
    object: dict[str, Any]


def resource_version(obj: JsonObj | None) -> str | None:
    if obj is None:
        return None
    rv = obj.get("metadata", {}).get("resourceVersion")
    return str(rv) if rv is not None else None


# --- the facade ---------------------------------------------------------------------------------


class Kube:
    """One ApiClient for the process; every method is one API operation (plus retries)."""

    def __init__(
        self,
        *,
        api_client: Any,
        retry: RetryPolicy,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        request_timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        reauthenticate: Callable[[], Awaitable[None]] | None = None,
        before_send: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._api = api_client
        # Awaited (with the verb) before every attempt is sent: the simulator's seam for a
        # daemon frozen right before a request (its process stopped); None in production.
        self.before_send = before_send
        self.retry = retry
        self._metrics = metrics
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._timeout = request_timeout
        self._page_size = page_size
        self._reauthenticate = reauthenticate
        self._log = get_logger()
        self.requests: Counter[str] = Counter()

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: Path | None = None,
        user_agent: str = "rebootd",
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        request_timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
    ) -> Kube:
        """`kubeconfig` given: that file; else the in-cluster service account when present; else
        $KUBECONFIG (a `:`-separated list is merged) or ~/.kube/config."""
        lib = _kubeclient.load()
        configuration = lib.configuration()
        reauthenticate = None
        try:
            if kubeconfig is None and _in_cluster(lib):
                # the library re-reads the projected token file every minute (token rotation)
                lib.load_incluster_config(client_configuration=configuration)
            else:
                path = str(kubeconfig) if kubeconfig is not None else _default_kubeconfig()
                loader = await lib.load_kube_config(
                    config_file=path, client_configuration=configuration, persist_config=False
                )
                reauthenticate = _exec_plugin_refresh(loader=loader, configuration=configuration)
        except (lib.config_exception, OSError, KeyError, TypeError, ValueError) as exc:
            raise KubeError(status=0, reason="ConfigError", message=f"{type(exc).__name__}: {exc}") from exc
        api_client = lib.api_client(configuration=configuration)
        api_client.user_agent = user_agent
        _resolve_proxy_once(api_client.rest_client, host=str(configuration.host))
        return cls(
            api_client=api_client,
            retry=retry if retry is not None else RetryPolicy(),
            metrics=metrics,
            sleep=sleep,
            rng=rng,
            request_timeout=request_timeout,
            page_size=page_size,
            reauthenticate=reauthenticate,
        )

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- nodes ---

    async def get_node(self, *, name: str) -> JsonObj:
        return await self._json(verb="get", method="GET", path=resource_path("nodes", name=name))

    async def list_nodes(
        self, *, label_selector: str | None = None, metadata_only: bool = False
    ) -> list[JsonObj]:
        """The Nodes; `metadata_only`: each Node's metadata alone (a PartialObjectMetadataList:
        about a tenth of a real Node, whose status lists its images)."""
        items, _ = await self.list_with_version(
            kind="nodes", label_selector=label_selector, metadata_only=metadata_only
        )
        return items

    async def count_nodes(self, *, label_selector: str | None = None) -> int:
        """How many Nodes there are: one item and the server's `remainingItemCount` (a list of one);
        with a label selector (no count from the server then) the matching Nodes, listed."""
        if label_selector:
            return len(await self.list_nodes(label_selector=label_selector))
        page = await self._json(
            verb="list", method="GET", path=resource_path("nodes"), query=[("limit", "1")]
        )
        remaining = (page.get("metadata") or {}).get("remainingItemCount")
        if remaining is None and (page.get("metadata") or {}).get("continue"):
            return len(await self.list_nodes())  # a server that does not count: list them all
        return len(page.get("items") or []) + int(remaining or 0)

    async def patch_node(self, *, name: str, patch: JsonObj | list[Any], patch_type: PatchType) -> JsonObj:
        if patch_type == "json" and not isinstance(patch, list):
            raise ValueError("a JSON patch is a list of operations")
        if patch_type != "json" and not isinstance(patch, dict):
            raise ValueError(f"a {patch_type} merge patch is an object")
        return await self._json(
            verb="patch",
            method="PATCH",
            path=resource_path("nodes", name=name),
            body=patch,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )

    # --- pods ---

    async def list_pods(
        self,
        *,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> list[JsonObj]:
        items, _ = await self.list_with_version(
            kind="pods", namespace=namespace, field_selector=field_selector, label_selector=label_selector
        )
        return items

    async def get_pod(self, *, namespace: str, name: str) -> JsonObj:
        return await self._json(
            verb="get", method="GET", path=resource_path("pods", namespace=namespace, name=name)
        )

    async def evict_pod(
        self,
        *,
        namespace: str,
        name: str,
        grace_period_seconds: int | None = None,
        fence: Callable[[], None] | None = None,
    ) -> None:
        """policy/v1 Eviction. 429 (a PDB refuses) is raised at once as TooManyRequests.

        `fence()` is called right before each attempt is sent (after `before_send`) and raises to
        stop it: evictions cannot be conditioned on another object, so the caller fences them by
        time at the last moment before the request leaves (see lock.py)."""
        body: JsonObj = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if grace_period_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
        await self._json(
            verb="evict",
            method="POST",
            path=resource_path("pods", namespace=namespace, name=name, sub="eviction"),
            body=body,
            fence=fence,
        )

    async def delete_pod(self, *, namespace: str, name: str, grace_period_seconds: int | None = None) -> None:
        body: JsonObj | None = None
        if grace_period_seconds is not None:
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": grace_period_seconds}
        await self._json(
            verb="delete",
            method="DELETE",
            path=resource_path("pods", namespace=namespace, name=name),
            body=body,
        )

    # --- workloads ---

    async def get_daemonset(self, *, namespace: str, name: str) -> JsonObj:
        return await self._json(
            verb="get", method="GET", path=resource_path("daemonsets", namespace=namespace, name=name)
        )

    async def list_pdbs(self, *, namespace: str | None = None) -> list[JsonObj]:
        items, _ = await self.list_with_version(kind="poddisruptionbudgets", namespace=namespace)
        return items

    # --- leases and events ---

    async def get_lease(self, *, namespace: str, name: str) -> JsonObj:
        return await self._json(
            verb="get", method="GET", path=resource_path("leases", namespace=namespace, name=name)
        )

    async def create_lease(self, *, namespace: str, body: JsonObj) -> JsonObj:
        return await self._json(
            verb="create", method="POST", path=resource_path("leases", namespace=namespace), body=body
        )

    async def replace_lease(self, *, namespace: str, name: str, body: JsonObj) -> JsonObj:
        return await self._json(
            verb="update",
            method="PUT",
            path=resource_path("leases", namespace=namespace, name=name),
            body=body,
        )

    async def create_event(self, *, namespace: str, body: JsonObj) -> JsonObj:
        return await self._json(
            verb="create", method="POST", path=resource_path("events", namespace=namespace), body=body
        )

    # --- list and watch ---

    async def list_with_version(
        self,
        *,
        kind: str,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        metadata_only: bool = False,
    ) -> tuple[list[JsonObj], str]:
        """All items, paged (`limit` = page size), and the list's resourceVersion. An expired
        continue token falls back to one unpaged list, as client-go's pager does. `metadata_only`:
        the items' metadata alone (`PartialObjectMetadata`, as client-go's metadata client asks)."""
        accept = METADATA_LIST_ACCEPT if metadata_only else "application/json"
        path = resource_path(kind, namespace=namespace)
        query = selector_query(field_selector=field_selector, label_selector=label_selector)
        items: list[JsonObj] = []
        token = ""
        while True:
            page_query = [*query, ("limit", str(self._page_size))]
            if token:
                page_query.append(("continue", token))
            try:
                page = await self._json(verb="list", method="GET", path=path, query=page_query, accept=accept)
            except Expired:
                if not token:
                    raise
                self._log.info("rebootd.kube.list_continue_expired", path=path, fallback="unpaged list")
                page = await self._json(verb="list", method="GET", path=path, query=query, accept=accept)
                return list(page.get("items") or []), str(page.get("metadata", {}).get("resourceVersion", ""))
            items.extend(page.get("items") or [])
            meta = page.get("metadata", {})
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion", ""))

    async def watch(
        self,
        *,
        kind: WatchKind,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """The raw event stream (bookmarks included) until the server ends it. Raises `Expired` on a
        410 ERROR event, `KubeError` (status 0) when the stream breaks; the caller resumes."""
        query = selector_query(field_selector=field_selector, label_selector=label_selector)
        query += [("watch", "true"), ("allowWatchBookmarks", "true")]
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", str(timeout_seconds)))
        # a silent stream is given up after WATCH_READ_TIMEOUT (or just after the server's own end):
        # apiservers send a bookmark about every minute, so only a dead connection stays this quiet
        read_timeout = min(
            WATCH_READ_TIMEOUT, (timeout_seconds if timeout_seconds is not None else 3600) + 30
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=read_timeout)
        resp = await self._send(
            verb="watch",
            method="GET",
            path=resource_path(kind, namespace=namespace),
            query=query,
            request_timeout=timeout,
            stream=True,
        )
        try:
            while True:
                try:
                    line = await resp.content.readline(max_line_length=WATCH_MAX_LINE)
                    event = json.loads(line) if line.strip() else None
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    raise KubeError(
                        status=0, reason="WatchBroken", message=f"{type(exc).__name__}: {exc}"
                    ) from exc
                if event is None:
                    if resp.content.at_eof():
                        return
                    continue
                etype, obj = event.get("type"), event.get("object")
                if not isinstance(obj, dict):
                    raise KubeError(
                        status=0, reason="WatchBroken", message=f"malformed event {str(event)[:200]}"
                    )
                if etype == "ERROR":
                    raise error_from_status(status=int(obj.get("code") or 500), body=obj)
                yield WatchEvent(type=str(etype), object=obj)
        finally:
            resp.close()

    def follow(
        self,
        *,
        kind: WatchKind,
        namespace: str | None,
        name: str,
        resync_seconds: int = 300,
        label_selector: str | None = None,
    ) -> ObjectFollower:
        """Keep the latest state of one named object (see `ObjectFollower`)."""
        return ObjectFollower(
            kube=self,
            kind=kind,
            namespace=namespace,
            name=name,
            resync_seconds=resync_seconds,
            label_selector=label_selector,
        )

    # --- transport ---

    async def _json(
        self,
        *,
        verb: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: JsonObj | list[Any] | None = None,
        content_type: str = "application/json",
        fence: Callable[[], None] | None = None,
        accept: str = "application/json",
    ) -> JsonObj:
        raw = await self._send(
            verb=verb,
            method=method,
            path=path,
            query=query,
            body=body,
            content_type=content_type,
            accept=accept,
            request_timeout=self._timeout,
            stream=False,
            fence=fence,
        )
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise KubeError(status=0, reason="BadResponse", message=f"{method} {path}: not a JSON object")
        return data

    async def _send(
        self,
        *,
        verb: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: JsonObj | list[Any] | None = None,
        content_type: str = "application/json",
        request_timeout: float | aiohttp.ClientTimeout,
        stream: bool,
        fence: Callable[[], None] | None = None,
        accept: str = "application/json",
    ) -> Any:
        """One operation with retries. Returns the body (bytes), or with `stream` the open 2xx
        response (the caller closes it)."""
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            if self.before_send is not None:
                await self.before_send(verb)
            if fence is not None:
                fence()  # the last check before the request leaves; raises to stop it
            self.requests[verb] += 1
            cause: BaseException | None = None
            try:
                resp = await self._api.call_api(
                    path,
                    method,
                    query_params=list(query),
                    header_params={"Accept": accept, "Content-Type": content_type},
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=request_timeout,
                )
                if stream and 200 <= resp.status < 300:
                    self._count(verb, str(resp.status))
                    return resp
                try:
                    raw: bytes = await resp.read()
                finally:
                    resp.release()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._count(verb, "error")
                err = KubeError(status=0, reason=type(exc).__name__, message=str(exc) or type(exc).__name__)
                cause = exc
            else:
                self._count(verb, str(resp.status))
                if 200 <= resp.status < 300:
                    return raw
                err = error_from_response(
                    status=resp.status,
                    http_reason=resp.reason or "",
                    raw=raw,
                    retry_after_header=resp.headers.get("Retry-After"),
                )
            if err.status == 401 and self._reauthenticate is not None and not reauthenticated:
                reauthenticated = True  # credentials from an exec plugin may have been revoked early
                await self._reauthenticate()
                continue
            if attempt >= self.retry.attempts or not is_retryable(status=err.status, verb=verb):
                raise err from cause
            delay = self.retry.delay(attempt=attempt, retry_after=err.retry_after, rng=self._rng)
            self._log.info(
                "rebootd.kube.retry",
                verb=verb,
                path=path,
                status=err.status,
                reason=err.reason,
                attempt=attempt,
                delay=round(delay, 3),
            )
            await self._sleep(delay)

    def _count(self, verb: str, code: str) -> None:
        if self._metrics is not None:
            self._metrics.api_requests.labels(verb=verb, code=code).inc()


def _in_cluster(lib: _kubeclient.KubeClientLibrary) -> bool:
    return bool(os.environ.get(lib.incluster_host_env)) and Path(lib.incluster_token_path).is_file()


def _default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def _exec_plugin_refresh(*, loader: Any, configuration: Any) -> Callable[[], Awaitable[None]] | None:
    """For a kubeconfig user with an exec credential plugin: refresh the token before each request
    once it expires (the library loads it once only), and return a forced refresh for a 401."""
    user = getattr(loader, "_user", None)  # the library keeps the selected user private
    if user is None or "exec" not in user:
        return None

    async def refresh_if_expired(cfg: Any) -> None:
        if hasattr(loader, "exec_plugin_expiry"):  # no expiry: the token is valid until a 401
            await loader.load_from_exec_plugin()  # runs the plugin only when expired
            if getattr(loader, "token", None):
                cfg.api_key["BearerToken"] = loader.token

    async def force_refresh() -> None:
        if hasattr(loader, "exec_plugin_expiry"):
            del loader.exec_plugin_expiry
        await loader.load_from_exec_plugin()
        if getattr(loader, "token", None):
            configuration.api_key["BearerToken"] = loader.token

    configuration.refresh_api_key_hook = refresh_if_expired
    return force_refresh


# --- following one object -----------------------------------------------------------------------


class ObjectFollower:
    """The latest state of ONE named object, kept by list + watch.

    List with `fieldSelector=metadata.name=NAME` (its resourceVersion starts the watch), then watch
    with bookmarks and a server-side `timeoutSeconds` of `resync_seconds`; a stream the server ends
    is resumed from the last resourceVersion seen, a 410 re-lists, a broken stream or a failed
    request is resumed after a bounded exponential backoff with jitter (the Kube's RetryPolicy).

    `latest` is None while the object does not exist. "What the caller last saw" is the state at
    entry, at its last read of `latest`, or at the last return of `changed` / `wait_for`.

    With `label_selector` the server sends the object only while it matches (entering: ADDED,
    leaving: DELETED, as kube's cacheWatcher does): `latest` is then None also while it exists but
    does not match, and the server sends nothing for the writes that leave it unmatched.
    """

    def __init__(
        self,
        *,
        kube: Kube,
        kind: WatchKind,
        namespace: str | None,
        name: str,
        resync_seconds: int = 300,
        label_selector: str | None = None,
    ) -> None:
        if resync_seconds < 1:
            raise ValueError("resync_seconds must be at least 1")
        self.kube = kube
        self.kind: WatchKind = kind
        self.namespace = namespace
        self.name = name
        self.resync_seconds = resync_seconds
        self.label_selector = label_selector
        self._latest: JsonObj | None = None
        self._seen: tuple[str, str] | None = None
        self._rv: str | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def latest(self) -> JsonObj | None:
        self._seen = _version_key(self._latest)
        return self._latest

    def peek(self) -> JsonObj | None:
        """The latest state without marking it seen (`changed` still reports it)."""
        return self._latest

    async def __aenter__(self) -> Self:
        await self._relist()
        self._seen = _version_key(self._latest)
        self._task = asyncio.create_task(self._run(), name=f"rebootd.kube.follow.{self.kind}.{self.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def changed(self, *, timeout: float) -> bool:  # noqa: ASYNC109 - the waiters' interface
        """Wait until the object's version differs from what the caller last saw (True), or the
        timeout passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._raise_if_failed()
            key = _version_key(self._latest)
            if key != self._seen:
                self._seen = key
                return True
            if not await self._wait_wakeup(deadline - loop.time()):
                return False

    async def wait_for(
        self,
        predicate: Callable[[JsonObj], bool],
        *,
        timeout: float,  # noqa: ASYNC109 - the waiters' interface
    ) -> JsonObj | None:
        """The object once it exists and `predicate(object)` holds; None when the timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._raise_if_failed()
            obj = self._latest
            if obj is not None and predicate(obj):
                self._seen = _version_key(obj)
                return obj
            if not await self._wait_wakeup(deadline - loop.time()):
                return None

    async def _wait_wakeup(self, remaining: float) -> bool:
        if remaining <= 0:
            return False
        wakeup = self._wakeup
        try:  # not `wait_for`: on Python 3.11 it can swallow a cancellation racing the wake-up
            async with asyncio.timeout(remaining):
                await wakeup.wait()
        except TimeoutError:
            return False
        return True

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._task is None:
            raise RuntimeError("ObjectFollower used outside `async with`")

    def _set(self, obj: JsonObj | None) -> None:
        changed = _version_key(obj) != _version_key(self._latest)
        self._latest = obj
        if changed:
            wakeup, self._wakeup = self._wakeup, asyncio.Event()
            wakeup.set()

    async def _relist(self) -> None:
        items, rv = await self.kube.list_with_version(
            kind=self.kind,
            namespace=self.namespace,
            field_selector=f"metadata.name={self.name}",
            label_selector=self.label_selector,
        )
        obj = next((i for i in items if i.get("metadata", {}).get("name") == self.name), None)
        if obj is not None:
            # list items come without kind/apiVersion; give `latest` the shape of a GET or a watch event
            res = RESOURCES[self.kind]
            obj = {"kind": res.kind, "apiVersion": res.api_version, **obj}
        self._set(obj)
        self._rv = rv

    async def _run(self) -> None:
        log = get_logger(kind=self.kind, namespace=self.namespace, name=self.name)
        loop = asyncio.get_running_loop()
        # `failures` counts failed requests and broken or empty watches since the last stable watch
        # (one that delivered an event or stayed up for WATCH_STABLE_SECONDS): a watch that keeps
        # breaking, or a re-list that only leads to another 410, waits longer each time.
        failures = 0
        last_expired = False
        try:
            while True:
                started, events = loop.time(), 0
                try:
                    if self._rv is None:
                        await self._relist()
                        started = loop.time()
                    async for event in self.kube.watch(
                        kind=self.kind,
                        namespace=self.namespace,
                        field_selector=f"metadata.name={self.name}",
                        label_selector=self.label_selector,
                        resource_version=self._rv,
                        timeout_seconds=self.resync_seconds,
                    ):
                        events += 1
                        self._apply(event)
                    if not events and loop.time() - started < WATCH_STABLE_SECONDS:
                        raise KubeError(status=0, reason="WatchEmpty", message="the watch ended at once")
                    failures, last_expired = 0, False  # the server ended it (timeoutSeconds): resume now
                except KubeError as exc:
                    if events or loop.time() - started >= WATCH_STABLE_SECONDS:
                        failures, last_expired = 0, False
                    failures += 1
                    expired = isinstance(exc, Expired)
                    if expired:
                        self._rv = None
                    if expired and not last_expired:
                        last_expired = True
                        log.info("rebootd.kube.follow.relist", reason=exc.reason, failures=failures)
                        continue  # re-list at once
                    last_expired = expired
                    delay = self.kube.retry.backoff(attempt=failures, rng=self.kube._rng)
                    log.info(
                        "rebootd.kube.follow.retry",
                        status=exc.status,
                        reason=exc.reason,
                        failures=failures,
                        delay=round(delay, 3),
                    )
                    await self.kube._sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must surface in the waiters, not vanish in a task
            log.error("rebootd.kube.follow.failed", error=f"{type(exc).__name__}: {exc}")
            self._failure = exc
            self._wakeup.set()

    def _apply(self, event: WatchEvent) -> None:
        rv = resource_version(event.object)
        if event.type == "BOOKMARK":
            pass
        elif event.type in ("ADDED", "MODIFIED"):
            if event.object.get("metadata", {}).get("name") == self.name:
                self._set(event.object)
        elif event.type == "DELETED":
            self._set(None)
        if rv:
            self._rv = rv


def _resolve_proxy_once(rest: Any, *, host: str) -> None:
    """The library's session has `trust_env=True`: aiohttp then reads ~/.netrc and the proxy
    variables in a worker thread on EVERY request (two thread hand-offs per API call). client-go
    reads HTTPS_PROXY / HTTP_PROXY / NO_PROXY once per process; so do we: the proxy for the API
    server is resolved here and the session is replaced by one that does not consult the
    environment again (same connector, so the TLS set-up is kept)."""
    if not rest.proxy:
        url = urlsplit(host)
        proxies = urllib.request.getproxies_environment()  # aiohttp imports urllib.request anyway
        proxy = proxies.get(url.scheme or "https")
        if proxy and not urllib.request.proxy_bypass(url.hostname or ""):  # NO_PROXY
            rest.proxy = proxy
    old: aiohttp.ClientSession = rest.pool_manager
    connector = old.connector
    old.detach()
    rest.pool_manager = aiohttp.ClientSession(connector=connector, trust_env=False, read_bufsize=2**21)


def _version_key(obj: JsonObj | None) -> tuple[str, str] | None:
    if obj is None:
        return None
    meta = obj.get("metadata", {})
    return (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
