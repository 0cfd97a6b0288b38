"""A raw HTTP client for contract tests: exact status codes, headers and bodies, no client library."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else ""

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, dict) else ""


class RawApi:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data: bytes | io.BytesIO | None = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        )
        if isinstance(data, bytes) and len(data) > 1024 * 1024:
            data = io.BytesIO(data)  # aiohttp warns (filterwarnings=error fails) on large bytes
        all_headers = {"Content-Type": content_type} if data is not None else {}
        all_headers.update(headers or {})
        async with self.session.request(method, self.base + path, data=data, headers=all_headers) as response:
            text = await response.text()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return Reply(status=response.status, body=parsed, headers=dict(response.headers))

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request("POST", path, body=body, **kwargs)

    async def put(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request("PUT", path, body=body, **kwargs)

    async def patch(self, path: str, body: Any, *, content_type: str) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.request("PATCH", path, raw=raw, content_type=content_type)

    async def delete(self, path: str, body: Any = None) -> Reply:
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, *, max_events: int, within: float = 5.0) -> list[dict[str, Any]]:
        """Read up to `max_events` watch events (or until the server ends the stream)."""
        return [event async for event in self.watch_stream(path, max_events=max_events, within=within)]

    async def watch_stream(
        self, path: str, *, max_events: int, within: float = 5.0
    ) -> AsyncIterator[dict[str, Any]]:
        count = 0
        async with asyncio.timeout(within), self.session.get(self.base + path) as response:
            assert response.status == 200, await response.text()
            while count < max_events:
                line = await response.content.readline()
                if not line:
                    return
                count += 1
                yield json.loads(line)


def lease(name: str, *, namespace: str = "default", holder: str = "a", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "renewTime": "2026-01-01T00:00:00.000000Z",
        },
    }


def pod(
    name: str, *, namespace: str = "default", node: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    if node is not None:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec,
    }


LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
PODS = "/api/v1/namespaces/default/pods"
NODES = "/api/v1/nodes"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
