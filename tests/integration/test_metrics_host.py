"""`--metrics-host ""` (kured's default and rebootd's) listens on IPv4 and IPv6 alike."""

from __future__ import annotations

import socket

import aiohttp
from prometheus_client import CollectorRegistry

from rebootd.server import MetricsServer, Probes, build_app


def free_dual_stack_port() -> int:
    """A port free on both ::1 and 127.0.0.1 (bounded: 20 tries)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET6) as six:
            six.bind(("::1", 0))
            port = int(six.getsockname()[1])
            with socket.socket(socket.AF_INET) as four:
                try:
                    four.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free on both loopback addresses")


async def test_empty_metrics_host_serves_ipv4_and_ipv6_loopback() -> None:
    port = free_dual_stack_port()
    app = build_app(
        registry=CollectorRegistry(), probes=Probes(health=lambda: (True, {}), ready=lambda: (True, {}))
    )
    server = MetricsServer(app=app, host="", port=port)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for host in ("127.0.0.1", "[::1]"):
                async with session.get(
                    f"http://{host}:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)
                ) as r:
                    assert r.status == 200, host
    finally:
        await server.stop()
