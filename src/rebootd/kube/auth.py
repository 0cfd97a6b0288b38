"""Loading the client library's configuration: in-cluster or kubeconfig, the exec-plugin token
refresh, and the proxy resolved once.

Rule: only this module (with `rebootd._kubeclient`, the lean loader) deals with
kubernetes-asyncio's configuration objects; `Kube.connect` gets a ready ApiClient from it.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from rebootd import _kubeclient


def in_cluster(lib: _kubeclient.KubeClientLibrary) -> bool:
    return bool(os.environ.get(lib.incluster_host_env)) and Path(lib.incluster_token_path).is_file()


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def exec_plugin_refresh(*, loader: Any, configuration: Any) -> Callable[[], Awaitable[None]] | None:
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


def resolve_proxy_once(rest: Any, *, host: str) -> None:
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
