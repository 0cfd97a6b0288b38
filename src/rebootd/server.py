"""The metrics and health server: `/metrics`, `/healthz`, `/readyz` on one aiohttp app.

Rule: the server only reports; it never changes state. `/healthz` is 200 while the event loop
answers and every supervised task is alive, else 503 with a JSON body naming what failed (the
kubelet restarts the pod). `/readyz` is 200 once the daemon has done its start-up work (settings,
API reachable). Runs with `AppRunner(handle_signals=False)`: signals belong to the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

HealthReport = tuple[bool, dict[str, Any]]


@dataclass(frozen=True)
class Probes:
    health: Callable[[], HealthReport]
    ready: Callable[[], HealthReport]


def build_app(*, registry: CollectorRegistry, probes: Probes) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _probe(check: Callable[[], HealthReport]) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            ok, detail = check()
            return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", _probe(probes.health))
    app.router.add_get("/readyz", _probe(probes.ready))
    return app


class MetricsServer:
    """Start/stop wrapper around the app; `port` is the bound port (useful with port 0)."""

    def __init__(self, *, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host or None, self._port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()
