"""Where the API server is and who rebootd is to it: in-cluster or kubeconfig credentials.

Rule: kubectl's order. An explicit kubeconfig file; else the in-cluster service account
(`KUBERNETES_SERVICE_HOST` set and the token file present); else `$KUBECONFIG` (a `:`-separated
list merged: the first file to name a cluster, user or context, or to set current-context, wins;
missing files skipped) or `~/.kube/config`. The context is the one named, else current-context.
Relative file paths in a kubeconfig are relative to the file that holds them. Every problem is a
`ConfigError` naming the file, the entry and the field at fault. A user with an exec credential
plugin or an auth-provider is `exotic`: its token is the client library's job (`exotic.py`).
This module reads local files only (no network, no TLS): `session.py` turns `Credentials` into
a connection.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from rebootd.kube.errors import KubeError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
HOST_ENV = "KUBERNETES_SERVICE_HOST"
PORT_ENV = "KUBERNETES_SERVICE_PORT"
Exotic = Literal["exec", "auth-provider"]


class ConfigError(KubeError):
    """The credentials cannot be loaded (status 0, reason ConfigError): the message names the
    file, the entry and the field at fault."""

    def __init__(self, message: str) -> None:
        super().__init__(status=0, reason="ConfigError", message=message)


@dataclass(frozen=True)
class Credentials:
    """The connection's parameters; file paths are absolute. `source` names where they came from
    (for error messages). `exotic`: the user's token comes from an exec plugin or auth-provider."""

    server: str
    source: str
    ca_file: Path | None = None
    ca_data: str | None = None  # PEM
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    token: str | None = None
    token_file: Path | None = None
    cert_file: Path | None = None
    cert_data: str | None = None  # PEM
    key_file: Path | None = None
    key_data: str | None = None  # PEM
    username: str | None = None
    password: str | None = None
    namespace: str | None = None
    exotic: Exotic | None = None
    kubeconfig: tuple[Path, ...] = ()
    context: str | None = None


def load_credentials(
    *,
    kubeconfig: Path | None,
    context: str | None = None,
    environ: Mapping[str, str],
    home: Path,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> Credentials:
    """kubectl's order (see the module's rule)."""
    if (
        kubeconfig is None
        and context is None
        and in_cluster_available(environ=environ, service_account_dir=service_account_dir)
    ):
        return in_cluster(environ=environ, service_account_dir=service_account_dir)
    if kubeconfig is not None:
        paths = [kubeconfig]
    elif environ.get("KUBECONFIG"):
        paths = [Path(p).expanduser() for p in environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        paths = [home / ".kube" / "config"]
    return from_kubeconfig(paths=paths, context=context, explicit=kubeconfig is not None)


def in_cluster_available(*, environ: Mapping[str, str], service_account_dir: Path) -> bool:
    return bool(environ.get(HOST_ENV)) and (service_account_dir / "token").is_file()


def in_cluster(*, environ: Mapping[str, str], service_account_dir: Path) -> Credentials:
    """The pod's service account: the token file (re-read on rotation by the session), its CA
    bundle when present, the API server's Service address from the environment."""
    host = environ.get(HOST_ENV, "").strip()
    port = environ.get(PORT_ENV, "").strip()
    if not host:
        raise ConfigError(f"in-cluster: {HOST_ENV} is not set")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"in-cluster: {PORT_ENV} is {port!r}: expected a port number")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    token_file = service_account_dir / "token"
    if not token_file.is_file():
        raise ConfigError(f"in-cluster: the service-account token file {token_file} is missing")
    ca_file = service_account_dir / "ca.crt"
    namespace_file = service_account_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else None
    return Credentials(
        server=f"https://{host}:{port}",
        source="in-cluster",
        ca_file=ca_file if ca_file.is_file() else None,
        token_file=token_file,
        namespace=namespace or None,
    )


@dataclass
class _Merged:
    current_context: str | None = None
    clusters: dict[str, tuple[Path, Any]] = field(default_factory=dict)
    users: dict[str, tuple[Path, Any]] = field(default_factory=dict)
    contexts: dict[str, tuple[Path, Any]] = field(default_factory=dict)


def _read_kubeconfig(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"kubeconfig {path}: cannot read it: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {path}: not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path}: expected a mapping at the top, got {type(doc).__name__}")
    return doc


def _merge(paths: Sequence[Path], *, explicit: bool) -> _Merged:
    merged = _Merged()
    read = 0
    for path in paths:
        if not explicit and not path.exists():
            continue  # kubectl skips the missing files of $KUBECONFIG
        doc = _read_kubeconfig(path)
        read += 1
        if merged.current_context is None and doc.get("current-context"):
            merged.current_context = str(doc["current-context"])
        for section, into in (
            ("clusters", merged.clusters),
            ("users", merged.users),
            ("contexts", merged.contexts),
        ):
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise ConfigError(f"kubeconfig {path}: {section} is not a list")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise ConfigError(f"kubeconfig {path}: an entry of {section} has no name")
                into.setdefault(entry["name"], (path, entry))
    if not read:
        shown = ", ".join(str(p) for p in paths)
        raise ConfigError(f"no kubeconfig found (looked for {shown}) and not running in a cluster")
    return merged


def from_kubeconfig(*, paths: Sequence[Path], context: str | None, explicit: bool = True) -> Credentials:
    """The credentials of one context of the merged kubeconfig files."""
    merged = _merge(paths, explicit=explicit)
    files = ", ".join(str(p) for p in paths)
    name = context or merged.current_context
    if not name:
        raise ConfigError(f"kubeconfig {files}: current-context is not set and no context was named")
    if name not in merged.contexts:
        raise ConfigError(f"kubeconfig {files}: context {name!r} not found")
    path, entry = merged.contexts[name]
    ctx = _section(entry, "context", where=f"kubeconfig {path}: context {name!r}")
    where = f"kubeconfig {path}: context {name!r}"
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise ConfigError(f"{where}: cluster is not set")
    if cluster_name not in merged.clusters:
        raise ConfigError(f"{where}: cluster {cluster_name!r} not found")
    cluster_path, cluster_entry = merged.clusters[cluster_name]
    cwhere = f"kubeconfig {cluster_path}: cluster {cluster_name!r}"
    cluster = _section(cluster_entry, "cluster", where=cwhere)
    user: Mapping[str, Any] = {}
    uwhere = ""
    user_name = ctx.get("user")
    user_path = cluster_path
    if user_name:
        if user_name not in merged.users:
            raise ConfigError(f"{where}: user {user_name!r} not found")
        user_path, user_entry = merged.users[user_name]
        uwhere = f"kubeconfig {user_path}: user {user_name!r}"
        user = _section(user_entry, "user", where=uwhere)
    source = f"kubeconfig {path}, context {name!r}"
    return Credentials(
        source=source,
        kubeconfig=tuple(paths),
        context=name,
        namespace=_text(ctx, "namespace", where=where),
        **_cluster_fields(cluster, where=cwhere, base=cluster_path.parent),
        **_user_fields(user, where=uwhere, base=user_path.parent),
    )


def _section(entry: Mapping[str, Any], key: str, *, where: str) -> Mapping[str, Any]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} is not a mapping")
    return value


def _text(section: Mapping[str, Any], key: str, *, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} is not a string")
    return value


def _file(section: Mapping[str, Any], key: str, *, where: str, base: Path) -> Path | None:
    value = _text(section, key, where=where)
    if value is None:
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ConfigError(f"{where}: {key} {path}: no such file")
    return path


def _pem(section: Mapping[str, Any], key: str, *, where: str) -> str | None:
    value = _text(section, key, where=where)
    if value is None:
        return None
    try:
        data = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{where}: {key} is not base64-encoded PEM") from exc
    if "-----BEGIN" not in data:
        raise ConfigError(f"{where}: {key} holds no PEM block")
    return data


def _cluster_fields(cluster: Mapping[str, Any], *, where: str, base: Path) -> dict[str, Any]:
    server = _text(cluster, "server", where=where)
    if server is None:
        raise ConfigError(f"{where}: server is not set")
    url = urlsplit(server)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise ConfigError(f"{where}: server {server!r} is not an http(s) URL")
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{where}: insecure-skip-tls-verify is not true or false")
    ca_file = _file(cluster, "certificate-authority", where=where, base=base)
    ca_data = _pem(cluster, "certificate-authority-data", where=where)
    if insecure and (ca_file or ca_data):
        raise ConfigError(
            f"{where}: insecure-skip-tls-verify and certificate-authority are both set (kubectl refuses it)"
        )
    proxy_url = _text(cluster, "proxy-url", where=where)
    if proxy_url is not None and urlsplit(proxy_url).scheme not in ("http", "https"):
        raise ConfigError(f"{where}: proxy-url {proxy_url!r}: only http and https proxies are supported")
    return {
        "server": server.rstrip("/"),
        "insecure": insecure,
        "ca_file": ca_file,
        "ca_data": ca_data,
        "tls_server_name": _text(cluster, "tls-server-name", where=where),
        "proxy_url": proxy_url,
    }


def _user_fields(user: Mapping[str, Any], *, where: str, base: Path) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "token": _text(user, "token", where=where),
        "token_file": _file(user, "tokenFile", where=where, base=base),
        "cert_file": _file(user, "client-certificate", where=where, base=base),
        "cert_data": _pem(user, "client-certificate-data", where=where),
        "key_file": _file(user, "client-key", where=where, base=base),
        "key_data": _pem(user, "client-key-data", where=where),
        "username": _text(user, "username", where=where),
        "password": _text(user, "password", where=where),
        "exotic": "exec" if user.get("exec") else "auth-provider" if user.get("auth-provider") else None,
    }
    has_cert = fields["cert_file"] is not None or fields["cert_data"] is not None
    has_key = fields["key_file"] is not None or fields["key_data"] is not None
    if has_cert != has_key:
        present, missing = (
            ("client-certificate", "client-key") if has_cert else ("client-key", "client-certificate")
        )
        raise ConfigError(f"{where}: {present} is set without {missing} (or {missing}-data)")
    if fields["username"] is None or fields["password"] is None:
        fields["username"] = fields["password"] = (
            None  # basic credentials need both (a name alone sends none)
        )
    return fields
