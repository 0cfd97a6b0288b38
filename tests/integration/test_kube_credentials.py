"""Each way of authenticating `Kube.connect` supports, against the emulator served over TLS: the
in-cluster service account (IPv4 and IPv6, the token file re-read after rotation), and the
kubeconfig's CA file or data, insecure-skip-tls-verify, tls-server-name, proxy-url, a named
context, token, tokenFile, client certificate and key as files or data, username and password.
The emulator authenticates a client certificate as kube-apiserver does (CN the user, O the
groups), so the user it records proves which credential arrived. Certificates are made with the
real openssl on loopback names only."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebootd.emulator.emulator import Emulator
from rebootd.kube import Credentials, Kube, KubeError, RetryPolicy
from rebootd.kube.session import ssl_context
from tests.fixtures.emulator import FAST_TIMING
from tests.fixtures.tools import free_port, require_binary
from tests.integration.test_kube import run_fresh_python

SERVER_NAME = "kubernetes.default.svc"
ONE_ATTEMPT = RetryPolicy(attempts=1)  # a refused handshake is not retried for seconds


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN=cert-user, O=cert-group
    client_key: Path

    def data(self, path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = require_binary("openssl", install_hint="apt-get install openssl")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=rebootd-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip
    (d / "server.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,IP:::1,DNS:{SERVER_NAME}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    for name, subject in (("server", "/CN=apiserver"), ("client", "/O=cert-group/CN=cert-user")):
        _openssl(
            openssl, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d
        )
        _openssl(openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
                 cwd=d)  # fmt: skip
    return Pki(
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
    )


TlsEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def tls_emulator(pki: Pki) -> AsyncIterator[TlsEmulator]:
    started: list[Emulator] = []

    async def make(*, host: str = "127.0.0.1", **kwargs: Any) -> Emulator:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        ctx.load_verify_locations(pki.ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate authenticates when there is one
        emu = Emulator(timing=FAST_TIMING, **kwargs)
        await emu.start(host=host, port=0, ssl_context=ctx)
        started.append(emu)
        emu.add_node(name="node-a")
        return emu

    try:
        yield make
    finally:
        for emu in reversed(started):
            await emu.close()


def write_kubeconfig(
    path: Path,
    *,
    cluster: dict[str, Any],
    user: dict[str, Any],
    extra_contexts: dict[str, dict[str, Any]] | None = None,
    current: str | None = "main",
) -> Path:
    clusters = [{"name": "main", "cluster": cluster}]
    contexts = [{"name": "main", "context": {"cluster": "main", "user": "main"}}]
    for name, other in (extra_contexts or {}).items():
        clusters.append({"name": name, "cluster": other})
        contexts.append({"name": name, "context": {"cluster": name, "user": "main"}})
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "main", "user": user}],
        "contexts": contexts,
    }
    if current is not None:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


async def get_node_as(emu: Emulator, kubeconfig: Path, **connect: Any) -> None:
    kube = await Kube.connect(kubeconfig=kubeconfig, environ={}, **connect)
    try:
        node = await kube.get_node(name="node-a")
    finally:
        await kube.close()
    assert node["metadata"]["name"] == "node-a"


TOKENS = {"first-token": ("token-user", ["token-group"]), "second-token": ("rotated-user", [])}


async def test_ca_file_and_token_authenticate_over_verified_tls(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority": str(pki.ca)},
        user={"token": "first-token"},
    )

    await get_node_as(emu, config)

    assert emu.url.startswith("https://")
    assert emu.request_counts[("token-user", "get")] == 1


async def test_client_certificate_data_authenticates_as_its_common_name(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority-data": pki.data(pki.ca)},
        user={
            "client-certificate-data": pki.data(pki.client_cert),
            "client-key-data": pki.data(pki.client_key),
        },
    )

    await get_node_as(emu, config)

    assert emu.request_counts[("cert-user", "get")] == 1


async def test_client_certificate_files_are_relative_to_the_kubeconfig(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    for source in (pki.ca, pki.client_cert, pki.client_key):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority": "ca.crt"},
        user={"client-certificate": "client.crt", "client-key": "client.key"},
    )

    await get_node_as(emu, config)

    assert emu.request_counts[("cert-user", "get")] == 1


def test_a_cluster_ca_is_the_only_root_trusted(pki: Pki) -> None:
    with_ca = Credentials(server="https://127.0.0.1:1", source="t", ca_file=pki.ca)
    without = Credentials(server="https://127.0.0.1:1", source="t")

    trusted = ssl_context(with_ca).get_ca_certs()

    assert len(trusted) == 1
    assert "rebootd-test-ca" in str(trusted[0]["subject"])
    assert ssl_context(with_ca).verify_mode == ssl.CERT_REQUIRED
    assert ssl_context(without).verify_mode == ssl.CERT_REQUIRED


async def test_the_server_certificate_is_verified_unless_insecure_skip_tls_verify(
    tls_emulator: TlsEmulator, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    unverifiable = write_kubeconfig(
        tmp_path / "system-roots", cluster={"server": emu.url}, user={"token": "first-token"}
    )
    insecure = write_kubeconfig(
        tmp_path / "insecure",
        cluster={"server": emu.url, "insecure-skip-tls-verify": True},
        user={"token": "first-token"},
    )

    with pytest.raises(KubeError) as refused:
        await get_node_as(emu, unverifiable, retry=ONE_ATTEMPT)
    await get_node_as(emu, insecure)

    assert refused.value.status == 0
    assert "certificate" in refused.value.message.lower()
    assert emu.request_counts[("token-user", "get")] == 1


async def test_tls_server_name_is_the_name_checked_against_the_certificate(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    cluster = {"server": emu.url, "certificate-authority": str(pki.ca)}
    right = write_kubeconfig(
        tmp_path / "right", cluster={**cluster, "tls-server-name": SERVER_NAME}, user={"token": "first-token"}
    )
    wrong = write_kubeconfig(
        tmp_path / "wrong",
        cluster={**cluster, "tls-server-name": "elsewhere.example"},
        user={"token": "first-token"},
    )

    await get_node_as(emu, right)
    with pytest.raises(KubeError) as refused:
        await get_node_as(emu, wrong, retry=ONE_ATTEMPT)

    assert "elsewhere.example" in refused.value.message
    assert emu.request_counts[("token-user", "get")] == 1


async def test_proxy_url_carries_the_requests(tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens: only a request through it fails
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority": str(pki.ca), "proxy-url": dead_proxy},
        user={"token": "first-token"},
    )
    kube = await Kube.connect(kubeconfig=config, environ={}, retry=ONE_ATTEMPT)
    try:
        with pytest.raises(KubeError) as failed:
            await kube.get_node(name="node-a")
    finally:
        await kube.close()

    assert failed.value.status == 0
    assert dead_proxy.rsplit(":", 1)[1] in failed.value.message  # the proxy's port, not the server's
    assert emu.request_counts[("token-user", "get")] == 0


async def test_a_named_context_is_used_instead_of_the_current_one(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=TOKENS)
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": f"https://127.0.0.1:{free_port()}", "certificate-authority": str(pki.ca)},
        user={"token": "first-token"},
        extra_contexts={"real": {"server": emu.url, "certificate-authority": str(pki.ca)}},
    )

    await get_node_as(emu, config, context="real")

    assert emu.request_counts[("token-user", "get")] == 1


async def test_username_and_password_are_sent_as_basic_credentials(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator()  # no token table: a basic credential names the client by its user name
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority": str(pki.ca)},
        user={"username": "basic-user", "password": "secret"},
    )

    await get_node_as(emu, config)

    assert emu.request_counts[("basic-user", "get")] == 1


async def test_a_rotated_token_file_is_read_again_after_a_401(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens=dict(TOKENS))
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority": str(pki.ca)},
        user={"tokenFile": str(token_file)},
    )
    kube = await Kube.connect(kubeconfig=config, environ={})
    try:
        await kube.get_node(name="node-a")
        token_file.write_text("second-token\n")  # the kubelet rotates the projected token ...
        assert emu.api.tokens is not None
        emu.api.tokens.pop("first-token")  # ... and the old one is no longer accepted
        await kube.get_node(name="node-a")
    finally:
        await kube.close()

    assert emu.request_counts[("token-user", "get")] == 1
    assert emu.request_counts[("rotated-user", "get")] == 1
    assert kube.requests["get"] == 3  # the refused attempt, then the retry with the new token


def service_account(directory: Path, pki: Pki, *, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(pki.ca.read_bytes())
    (directory / "namespace").write_text("kube-system")
    return directory


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_in_cluster_service_account_reaches_the_service_address(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path, host: str
) -> None:
    emu = await tls_emulator(host=host, tokens=TOKENS)
    port = emu.url.rsplit(":", 1)[1]
    environ = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "HOME": str(tmp_path)}
    sa_dir = service_account(tmp_path / "sa", pki, token="first-token")

    kube = await Kube.connect(environ=environ, service_account_dir=sa_dir)
    try:
        await kube.get_node(name="node-a")
    finally:
        await kube.close()

    assert kube.session.credentials.source == "in-cluster"
    assert kube.session.credentials.namespace == "kube-system"
    assert emu.request_counts[("token-user", "get")] == 1


async def test_a_missing_kubeconfig_outside_a_cluster_names_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(KubeError) as failed:
        await Kube.connect(environ={"HOME": str(tmp_path)}, service_account_dir=tmp_path / "none")

    assert failed.value.reason == "ConfigError"
    assert str(tmp_path / ".kube" / "config") in failed.value.message
    assert "not running in a cluster" in failed.value.message


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.signature"


async def test_an_oidc_auth_provider_token_goes_through_the_client_library(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    id_token = unsigned_jwt({"sub": "oidc-user", "exp": 4102444800})  # 2100: not refreshed
    emu = await tls_emulator(tokens={id_token: ("oidc-user", ["oidc-group"])})
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": emu.url, "certificate-authority": str(pki.ca)},
        user={"auth-provider": {"name": "oidc", "config": {"id-token": id_token, "client-id": "rebootd"}}},
    )

    await get_node_as(emu, config)

    assert emu.request_counts[("oidc-user", "get")] == 1


EXEC_CLIENT = """
import asyncio, json, sys
from pathlib import Path
from rebootd.kube import Kube

def loaded():
    return sum(1 for m in sys.modules if m.split(".")[0] == "kubernetes_asyncio")

async def main():
    before = loaded()
    kube = await Kube.connect(kubeconfig=Path(sys.argv[1]), environ={})
    try:
        node = await kube.get_node(name="node-a")
    finally:
        await kube.close()
    print(json.dumps({"before": before, "after": loaded(), "node": node["metadata"]["name"]}))

asyncio.run(main())
"""


async def test_only_an_exec_plugin_user_loads_the_client_library(
    tls_emulator: TlsEmulator, pki: Pki, tmp_path: Path
) -> None:
    emu = await tls_emulator(tokens={"plugin-token": ("plugin-user", [])})
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, sys\n"
        'json.dump({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",\n'
        '           "status": {"token": "plugin-token"}}, sys.stdout)\n'
    )
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                          "args": [str(plugin)], "interactiveMode": "Never"}}  # fmt: skip
    cluster = {"server": emu.url, "certificate-authority": str(pki.ca)}
    plain = write_kubeconfig(tmp_path / "plain", cluster=cluster, user={"token": "plugin-token"})
    exotic = write_kubeconfig(tmp_path / "exec", cluster=cluster, user=exec_user)

    plain_run = await run_fresh_python(EXEC_CLIENT, str(plain))
    exotic_run = await run_fresh_python(EXEC_CLIENT, str(exotic))

    assert plain_run == {"before": 0, "after": 0, "node": "node-a"}
    assert exotic_run["before"] == 0
    assert exotic_run["after"] > 0
    assert exotic_run["node"] == "node-a"
    assert emu.request_counts[("plugin-user", "get")] == 2
