"""The facade: every Kubernetes API call of rebootd, one method an operation.

Rule: every call goes through `Kube`, which returns the JSON exactly as the server sent it (plain
dicts, never generated model objects), raises typed `KubeError`s (errors.py), retries only what is
safe to retry (retry.py), and counts every attempt per verb (for metrics and benchmarks).

- Transport failures (connection refused/reset, timeouts, a broken watch, a bad kubeconfig) are
  `KubeError`s with status 0. A retried write whose first attempt did reach the server may answer
  409 / 404 for our own change: callers treat those as "re-read and decide" anyway.
- `watch` is the raw stream (an async generator): a caller that stops early closes it with
  `contextlib.aclosing`, or the connection stays open until garbage collection.
- Requests go through the project's own session (session.py: TLS, the credential, the proxy) to
  the resource paths (paths.py); kubernetes-asyncio is loaded only for an exec plugin or an
  auth-provider (exotic.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiohttp

from rebootd.kube.credentials import SERVICE_ACCOUNT_DIR, load_credentials
from rebootd.kube.errors import Expired, KubeError, error_from_response, error_from_status
from rebootd.kube.exotic import load_exotic
from rebootd.kube.follow import ObjectFollower, WatchEvent
from rebootd.kube.paths import (
    METADATA_LIST_ACCEPT,
    PATCH_CONTENT_TYPES,
    JsonObj,
    PatchType,
    WatchKind,
    resource_path,
    selector_query,
)
from rebootd.kube.retry import RetryPolicy, is_retryable
from rebootd.kube.session import ApiSession, Auth, auth_for
from rebootd.logs import get_logger

if TYPE_CHECKING:
    from rebootd.metrics import Metrics

Sleep = Callable[[float], Awaitable[None]]

PAGE_SIZE = 500
WATCH_MAX_LINE = 64 * 1024 * 1024  # one watch event per line; etcd caps objects at ~1.5 MiB
WATCH_READ_TIMEOUT = 150.0  # seconds without a byte on a watch: the connection is taken as dead


class Kube:
    """One session to the API server for the process; every method is one API operation (plus
    retries)."""

    def __init__(
        self,
        *,
        session: ApiSession,
        retry: RetryPolicy,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        request_timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        before_send: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.session = session
        # Awaited (with the verb) before every attempt is sent: the simulator's seam for a
        # daemon frozen right before a request (its process stopped); None in production.
        self.before_send = before_send
        self.retry = retry
        self._metrics = metrics
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._timeout = request_timeout
        self._page_size = page_size
        self._log = get_logger()
        self.requests: Counter[str] = Counter()

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        user_agent: str = "rebootd",
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        request_timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        environ: Mapping[str, str] | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> Kube:
        """kubectl's order (credentials.py): `kubeconfig` given, that file; else the in-cluster
        service account when present; else $KUBECONFIG (a `:`-separated list merged) or
        ~/.kube/config. `context`: that context instead of current-context. `environ` (default the
        process's) and `service_account_dir` are where the in-cluster credentials are looked for."""
        env = os.environ if environ is None else environ
        credentials = load_credentials(
            kubeconfig=kubeconfig,
            context=context,
            environ=env,
            home=Path(env.get("HOME") or Path.home()),
            service_account_dir=service_account_dir,
        )
        auth: Auth
        if credentials.exotic is not None:
            credentials, auth = await load_exotic(credentials=credentials)
        else:
            auth = auth_for(credentials=credentials, now=time.monotonic)
        session = ApiSession(credentials=credentials, auth=auth, user_agent=user_agent, environ=env)
        return cls(
            session=session,
            retry=retry if retry is not None else RetryPolicy(),
            metrics=metrics,
            sleep=sleep,
            rng=rng,
            request_timeout=request_timeout,
            page_size=page_size,
        )

    async def close(self) -> None:
        await self.session.close()

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
                resp = await self.session.request(
                    method=method,
                    path=path,
                    query=query,
                    headers={"Accept": accept, "Content-Type": content_type},
                    body=body,
                    request_timeout=request_timeout,
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
            if err.status == 401 and not reauthenticated:
                reauthenticated = True  # a rotated token file, or a plugin's token revoked early
                if await self.session.reauthenticate():
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
