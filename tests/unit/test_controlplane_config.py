"""The control plane's pure configuration and build keys: token file lines the apiserver parses,
an audit policy that drops reads and keeps writes whole, kubeconfigs with exactly one way to
trust the server, flags on loopback only, and a build key that follows the pinned module."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rebootd.controlplane import config
from rebootd.controlplane.build import (
    BUILD_COMMAND,
    BuildError,
    build_key,
    find_module_dir,
    locate_binaries,
    version_ldflags,
)
from rebootd.controlplane.config import Layout, Ports, User


def fake_tokens() -> Callable[[], str]:
    counter = iter(range(100))
    return lambda: f"token-{next(counter)}"


def test_token_file_lines_are_token_user_uid_and_quoted_groups() -> None:
    users = [
        User(name="rebootd-admin", token="t1", groups=("system:masters",), uid="admin"),
        User(name="alice", token="t2"),
    ]
    assert config.token_file(users) == 't1,rebootd-admin,admin,"system:masters"\nt2,alice,alice\n'


def test_default_users_have_an_admin_the_control_plane_identities_and_unprivileged_users() -> None:
    users = config.users_by_name(config.default_users(new_token=fake_tokens()))
    assert users[config.ADMIN].groups == ("system:masters",)
    assert users[config.CONTROLLER_MANAGER].groups == ()
    assert users[config.SCHEDULER].groups == ()
    assert all(users[name].groups == () for name in config.PLAIN_USERS)
    assert len({user.token for user in users.values()}) == len(users)


def test_audit_policy_records_only_the_reads_of_rebootd_and_its_whatif_reader_and_every_write() -> None:
    policy = json.loads(config.audit_policy())
    readers, first, non_resource, last = policy["rules"]
    assert readers == {
        "level": "Metadata",
        "users": [
            "system:serviceaccount:kube-system:rebootd",
            "system:serviceaccount:kube-system:rebootd-whatif",
        ],
        "verbs": ["get", "list", "watch"],
    }
    assert first == {"level": "None", "verbs": ["get", "list", "watch"]}
    assert non_resource["level"] == "None"
    assert last == {"level": "RequestResponse"}


@pytest.mark.parametrize("ca", [Path("/certs/apiserver.crt"), None])
def test_kubeconfig_trusts_the_server_one_way_only(ca: Path | None) -> None:
    user = User(name="alice", token="t")
    cluster = config.kubeconfig(server="https://127.0.0.1:6443", user=user, ca_file=ca)["clusters"][0][
        "cluster"
    ]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert ("certificate-authority" in cluster) != ("insecure-skip-tls-verify" in cluster)


def test_every_component_listens_on_loopback_only(tmp_path: Path) -> None:
    ports = Ports(etcd_client=1, etcd_peer=2, apiserver=3, controller_manager=4, scheduler=5)
    layout = Layout(root=tmp_path)
    flags = [
        *config.etcd_args(ports=ports, layout=layout),
        *config.apiserver_args(ports=ports, layout=layout),
        *config.controller_manager_args(
            ports=ports, layout=layout, node_monitor_period=1, node_monitor_grace_period=5
        ),
        *config.scheduler_args(ports=ports, layout=layout),
    ]
    addresses = [flag for flag in flags if "url" in flag.split("=")[0] or "address" in flag.split("=")[0]]
    assert addresses
    assert all("127.0.0.1" in flag for flag in addresses), addresses
    assert "--authorization-mode=Node,RBAC" in flags
    assert f"--service-account-signing-key-file={layout.sa_key}" in flags


def test_version_ldflags_set_component_base_and_client_go_to_the_release() -> None:
    flags = version_ldflags(release="v1.37.2")
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v1.37.2" in flags
    assert "-X k8s.io/component-base/version.gitMinor=37" in flags


def test_build_key_follows_go_sum_and_the_release(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n")
    (tmp_path / "go.sum").write_text("a v1 h1:x\n")
    first = build_key(module_dir=tmp_path, release="v1.37.2")
    assert first.startswith("v1.37.2-")
    assert build_key(module_dir=tmp_path, release="v1.37.2") == first
    assert build_key(module_dir=tmp_path, release="v1.36.3") != first
    (tmp_path / "go.sum").write_text("a v2 h1:y\n")
    assert build_key(module_dir=tmp_path, release="v1.37.2") != first


def test_missing_binaries_name_the_command_that_builds_them(tmp_path: Path) -> None:
    module = find_module_dir()
    assert (module / "go.sum").is_file()
    with pytest.raises(BuildError, match=BUILD_COMMAND):
        locate_binaries(module_dir=module, env={"XDG_CACHE_HOME": str(tmp_path)})
