"""The emulator's HTTP face: aiohttp routes speaking the Kubernetes REST protocol.

Rule: this module only translates HTTP to `Registry` calls and back. It parses the path the way
kube-apiserver's RequestInfoFactory does (so RBAC attributes match), authenticates client certificates
(CN the user, O the groups, as kube-apiserver's x509 authenticator), bearer tokens and basic credentials,
applies injected faults and partitions, answers every error as a `Status` body, negotiates Table
output for kubectl, pages lists and streams watches (one JSON object per line, flushed at once).
A lost-response fault serves the write in full (stored, in the history, seen by watchers) and then
resets the connection or answers 504 instead of the result. An optional `WriteHook` (the named
scenarios' scripted faults) may look at a Node write before it is applied (a dry-run preview, so a
cordon is recognised by what it does, not by how it is spelled) and after.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import yaml
from aiohttp import web

from rebootd.clock import Clock
from rebootd.emulator import errors
from rebootd.emulator.errors import ApiError, JsonObj
from rebootd.emulator.faults import Fault, FaultInjector, FaultKind
from rebootd.emulator.fieldselectors import parse_fields, parse_labels
from rebootd.emulator.listing import Pager
from rebootd.emulator.objects import strip_type
from rebootd.emulator.rbac import deny_message
from rebootd.emulator.registry import DeleteOptions, FieldValidation, Registry, Selection
from rebootd.emulator.resources import (
    GROUP_VERSIONS,
    VERSION_INFO,
    ResourceInfo,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    openapi_v3_document,
    openapi_v3_root,
    resource_for,
)
from rebootd.emulator.store import Store, TooOldResourceVersion
from rebootd.emulator.tables import to_table, wants_table
from rebootd.emulator.timing import EmulatorTiming
from rebootd.emulator.validation import FIELD_VALIDATION_MODES
from rebootd.selectors import FieldSelector, FieldTerm

log = structlog.get_logger("rebootd.emulator")

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
ENCODED_CACHE_SIZE = 4096
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# kube-apiserver's MaxRequestBodyBytes (genericapiserver.Config): bodies of create, update, patch.
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


class WriteHook(Protocol):
    """Scripted faults on Node writes (see `rebootd.emulator.scripted`)."""

    def watches(self, *, client: str, resource: str, verb: str, subresource: str) -> bool:
        """Whether this request is one to preview and report (cheap; called for every write)."""
        ...

    async def before(
        self, *, client: str, name: str, current: JsonObj | None, preview: JsonObj | None
    ) -> None:
        """Awaited before the write is applied; `preview` is its dry-run result (None: it fails)."""
        ...

    def after(self, *, client: str, name: str, before: JsonObj | None, after: JsonObj) -> FaultKind | None:
        """After the write was applied: a lost-response kind to lose its answer, or None."""
        ...


class Authorizer(Protocol):
    """What the emulator needs of `rebootd.emulator.rbac.Authorizer`."""

    def authorize(
        self,
        *,
        user: str,
        groups: Sequence[str],
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
    ) -> bool: ...


@dataclass(frozen=True)
class RequestInfo:
    """kube-apiserver's request attributes."""

    is_resource: bool
    path: str
    verb: str
    api_prefix: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""  # the RBAC attribute: from the path, or a list/watch's metadata.name selector
    path_name: str = ""  # the object named by the URL itself


def truthy(value: str | None) -> bool:
    """Query booleans: present and anything but `0`/`false` is true."""
    return value is not None and value.lower() not in ("0", "false")


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    parts = [p for p in path.strip("/").split("/") if p]
    plain_verb = method.lower()
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return RequestInfo(is_resource=False, path=path, verb=plain_verb)
    prefix = parts[0]
    if prefix == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 3:
            return RequestInfo(is_resource=False, path=path, verb=plain_verb)
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return RequestInfo(is_resource=False, path=path, verb=plain_verb)
    verb = {"post": "create", "put": "update", "patch": "patch", "delete": "delete"}.get(plain_verb, "get")
    watch_path = False
    if rest[0] == "watch":
        watch_path = True
        rest = rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and namespace and name == namespace:
        namespace = ""
    path_name = name
    if not name:
        if verb == "get":
            verb = "watch" if watch_path or truthy(query.get("watch")) else "list"
        elif verb == "delete":
            verb = "deletecollection"
    elif watch_path and verb == "get":
        verb = "watch"
    if verb in ("list", "watch", "deletecollection") and not name:
        selector = query.get("fieldSelector") or ""
        for term in selector.split(","):
            if term.startswith("metadata.name="):
                name = term.split("=", 1)[1]
            elif term.startswith("metadata.name=="):
                name = term.split("==", 1)[1]
    return RequestInfo(
        is_resource=True,
        path=path,
        verb=verb,
        api_prefix=prefix,
        group=group,
        version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        path_name=path_name,
    )


async def read_body(request: web.Request) -> bytes:
    """The request body, refused (413, the real message) when over MaxRequestBodyBytes."""
    if request.content_length is not None and request.content_length > MAX_REQUEST_BODY_BYTES:
        raise errors.request_entity_too_large(MAX_REQUEST_BODY_BYTES)
    raw = await request.read()
    if len(raw) > MAX_REQUEST_BODY_BYTES:
        raise errors.request_entity_too_large(MAX_REQUEST_BODY_BYTES)
    return raw


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError) -> web.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return json_response(error.status(), status=error.code, headers=headers)


class ApiServer:
    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        pager: Pager,
        clock: Clock,
        timing: EmulatorTiming,
        faults: FaultInjector | None,
        authorizer: Authorizer | None,
        tokens: Mapping[str, tuple[str, Sequence[str]]] | None,
        request_counts: Counter[tuple[str, str]],
    ) -> None:
        self.registry = registry
        self.store = store
        self.pager = pager
        self.clock = clock
        self.timing = timing
        self.faults = faults
        self.authorizer = authorizer
        self.tokens = dict(tokens) if tokens is not None else None
        self.request_counts = request_counts
        # Response bytes sent (bodies and watch events; headers not counted): the benchmarks' figure.
        self.bytes_sent = 0
        self.server_address = "127.0.0.1:0"
        self._closing = asyncio.Event()
        self._encoded: OrderedDict[tuple[int, str, str], tuple[JsonObj, bytes]] = OrderedDict()
        self.write_hook: WriteHook | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def shutting_down(self) -> None:
        self._closing.set()
        self.store.close_watchers()

    # -- entry -----------------------------------------------------------------------------------

    def _identity(self, request: web.Request) -> tuple[str, Sequence[str], str]:
        # a verified client certificate first (served over TLS with a client CA), as kube-apiserver
        # tries x509 before tokens; `peercert` is empty unless the handshake verified one
        peercert = request.transport.get_extra_info("peercert") if request.transport is not None else None
        if peercert:
            subject = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
            names = [value for key, value in subject if key == "commonName"]
            organizations = [value for key, value in subject if key == "organizationName"]
            if names:
                return names[0], [*organizations, "system:authenticated"], names[0]
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic ") and self.tokens is None:
            # no token table configured: a basic credential names the client by its user name
            try:
                basic_user = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                raise errors.unauthorized() from None
            return basic_user, [basic_user, "system:authenticated"], basic_user
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            if self.tokens is None:  # no token table configured: the token names the client
                return token, [token, "system:authenticated"], token
            identity = self.tokens.get(token)
            if identity is None:
                raise errors.unauthorized()
            user, groups = identity
            return user, [*groups, "system:authenticated"], user
        return "system:anonymous", ["system:unauthenticated"], "anonymous"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._handle(request)
        if isinstance(response, web.Response) and response.body is not None:
            self.bytes_sent += len(response.body) if isinstance(response.body, bytes) else 0
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        info = request_info(request.method, request.path, query)
        try:
            user, groups, client = self._identity(request)
        except ApiError as exc:
            return error_response(exc)
        self.request_counts[(client, info.verb)] += 1
        if self.faults is not None and self.faults.is_partitioned(client=client):
            return await self._drop(request, client)
        lost: Fault | None = None
        try:
            if self.faults is not None and info.is_resource:
                fault = self.faults.decide(client=client, verb=info.verb, write=info.verb in WRITE_VERBS)
                if fault is not None:
                    if fault.kind == "latency":
                        await asyncio.sleep(fault.delay)
                    elif fault.lost:
                        lost = fault  # served below, then its answer is lost
                    else:
                        raise self._fault_error(fault.kind, fault.retry_after, info)
            if not info.is_resource:
                return self._non_resource(request)
            if self.authorizer is not None and not self.authorizer.authorize(
                user=user,
                groups=groups,
                verb=info.verb,
                api_group=info.group,
                resource=info.resource,
                subresource=info.subresource,
                namespace=info.namespace,
                name=info.name,
            ):
                raise self._forbidden(info, user)
            hook = self.write_hook
            if hook is not None and hook.watches(
                client=client, resource=info.resource, verb=info.verb, subresource=info.subresource
            ):
                return await self._hooked(request, info, client, hook, lost)
            response = await self._resource(request, info, client)
            if lost is not None and response.status < 300:
                return await self._lose(request, lost.kind, client)
            return response
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("rebootd.emulator.handler_failed", path=request.path, method=request.method)
            return error_response(errors.internal(f"{type(exc).__name__}: {exc}"))

    async def _drop(self, request: web.Request, client: str) -> web.StreamResponse:
        """A partitioned client: the request hangs, then the connection is cut without an answer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=self.timing.partition_hang)
        log.debug("rebootd.emulator.partition_drop", client=client, path=request.path)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    async def _hooked(
        self, request: web.Request, info: RequestInfo, client: str, hook: WriteHook, lost: Fault | None
    ) -> web.StreamResponse:
        """A watched Node write: preview it, let the hook act, apply it, let the hook lose it."""
        node_info = resource_for(group=info.group, version=info.version, plural=info.resource)
        current = self.store.get("nodes", "", info.name) if node_info is not None else None
        preview: JsonObj | None = None
        if node_info is not None and info.name:
            with contextlib.suppress(ApiError, ValueError):
                if request.method == "PATCH":
                    preview, _ = self.registry.patch(
                        node_info,
                        "",
                        info.name,
                        content_type=request.headers.get("Content-Type", ""),
                        raw=await read_body(request),
                        client=client,
                        dry_run=True,
                    )
                elif request.method == "PUT":
                    body = await self._body(request, node_info)
                    preview, _ = self.registry.update(
                        node_info, "", info.name, body, client=client, dry_run=True
                    )
        await hook.before(client=client, name=info.name, current=current, preview=preview)
        before = self.store.get("nodes", "", info.name)
        response = await self._resource(request, info, client)
        kind: FaultKind | None = lost.kind if lost is not None else None
        after = self.store.get("nodes", "", info.name)
        if response.status < 300 and after is not None and after is not before:
            kind = hook.after(client=client, name=info.name, before=before, after=after) or kind
        if kind is not None and response.status < 300:
            return await self._lose(request, kind, client)
        return response

    async def _lose(self, request: web.Request, kind: FaultKind, client: str) -> web.StreamResponse:
        """The write was applied; its answer is lost: the connection is reset, or a 504."""
        log.debug("rebootd.emulator.response_lost", client=client, path=request.path, kind=kind)
        if kind == "lost_504":
            return error_response(
                ApiError(
                    code=504,
                    reason="Timeout",
                    message="injected fault: the server was unable to return a response in the time allotted",
                )
            )
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    def _fault_error(self, kind: str, retry_after: int | None, info: RequestInfo) -> ApiError:
        if kind == "error500":
            return errors.internal("injected fault: etcdserver: request timed out")
        if kind == "error503":
            return errors.service_unavailable()
        if kind == "throttle429":
            return ApiError(
                code=429,
                reason="TooManyRequests",
                message="Too many requests, please try again later.",
                retry_after=retry_after or 1,
            )
        target = resource_for(group=info.group, version=info.version, plural=info.resource)
        return errors.conflict(resource=info.resource, group=info.group if target else "", name=info.name)

    def _forbidden(self, info: RequestInfo, user: str) -> ApiError:
        message = deny_message(
            user=user,
            verb=info.verb,
            api_group=info.group,
            resource=info.resource,
            subresource=info.subresource,
            namespace=info.namespace,
            name=info.name,
        )
        details: JsonObj = {}
        if info.name:
            details["name"] = info.name
        if info.group:
            details["group"] = info.group
        details["kind"] = info.resource
        return ApiError(code=403, reason="Forbidden", message=message, details=details)

    # -- discovery -------------------------------------------------------------------------------

    def _non_resource(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.strip("/").split("/") if p]
        if path == "/version":
            return json_response(dict(VERSION_INFO))
        if path == "/openapi/v3":
            return json_response(openapi_v3_root())
        if path.startswith("/openapi/v3/"):
            document = openapi_v3_document(path.removeprefix("/openapi/v3/"))
            if document is not None:
                return json_response(document)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/api":
            return json_response(api_versions(server_address=self.server_address))
        if path == "/apis":
            return json_response(api_group_list())
        if len(parts) == 2 and parts[0] == "api":
            listing = api_resource_list(parts[1])
            if listing is not None:
                return json_response(listing)
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in GROUP_VERSIONS:
            return json_response(api_group(parts[1]))
        if len(parts) == 3 and parts[0] == "apis":
            listing = api_resource_list(f"{parts[1]}/{parts[2]}")
            if listing is not None:
                return json_response(listing)
        return error_response(errors.path_not_found())

    # -- resources -------------------------------------------------------------------------------

    async def _resource(self, request: web.Request, req: RequestInfo, client: str) -> web.StreamResponse:
        info = resource_for(group=req.group, version=req.version, plural=req.resource)
        if info is None:
            raise errors.path_not_found()
        if req.namespace and not info.namespaced and info.plural != "namespaces":
            raise errors.path_not_found()
        allowed_sub = {"", "status"} if info.status_subresource else {""}
        if info.plural == "pods" and not info.group:
            allowed_sub.add("eviction")
        if req.subresource not in allowed_sub:
            raise errors.path_not_found()
        query = request.query
        dry_run = bool(query.get("dryRun"))
        method = request.method
        namespace = req.namespace if info.namespaced else ""
        if method == "GET":
            if not req.path_name:
                if req.verb == "watch":
                    return await self._watch(request, info, namespace, client)
                return self._list(request, info, namespace)
            if req.verb == "watch":
                return await self._watch(request, info, namespace, client, name=req.path_name)
            obj = self.registry.get(info, namespace, req.name)
            return self._object_response(request, info, obj)
        if method == "POST":
            if req.subresource == "eviction":
                body = await self._body(request, info)
                status = self.registry.evict(namespace, req.name, body, client=client)
                return json_response(status, status=int(status.get("code", 201)))
            if req.name:
                raise errors.method_not_supported(resource=info.plural, group=info.group, verb="POST")
            body = await self._body(request, info)
            fields = self._field_validation(request)
            created = self.registry.create(
                info, namespace, body, client=client, dry_run=dry_run, fields=fields
            )
            return self._object_response(request, info, created, status=201, warnings=fields.warnings)
        if method == "PUT":
            if not req.name:
                raise errors.method_not_supported(resource=info.plural, group=info.group, verb="PUT")
            body = await self._body(request, info)
            fields = self._field_validation(request)
            obj, was_created = self.registry.update(
                info,
                namespace,
                req.name,
                body,
                client=client,
                subresource=req.subresource,
                dry_run=dry_run,
                fields=fields,
            )
            code = 201 if was_created else 200
            return self._object_response(request, info, obj, status=code, warnings=fields.warnings)
        if method == "PATCH":
            if not req.name:
                raise errors.method_not_supported(resource=info.plural, group=info.group, verb="PATCH")
            raw = await read_body(request)
            fields = self._field_validation(request)
            obj, was_created = self.registry.patch(
                info,
                namespace,
                req.name,
                content_type=request.headers.get("Content-Type", ""),
                raw=raw,
                client=client,
                subresource=req.subresource,
                field_manager=query.get("fieldManager"),
                dry_run=dry_run,
                fields=fields,
            )
            code = 201 if was_created else 200
            return self._object_response(request, info, obj, status=code, warnings=fields.warnings)
        if method == "DELETE":
            raw = await read_body(request)
            options_body: Any = None
            if raw.strip():
                try:
                    options_body = json.loads(raw)
                except ValueError as exc:
                    raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc
            options = DeleteOptions.from_body(
                options_body if isinstance(options_body, dict) else None, query=query
            )
            if not req.name:
                return self._delete_collection(request, info, namespace, options, client)
            result = self.registry.delete(info, namespace, req.name, options, client=client)
            return json_response(result)
        raise errors.method_not_supported(resource=info.plural, group=info.group, verb=method)

    def _delete_collection(
        self, request: web.Request, info: ResourceInfo, namespace: str, options: DeleteOptions, client: str
    ) -> web.Response:
        selection = self._selection(request, info, namespace)
        deleted = []
        for obj in self.registry.select(info, selection):
            with contextlib.suppress(ApiError):
                self.registry.delete(
                    info,
                    obj["metadata"].get("namespace", ""),
                    obj["metadata"]["name"],
                    options,
                    client=client,
                )
                deleted.append(strip_type(self.registry.view(info, obj)))
        return json_response(
            {
                "kind": f"{info.kind}List",
                "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            }
        )

    async def _body(self, request: web.Request, info: ResourceInfo) -> Any:
        media = request.headers.get("Content-Type", "application/json").split(";", 1)[0].strip().lower()
        raw = await read_body(request)
        if media in ("", "application/json", "*/*"):
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise errors.bad_request(
                    f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: '
                    f"couldn't get version/kind; json parse error: {exc}"
                ) from exc
        if media in ("application/yaml", "application/x-yaml"):
            try:
                return yaml.safe_load(raw.decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc
        raise ApiError(
            code=415,
            reason="UnsupportedMediaType",
            message=(
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(BODY_TYPES[:2])
            ),
        )

    def _field_validation(self, request: web.Request) -> FieldValidation:
        mode = request.query.get("fieldValidation") or "Warn"
        if mode not in FIELD_VALIDATION_MODES:
            raise errors.bad_request(
                f"fieldValidation must be one of {', '.join(FIELD_VALIDATION_MODES)}, got {mode!r}".replace(
                    "'", '"'
                )
            )
        return FieldValidation(mode=mode)

    def _object_response(
        self,
        request: web.Request,
        info: ResourceInfo,
        stored: JsonObj,
        *,
        status: int = 200,
        warnings: Sequence[str] = (),
    ) -> web.Response:
        obj = self.registry.view(info, stored)
        if wants_table(request.headers.get("Accept", "")) and request.method == "GET":
            table = to_table(
                info.storage,
                [stored],
                now=self.clock.now(),
                resource_version=obj["metadata"].get("resourceVersion", ""),
                include_object=request.query.get("includeObject", "Metadata"),
            )
            return json_response(table, status=status)
        response = json_response(obj, status=status)
        for warning in warnings:  # RFC 7234 warn-code 299, as kube-apiserver sends them
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    # -- list ------------------------------------------------------------------------------------

    def _selection(self, request: web.Request, info: ResourceInfo, namespace: str) -> Selection:
        query = request.query
        labels = parse_labels(query["labelSelector"]) if query.get("labelSelector") else None
        fields = (
            parse_fields(query["fieldSelector"], supported=info.field_labels)
            if query.get("fieldSelector")
            else None
        )
        return Selection(
            namespace=namespace if info.namespaced and namespace else None, labels=labels, fields=fields
        )

    def _list(self, request: web.Request, info: ResourceInfo, namespace: str) -> web.Response:
        query = request.query
        selection = self._selection(request, info, namespace)
        try:
            limit = int(query.get("limit") or 0)
        except ValueError as exc:
            raise errors.bad_request(f"invalid limit: {query.get('limit')}") from exc
        if query.get("resourceVersion") == "0" and not query.get("continue"):
            limit = 0  # served from the watch cache: no paging before 1.33
        token = query.get("continue") or ""
        if token:
            page = self.pager.next(
                token,
                limit=limit,
                current=lambda: (self.registry.select(info, selection), self.store.resource_version),
            )
        else:
            page = self.pager.first(
                self.registry.select(info, selection),
                resource_version=self.store.resource_version,
                limit=limit,
            )
        items = [self.registry.view(info, obj) for obj in page.items]
        if wants_table(request.headers.get("Accept", "")):
            table = to_table(
                info.storage,
                page.items,  # rows are printed from the stored form (core Events for events.k8s.io)
                now=self.clock.now(),
                resource_version=str(page.resource_version),
                continue_token=page.continue_token,
                include_object=query.get("includeObject", "Metadata"),
                remaining=page.remaining,
            )
            return json_response(table)
        metadata: JsonObj = {"resourceVersion": str(page.resource_version)}
        if page.continue_token:
            metadata["continue"] = page.continue_token
        if page.remaining is not None:
            metadata["remainingItemCount"] = page.remaining
        if wants_metadata_list(request.headers.get("Accept", "")):
            # As kube-apiserver's asPartialObjectMetadataList: each item's metadata only.
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                    "items": [
                        {
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj["metadata"],
                        }
                        for obj in items
                    ],
                }
            )
        body = {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": metadata,
            "items": [strip_type(obj) for obj in items],
        }
        return json_response(body)

    # -- watch -----------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, info: ResourceInfo, namespace: str, client: str, *, name: str = ""
    ) -> web.StreamResponse:
        query = request.query
        selection = self._selection(request, info, namespace)
        if name:
            terms = (
                *(selection.fields.terms if selection.fields else ()),
                FieldTerm("metadata.name", "=", name),
            )
            selection = Selection(
                namespace=selection.namespace, labels=selection.labels, fields=FieldSelector(terms)
            )
        rv_text = query.get("resourceVersion") or ""
        since: int | None = None
        if rv_text and rv_text != "0":
            try:
                since = int(rv_text)
            except ValueError as exc:
                raise errors.bad_request(f"invalid resource version: {rv_text}") from exc
        send_initial = truthy(query.get("sendInitialEvents")) if "sendInitialEvents" in query else False
        if send_initial:
            since = None
        bookmarks = truthy(query.get("allowWatchBookmarks")) if "allowWatchBookmarks" in query else False
        timeout = self.timing.watch_timeout
        if query.get("timeoutSeconds"):
            try:
                timeout = float(int(query["timeoutSeconds"]))
            except ValueError as exc:
                raise errors.bad_request(f"invalid timeoutSeconds: {query['timeoutSeconds']}") from exc
        table = wants_table(request.headers.get("Accept", ""))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if self.faults is not None and self.faults.end_watch_at_once(client=client):
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()  # a clean end, no event: as the server's timeoutSeconds
            return response
        expire = since is not None and self.faults is not None and self.faults.expire_on_resume(client=client)
        try:
            if expire:
                raise TooOldResourceVersion(requested=since or 0, oldest=self.store.resource_version)
            watcher, backlog = self.store.watch(
                info.storage,
                namespace=selection.namespace,
                predicate=selection.predicate(info.storage),
                since=since,
                index=_watch_index(info, selection),
            )
        except TooOldResourceVersion as exc:
            with contextlib.suppress(ConnectionResetError):
                await response.write(self._error_line(exc))
                await response.write_eof()
            return response
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout if timeout > 0 else start + self.timing.watch_timeout
        drop_after = self.faults.watch_drop_after(client=client) if self.faults is not None else None
        drop_at = start + drop_after if drop_after is not None else None
        next_bookmark = start + self.timing.bookmark_interval
        headers = True
        last_rv = since if since is not None else self.store.resource_version

        def line(kind: str, obj: JsonObj) -> bytes:
            nonlocal headers, last_rv
            with contextlib.suppress(ValueError, KeyError):
                last_rv = max(last_rv, int(obj["metadata"]["resourceVersion"]))
            if not table:
                return self._encoded_event(info, kind, obj)
            view = self.registry.view(info, obj)
            if kind != "ERROR":
                view = to_table(
                    info.storage,
                    [obj],
                    now=self.clock.now(),
                    resource_version=view["metadata"].get("resourceVersion", ""),
                    include_object=query.get("includeObject", "Metadata"),
                    headers=headers,
                )
                headers = False
            return dumps({"type": kind, "object": view}) + b"\n"

        try:
            chunk = b"".join(line(kind, obj) for kind, obj in backlog)
            if send_initial and bookmarks:
                chunk += self._bookmark_line(info, self.store.resource_version, initial_end=True)
            if chunk:
                self.bytes_sent += len(chunk)
                await response.write(chunk)
            while not self._closing.is_set():
                now = loop.time()
                if drop_at is not None and now >= drop_at:
                    log.debug("rebootd.emulator.watch_dropped", client=client, resource=info.plural)
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if now >= deadline or request.transport is None or request.transport.is_closing():
                    break
                if self.faults is not None and self.faults.is_partitioned(client=client):
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if bookmarks and now >= next_bookmark:
                    next_bookmark = now + self.timing.bookmark_interval
                    # Fan-out is synchronous: once the queue is drained, every event up to the
                    # store's resourceVersion has been sent, so the bookmark never runs ahead.
                    pending = []
                    while not watcher.queue.empty():
                        pending.append(watcher.queue.get_nowait())
                    if watcher.overflowed or watcher.closed:
                        break
                    bookmark_rv = self.store.resource_version
                    chunk = b"".join(line(kind, obj) for kind, obj in pending)
                    chunk += self._bookmark_line(info, max(last_rv, bookmark_rv))
                    self.bytes_sent += len(chunk)
                    await response.write(chunk)
                    continue
                wake = min(deadline, next_bookmark if bookmarks else deadline, drop_at or deadline, now + 0.5)
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), timeout=max(0.0, wake - now))
                except TimeoutError:
                    if watcher.overflowed:
                        break
                    continue
                items = [item]
                while not watcher.queue.empty():
                    items.append(watcher.queue.get_nowait())
                if watcher.overflowed or watcher.closed:
                    break
                chunk = b"".join(line(kind, obj) for kind, obj in items)
                self.bytes_sent += len(chunk)  # the events themselves, not only backlogs and bookmarks
                await response.write(chunk)
            if watcher.overflowed:
                await response.write(self._error_line(None))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; its watcher is dropped below
        finally:
            self.store.unwatch(watcher)
        return response

    def _encoded_event(self, info: ResourceInfo, kind: str, obj: JsonObj) -> bytes:
        """One watch line; encoded once per event and shared by every watcher that gets it (stored
        objects are immutable, and the cache holds the object so its id cannot be reused)."""
        key = (id(obj), kind, info.group)
        cached = self._encoded.get(key)
        if cached is not None and cached[0] is obj:
            return cached[1]
        encoded = dumps({"type": kind, "object": self.registry.view(info, obj)}) + b"\n"
        self._encoded[key] = (obj, encoded)
        if len(self._encoded) > ENCODED_CACHE_SIZE:
            self._encoded.popitem(last=False)
        return encoded

    def _error_line(self, exc: TooOldResourceVersion | None) -> bytes:
        if exc is not None:
            message = f"too old resource version: {exc.requested} ({exc.oldest})"
        else:
            message = "too old resource version: the watch fell behind and was closed"
        status = errors.expired(message).status()
        return dumps({"type": "ERROR", "object": status}) + b"\n"

    def _bookmark_line(self, info: ResourceInfo, rv: int, *, initial_end: bool = False) -> bytes:
        metadata: JsonObj = {"resourceVersion": str(rv)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        kind = "Event" if info.plural == "events" else info.kind
        obj = {"kind": kind, "apiVersion": info.api_version, "metadata": metadata}
        return dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def wants_metadata_list(accept: str) -> bool:
    """`Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` (what client-go's
    metadata client sends): a list of the items' metadata only."""
    return "as=PartialObjectMetadataList" in accept and "g=meta.k8s.io" in accept


def _watch_index(info: ResourceInfo, selection: Selection) -> tuple[str, str] | None:
    """The field a watch's selector pins, for an indexed fan-out (a daemon watching its Node,
    the Lease by name, or the pods on one node)."""
    if selection.fields is None:
        return None
    name = selection.fields.exact("metadata.name")
    if name is not None:
        return "metadata.name", name
    node = selection.fields.exact("spec.nodeName") if info.storage == "pods" else None
    if node is not None:
        return "spec.nodeName", node
    return None


__all__ = ["ApiServer", "Authorizer", "RequestInfo", "request_info", "truthy"]
