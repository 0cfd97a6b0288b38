"""The HTTP session to the API server, built from `Credentials`: TLS, authentication, proxy.

Rule: one aiohttp session per `Kube`, owned here. TLS is verified against the cluster's CA alone
(else the system's roots, or not at all with insecure-skip-tls-verify), the certificate's name checked
against tls-server-name when one is given, a client certificate presented when the user has one.
Every request carries the user's credential: a bearer token (a token file is re-read at most
every TOKEN_FILE_SECONDS and at once after a 401, as client-go does for a rotated
service-account token; an exec plugin's token comes from `exotic.py`) or basic credentials. The
proxy is resolved once (the cluster's proxy-url, else HTTPS_PROXY / HTTP_PROXY / NO_PROXY), never
per request: aiohttp with `trust_env` would read the environment and ~/.netrc in a thread on
every request.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import ssl
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from rebootd.kube.credentials import ConfigError, Credentials

TOKEN_FILE_SECONDS = 60.0  # client-go's cachingTokenSource re-reads a token file once a minute
READ_BUFSIZE = 2**21


class Auth(Protocol):
    """The Authorization header of the next request, and a refresh after a 401."""

    async def header(self) -> str | None: ...

    async def refresh(self) -> bool:
        """Get the credential anew; False when nothing can change (no point in retrying)."""
        ...


class StaticAuth:
    """A fixed header (a token, basic credentials), or none."""

    def __init__(self, *, header: str | None) -> None:
        self._header = header

    async def header(self) -> str | None:
        return self._header

    async def refresh(self) -> bool:
        return False


class TokenFileAuth:
    """A bearer token read from a file, re-read once it is `max_age` seconds old (by `now`, a
    monotonic clock) and on `refresh`; a failed re-read keeps the last token read."""

    def __init__(self, *, path: Path, now: Callable[[], float], max_age: float = TOKEN_FILE_SECONDS) -> None:
        self._path = path
        self._now = now
        self._max_age = max_age
        self._token = self._read(first=True)
        self._read_at = now()

    def _read(self, *, first: bool = False) -> str:
        try:
            token = self._path.read_text().strip()
        except OSError as exc:
            if first:
                raise ConfigError(f"token file {self._path}: cannot read it: {exc.strerror or exc}") from exc
            return self._token
        if not token and first:
            raise ConfigError(f"token file {self._path} is empty")
        return token or self._token

    async def header(self) -> str | None:
        if self._now() - self._read_at >= self._max_age:
            self._token, self._read_at = self._read(), self._now()
        return f"Bearer {self._token}"

    async def refresh(self) -> bool:
        before = self._token
        self._token, self._read_at = self._read(), self._now()
        return self._token != before


def auth_for(*, credentials: Credentials, now: Callable[[], float]) -> Auth:
    """The credential of a non-exotic user: token (or token file), basic, or none (a client
    certificate, or anonymous). With both a token and a token file the file wins, re-read."""
    if credentials.token_file is not None:
        return TokenFileAuth(path=credentials.token_file, now=now)
    if credentials.token is not None:
        return StaticAuth(header=f"Bearer {credentials.token}")
    if credentials.username is not None and credentials.password is not None:
        pair = f"{credentials.username}:{credentials.password}".encode()
        return StaticAuth(header="Basic " + base64.b64encode(pair).decode("ascii"))
    return StaticAuth(header=None)


def ssl_context(credentials: Credentials) -> ssl.SSLContext:
    """The TLS set-up of `credentials`; a file or PEM that does not load is a ConfigError naming it."""
    where = credentials.source
    if credentials.ca_file is None and credentials.ca_data is None:
        ctx = ssl.create_default_context()  # the system's roots
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the cluster's CA only, as client-go trusts it
    if credentials.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for field, kwargs in (
        ("certificate-authority", {"cafile": credentials.ca_file} if credentials.ca_file else None),
        ("certificate-authority-data", {"cadata": credentials.ca_data} if credentials.ca_data else None),
    ):
        if kwargs is not None:
            try:
                ctx.load_verify_locations(**kwargs)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ConfigError(f"{where}: {field}: not a loadable PEM certificate ({exc})") from exc
    cert = credentials.cert_file or credentials.cert_data
    key = credentials.key_file or credentials.key_data
    if cert is not None and key is not None:
        _load_client_certificate(ctx, cert=cert, key=key, where=where)
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, *, cert: Path | str, key: Path | str, where: str) -> None:
    """`ssl` loads a certificate and key from files only: PEM data goes through a private temporary
    directory, removed at once."""
    with tempfile.TemporaryDirectory(prefix="rebootd-tls-") as tmp:
        paths: list[Path] = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            if isinstance(value, Path):
                paths.append(value)
                continue
            path = Path(tmp) / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
            with os.fdopen(fd, "w") as f:
                f.write(value)
            paths.append(path)
        try:
            ctx.load_cert_chain(certfile=paths[0], keyfile=paths[1])
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{where}: client-certificate and client-key do not load as a PEM pair ({exc})"
            ) from exc


def resolve_proxy(*, credentials: Credentials, environ: Mapping[str, str]) -> str | None:
    """The cluster's proxy-url, else the environment's proxy for the server (NO_PROXY honoured)."""
    if credentials.proxy_url is not None:
        return credentials.proxy_url
    url = urlsplit(credentials.server)
    proxies = {k.lower(): v for k, v in environ.items() if k.lower().endswith("_proxy") and v}
    proxy = proxies.get(f"{url.scheme}_proxy")
    if not proxy:
        return None
    no_proxy = proxies.get("no_proxy", "")
    if no_proxy and _bypassed(url.hostname or "", no_proxy):
        return None
    return proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as Go's httpproxy reads it: `*`, a host or domain suffix (`.example.com` or
    `example.com`), an IP address or a CIDR; ports ignored."""
    host = host.strip("[]").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.lower().split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.split(":")[0].lstrip(".") if entry.count(":") <= 1 else entry
        if host == name or host.endswith("." + name):
            return True
    return False


class ApiSession:
    """The open connection to one API server: `request` sends one HTTP request with the
    credential and returns the response (the caller reads and releases it)."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        auth: Auth,
        user_agent: str,
        environ: Mapping[str, str],
    ) -> None:
        self.credentials = credentials
        self.auth = auth
        self.user_agent = user_agent
        self._base = URL(credentials.server)
        self._ssl: ssl.SSLContext | bool = ssl_context(credentials) if self._base.scheme == "https" else False
        self._proxy = resolve_proxy(credentials=credentials, environ=environ)
        self._server_hostname = credentials.tls_server_name
        self.session = aiohttp.ClientSession(trust_env=False, read_bufsize=READ_BUFSIZE)

    @property
    def connector(self) -> aiohttp.BaseConnector | None:
        return self.session.connector

    async def request(
        self,
        *,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Any,
        request_timeout: float | aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        all_headers = {"User-Agent": self.user_agent, **headers}
        authorization = await self.auth.header()
        if authorization is not None:
            all_headers["Authorization"] = authorization
        url = self._base.with_path(self._base.path.rstrip("/") + path, encoded=True)
        return await self.session.request(
            method,
            url,
            params=list(query) or None,
            headers=all_headers,
            data=json.dumps(body) if body is not None else None,
            timeout=(
                request_timeout
                if isinstance(request_timeout, aiohttp.ClientTimeout)
                else aiohttp.ClientTimeout(total=request_timeout)
            ),
            ssl=self._ssl,
            proxy=self._proxy,
            server_hostname=self._server_hostname,
        )

    async def reauthenticate(self) -> bool:
        """After a 401: get the credential anew; False when it cannot have changed."""
        return await self.auth.refresh()

    async def close(self) -> None:
        await self.session.close()
