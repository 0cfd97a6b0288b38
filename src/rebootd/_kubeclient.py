"""Load the few parts of kubernetes-asyncio that rebootd uses, and nothing else.

Rule: only `rebootd.kube` imports this module, and nothing in rebootd imports `kubernetes_asyncio`
directly. `load()` returns the library pieces the facade needs; it loads them once per process.

Why: `import kubernetes_asyncio.<anything>` runs `kubernetes_asyncio/__init__.py`, which imports
`client` (every API class and all ~800 model classes), `config`, `dynamic`, `stream`, `utils` and
`watch`: tens of MiB of RSS and over a second of start-up on top of the rest of our stack, on every
node of the cluster. The generated API modules are the heaviest part, which is why the facade
does not use the generated API classes at all but calls `ApiClient.call_api` with the resource
path (the generated methods do exactly that after checking their arguments). The figures are in
bench/README.md; `nox -s bench` measures the daemon's RSS and start-up as it is today.

What we keep from the library, and why we use it at all: kubeconfig parsing (contexts, client
certificates, exec credential plugins, OIDC), in-cluster service-account configuration with token
refresh, and `ApiClient`/`RESTClientObject` (authentication headers, TLS set-up, proxies, the
aiohttp session).

How: before anything imports the library, `kubernetes_asyncio`, `kubernetes_asyncio.client`,
`kubernetes_asyncio.client.api` and `kubernetes_asyncio.client.models` are registered in
`sys.modules` as module objects built from their real import specs (real `__path__`, `__file__`)
WITHOUT executing their `__init__`. Each gets a module `__getattr__` that resolves a missing
attribute the way the real `__init__` would have bound it (read from that `__init__` with `ast`,
not executed) and imports just that submodule on first use: `client.ApiClient` ->
`client.api_client`, `client.models.V1Pod` -> `client/models/v1_pod.py`. So anything else in the
process that uses the library the ordinary way still works, it only pays for what it touches.
Then the handful of real modules is imported: `client.configuration`, `client.api_client`,
`client.rest`, `client.exceptions` and `config` (whose `__init__` is small and only pulls in
`kube_config` and `incluster_config`). If that fails (a future layout of the library), the stubs are
removed again, the library is imported the normal way and the fallback is logged once.

"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rebootd.logs import get_logger

ROOT = "kubernetes_asyncio"
# Packages whose __init__ would import far more than rebootd uses: registered without running it.
LAZY_PACKAGES = (ROOT, f"{ROOT}.client", f"{ROOT}.client.api", f"{ROOT}.client.models")


@dataclass(frozen=True)
class KubeClientLibrary:
    """The library pieces the facade uses (typed loosely: the library ships no usable stubs)."""

    api_client: type[Any]
    configuration: type[Any]
    load_kube_config: Callable[..., Any]
    load_incluster_config: Callable[..., None]
    config_exception: type[Exception]
    incluster_token_path: str
    incluster_host_env: str
    lean: bool


def kube_module_names() -> list[str]:
    """Names of the kubernetes_asyncio modules currently loaded in this process."""
    return sorted(n for n in sys.modules if n == ROOT or n.startswith(ROOT + "."))


@functools.cache  # the import itself is process-wide state; this only remembers its outcome
def load() -> KubeClientLibrary:
    """Load the library once per process: lean when possible, the normal import otherwise."""
    before = set(kube_module_names())
    try:
        return _import_parts(lean=_install_lazy_packages())
    except Exception as exc:  # noqa: BLE001 - any failure of the lean path means "use the normal import"
        for name in set(kube_module_names()) - before:
            del sys.modules[name]
        get_logger().warning(
            "rebootd.kube.lean_import_failed", error=f"{type(exc).__name__}: {exc}", fallback="full import"
        )
        importlib.import_module(ROOT)  # runs the real __init__: client, config, watch, ...
        return _import_parts(lean=False)


def _import_parts(*, lean: bool) -> KubeClientLibrary:
    # in dependency order, so that `from kubernetes_asyncio.client import rest` finds it bound
    importlib.import_module(f"{ROOT}.client.exceptions")
    configuration = importlib.import_module(f"{ROOT}.client.configuration")
    importlib.import_module(f"{ROOT}.client.rest")
    api_client = importlib.import_module(f"{ROOT}.client.api_client")
    if lean:  # what `config` takes from `client`: bound now, so its lazy lookup is not even needed
        client = sys.modules[f"{ROOT}.client"]
        setattr(client, "ApiClient", api_client.ApiClient)  # noqa: B010 - a module mypy cannot see into
        setattr(client, "Configuration", configuration.Configuration)  # noqa: B010
    kube_config = importlib.import_module(f"{ROOT}.config.kube_config")
    incluster = importlib.import_module(f"{ROOT}.config.incluster_config")
    config_exception = importlib.import_module(f"{ROOT}.config.config_exception")
    return KubeClientLibrary(
        api_client=api_client.ApiClient,
        configuration=configuration.Configuration,
        load_kube_config=kube_config.load_kube_config,
        load_incluster_config=incluster.load_incluster_config,
        config_exception=config_exception.ConfigException,
        incluster_token_path=incluster.SERVICE_TOKEN_FILENAME,
        incluster_host_env=incluster.SERVICE_HOST_ENV_NAME,
        lean=lean,
    )


def _install_lazy_packages() -> bool:
    """Register the lazy package modules; False when the library is already imported (used as is)."""
    if ROOT in sys.modules:
        return bool(getattr(sys.modules[ROOT], "__rebootd_lazy__", False))
    for name in LAZY_PACKAGES:
        spec = importlib.util.find_spec(name)  # parents come from sys.modules: nothing is executed
        if spec is None or spec.submodule_search_locations is None or spec.origin is None:
            raise ImportError(f"{name} is not a package in this kubernetes_asyncio layout")
        module = importlib.util.module_from_spec(spec)
        module.__getattr__ = _lazy_getattr(module, spec.origin)  # type: ignore[method-assign]
        module.__rebootd_lazy__ = True  # type: ignore[attr-defined]
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return True


def _lazy_getattr(module: types.ModuleType, init_path: str) -> Callable[[str], Any]:
    """A module `__getattr__` that binds names as the package's real `__init__` would, on demand."""
    bindings: dict[str, tuple[str, str | None, Any]] = {}

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name != "__version__":
            raise AttributeError(name)
        if not bindings:
            bindings.update(init_bindings(init_path))
        if name not in bindings:
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        source, attr, constant = bindings[name]
        if source:
            target = importlib.import_module(source)
            if attr is None:
                value = target
            elif hasattr(target, attr):
                value = getattr(target, attr)
            else:  # `from package import submodule`
                value = importlib.import_module(f"{source}.{attr}")
        else:
            value = constant
        setattr(module, name, value)
        return value

    return __getattr__


def init_bindings(init_path: str) -> dict[str, tuple[str, str | None, Any]]:
    """Read (not run) a package `__init__`: name -> (module, attribute or None, constant).

    Understands the statements these generated `__init__` files consist of: `from M import A [as B]`,
    `import M as B` and `NAME = "constant"`.
    """
    with open(init_path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=init_path)
    out: dict[str, tuple[str, str | None, Any]] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module != "__future__"
        ):
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name, None)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = (alias.name, None, None)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = ("", None, node.value.value)
    return out
