"""The credential loader's rules without a server: kubectl's order and merging, relative paths,
the errors that name the field at fault, a token file re-read once a minute (an injected clock),
the proxy resolved once with NO_PROXY as Go reads it, and no kubernetes-asyncio for plain users."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebootd.kube.credentials import ConfigError, Credentials, from_kubeconfig, in_cluster, load_credentials
from rebootd.kube.session import TokenFileAuth, auth_for, resolve_proxy, ssl_context

SRC = Path(__file__).resolve().parents[2] / "src"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def kubeconfig(path: Path, *, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None,
               current: str | None = "main", context: dict[str, Any] | None = None) -> Path:  # fmt: skip
    config = {
        "clusters": [
            {
                "name": "main",
                "cluster": cluster if cluster is not None else {"server": "https://127.0.0.1:6443"},
            }
        ],
        "users": [{"name": "main", "user": user or {}}],
        "contexts": [{"name": "main", "context": context or {"cluster": "main", "user": "main"}}],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def error_of(path: Path, *, context: str | None = None) -> str:
    with pytest.raises(ConfigError) as failed:
        from_kubeconfig(paths=[path], context=context)
    assert failed.value.status == 0
    assert failed.value.reason == "ConfigError"
    return failed.value.message


@pytest.mark.parametrize(
    ("cluster", "user", "expected"),
    [
        ({}, {}, "cluster 'main': server is not set"),
        ({"server": "ftp://x"}, {}, "server 'ftp://x' is not an http(s) URL"),
        ({"server": "https://a", "certificate-authority-data": "%%%"}, {},
         "certificate-authority-data is not base64"),
        ({"server": "https://a", "certificate-authority-data": base64.b64encode(b"hi").decode()}, {},
         "certificate-authority-data holds no PEM block"),
        ({"server": "https://a", "certificate-authority": "absent.crt"}, {}, "certificate-authority "),
        ({"server": "https://a", "insecure-skip-tls-verify": "yes"}, {},
         "insecure-skip-tls-verify is not true or false"),
        ({"server": "https://a", "insecure-skip-tls-verify": True, "certificate-authority-data":
          base64.b64encode(PEM.encode()).decode()}, {}, "insecure-skip-tls-verify and certificate-authority"),
        ({"server": "https://a", "proxy-url": "socks5://p:1080"}, {}, "proxy-url 'socks5://p:1080'"),
        ({"server": "https://a"}, {"client-certificate-data": base64.b64encode(PEM.encode()).decode()},
         "user 'main': client-certificate is set without client-key"),
        ({"server": "https://a"}, {"tokenFile": "no-such-token"}, "user 'main': tokenFile "),
        ({"server": "https://a"}, {"token": 42}, "user 'main': token is not a string"),
    ],
)  # fmt: skip
def test_a_bad_field_is_named_with_its_file_and_entry(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], expected: str
) -> None:
    path = kubeconfig(tmp_path / "config", cluster=cluster, user=user)

    message = error_of(path)

    assert expected in message
    assert str(path) in message


def test_a_missing_context_or_current_context_is_named(tmp_path: Path) -> None:
    assert "current-context is not set" in error_of(kubeconfig(tmp_path / "a", current=None))
    assert "context 'other' not found" in error_of(kubeconfig(tmp_path / "b"), context="other")
    assert "cluster 'gone' not found" in error_of(
        kubeconfig(tmp_path / "c", context={"cluster": "gone", "user": "main"})
    )
    assert "user 'nobody' not found" in error_of(
        kubeconfig(tmp_path / "d", context={"cluster": "main", "user": "nobody"})
    )
    (tmp_path / "e").write_text("clusters: [unclosed")
    assert "not valid YAML" in error_of(tmp_path / "e")


def test_kubeconfig_list_merges_first_wins_and_skips_missing_files(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "first", cluster={"server": "https://first:6443"}, user={"token": "t1"})
    second = kubeconfig(tmp_path / "second", cluster={"server": "https://second:6443"}, current="other")
    environ = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "absent"), str(first), str(second)])}

    creds = load_credentials(
        kubeconfig=None, environ=environ, home=tmp_path, service_account_dir=tmp_path / "no-sa"
    )

    assert creds.server == "https://first:6443"
    assert creds.token == "t1"
    assert creds.context == "main"


def test_relative_files_are_resolved_beside_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    for name in ("ca.crt", "token"):
        (tmp_path / "conf" / name).write_text("x")
    path = kubeconfig(
        tmp_path / "conf" / "config",
        cluster={
            "server": "https://a:1/",
            "certificate-authority": "ca.crt",
            "tls-server-name": "api.internal",
        },
        user={"tokenFile": "token"},
    )

    creds = from_kubeconfig(paths=[path], context=None)

    assert creds.ca_file == tmp_path / "conf" / "ca.crt"
    assert creds.token_file == tmp_path / "conf" / "token"
    assert creds.server == "https://a:1"
    assert creds.tls_server_name == "api.internal"


def test_exec_and_auth_provider_users_are_exotic(tmp_path: Path) -> None:
    plugin = from_kubeconfig(
        paths=[kubeconfig(tmp_path / "a", user={"exec": {"command": "x"}})], context=None
    )
    provider = from_kubeconfig(
        paths=[kubeconfig(tmp_path / "b", user={"auth-provider": {"name": "oidc"}})], context=None
    )

    assert plugin.exotic == "exec"
    assert provider.exotic == "auth-provider"


def test_in_cluster_brackets_an_ipv6_service_host_and_names_a_bad_port(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}

    creds = in_cluster(environ=environ, service_account_dir=tmp_path)
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_PORT is 'https'"):
        in_cluster(environ={**environ, "KUBERNETES_SERVICE_PORT": "https"}, service_account_dir=tmp_path)

    assert creds.server == "https://[fd00::1]:443"
    assert creds.ca_file is None  # no ca.crt in the directory: the system's roots
    assert creds.token_file == tmp_path / "token"


def test_in_cluster_wins_only_without_an_explicit_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    explicit = kubeconfig(tmp_path / "config")

    inside = load_credentials(kubeconfig=None, environ=environ, home=tmp_path, service_account_dir=tmp_path)
    outside = load_credentials(
        kubeconfig=explicit, environ=environ, home=tmp_path, service_account_dir=tmp_path
    )

    assert inside.source == "in-cluster"
    assert outside.server == "https://127.0.0.1:6443"


def test_a_token_file_is_read_again_after_a_minute_and_on_refresh(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    now = [100.0]
    auth = TokenFileAuth(path=token, now=lambda: now[0])

    async def scenario() -> list[str | None]:
        seen = [await auth.header()]
        token.write_text("two\n")
        now[0] += 59.0
        seen.append(await auth.header())  # cached under a minute
        now[0] += 1.0
        seen.append(await auth.header())  # a minute old: read again
        token.write_text("three\n")
        seen.append(str(await auth.refresh()))
        seen.append(await auth.header())
        token.unlink()
        now[0] += 60.0
        seen.append(await auth.header())  # a failed re-read keeps the last token
        return seen

    assert asyncio.run(scenario()) == [
        "Bearer one",
        "Bearer one",
        "Bearer two",
        "True",
        "Bearer three",
        "Bearer three",
    ]


def test_basic_credentials_need_both_username_and_password(tmp_path: Path) -> None:
    both = Credentials(server="https://a", source="t", username="u", password="p")
    alone = from_kubeconfig(paths=[kubeconfig(tmp_path / "c", user={"username": "u"})], context=None)

    header = asyncio.run(auth_for(credentials=both, now=lambda: 0.0).header())
    none = asyncio.run(auth_for(credentials=alone, now=lambda: 0.0).header())

    assert header == "Basic " + base64.b64encode(b"u:p").decode()
    assert none is None


def test_a_ca_that_does_not_load_is_named() -> None:
    bad = Credentials(server="https://a", source="kubeconfig k, context 'c'", ca_data=PEM)

    with pytest.raises(
        ConfigError, match="kubeconfig k, context 'c': certificate-authority-data: not a loadable"
    ):
        ssl_context(bad)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128", "NO_PROXY": "example.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "other.com,*"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "ample.com"}, "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128"}, None),  # an https server uses HTTPS_PROXY only
    ],
)
def test_the_environment_proxy_honours_no_proxy(environ: dict[str, str], expected: str | None) -> None:
    creds = Credentials(server="https://api.example.com:6443", source="t")

    assert resolve_proxy(credentials=creds, environ=environ) == expected


def test_no_proxy_matches_addresses_and_cidrs_and_proxy_url_wins() -> None:
    by_ip = Credentials(server="https://10.1.2.3:6443", source="t")
    pinned = Credentials(server="https://10.1.2.3:6443", source="t", proxy_url="http://pinned:1")
    environ = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}

    assert resolve_proxy(credentials=by_ip, environ=environ) is None
    assert resolve_proxy(credentials=by_ip, environ={**environ, "NO_PROXY": "10.1.2.3"}) is None
    assert (
        resolve_proxy(credentials=by_ip, environ={**environ, "NO_PROXY": "192.168.0.0/16"})
        == "http://proxy:3128"
    )
    assert resolve_proxy(credentials=pinned, environ=environ) == "http://pinned:1"


def test_a_plain_kubeconfig_user_loads_no_kubernetes_asyncio(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", cluster={"server": "http://127.0.0.1:1"}, user={"token": "t"})
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        from pathlib import Path
        import rebootd.cli, rebootd.daemon
        from rebootd.kube import Kube
        async def main():
            kube = await Kube.connect(kubeconfig=Path(sys.argv[1]), environ={})
            await kube.close()
        asyncio.run(main())
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes_asyncio")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )

    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
