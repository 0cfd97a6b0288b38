"""Exotic kubeconfig users, an exec credential plugin or an auth-provider, through kubernetes-asyncio.

Rule: the one module of rebootd that imports kubernetes_asyncio, and it does so only when the
kubeconfig's user needs it (the import is inside `load_exotic`: the library costs tens of MiB of
RSS and a second of start-up, figures in bench/README.md, which no in-cluster daemon pays). The
library runs the plugin or the provider through its public API (`load_kube_config`, the loader's
`load_from_exec_plugin`, `token` and `exec_plugin_expiry`); rebootd keeps its own session and
takes only the credential it produced. An exec plugin's token is fetched again before a request
once it has expired (the plugin runs only then) and after a 401.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from rebootd.kube.credentials import ConfigError, Credentials


class LibraryAuth:
    """The bearer token the library's loader produced (an `Auth` of session.py)."""

    def __init__(self, *, loader: Any, configuration: Any, exec_plugin: bool) -> None:
        self._loader = loader
        self._configuration = configuration
        self._exec = exec_plugin

    async def header(self) -> str | None:
        if self._exec:
            if hasattr(self._loader, "exec_plugin_expiry"):  # no expiry: valid until a 401
                await self._loader.load_from_exec_plugin()  # runs the plugin only once it expired
            token = getattr(self._loader, "token", None)
            if token:
                return str(token)
        value = self._configuration.api_key.get("BearerToken")
        return str(value) if value else None

    async def refresh(self) -> bool:
        if not self._exec:
            return False
        if hasattr(self._loader, "exec_plugin_expiry"):
            del self._loader.exec_plugin_expiry  # expired or not: the server refused the token
        await self._loader.load_from_exec_plugin()
        return True


async def load_exotic(*, credentials: Credentials) -> tuple[Credentials, LibraryAuth]:
    """Run the user's plugin or provider once through the library; the credentials with the
    client certificate the plugin may have produced, and the token source."""
    from kubernetes_asyncio.client.configuration import Configuration
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.kube_config import load_kube_config

    configuration = Configuration()
    try:
        loader = await load_kube_config(
            config_file=os.pathsep.join(str(p) for p in credentials.kubeconfig),
            context=credentials.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{credentials.source}: the user's {credentials.exotic} failed: {exc}") from exc
    cert_file, key_file = getattr(configuration, "cert_file", None), getattr(configuration, "key_file", None)
    if cert_file and key_file and credentials.cert_file is None and credentials.cert_data is None:
        credentials = replace(credentials, cert_file=Path(cert_file), key_file=Path(key_file))
    auth = LibraryAuth(loader=loader, configuration=configuration, exec_plugin=credentials.exotic == "exec")
    return credentials, auth
