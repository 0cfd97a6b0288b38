"""Pure configuration of a test control plane: ports and paths in, flags and file contents out.

Rule: nothing here touches a process, a socket or a file; `launch` writes what this returns.
The apiserver authenticates by a static token file (an admin in system:masters, identities for
the controller-manager and scheduler that the RBAC bootstrap policy already binds, and plain
users with no rights for least-privilege runs), authorises with Node,RBAC, signs ServiceAccount
tokens with one RSA key (so the TokenRequest API issues real tokens), and writes an audit log of
every write (RequestResponse) and nothing of reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADMIN = "rebootd-admin"
CONTROLLER_MANAGER = "system:kube-controller-manager"
SCHEDULER = "system:kube-scheduler"
PLAIN_USERS = ("alice", "bob", "carol")
SERVICE_CIDR = "10.96.0.0/24"  # data only: nothing connects to a service address
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
ETCD_NAME = "rebootd-test"

READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class User:
    """One identity of the token file."""

    name: str
    token: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class Layout:
    """Where one run keeps its files (all under one fresh directory)."""

    root: Path
    etcd_data: Path = field(init=False)
    cert_dir: Path = field(init=False)
    token_file: Path = field(init=False)
    sa_key: Path = field(init=False)
    audit_policy: Path = field(init=False)
    audit_log: Path = field(init=False)
    admin_kubeconfig: Path = field(init=False)
    controller_manager_kubeconfig: Path = field(init=False)
    scheduler_kubeconfig: Path = field(init=False)
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        paths = {
            "etcd_data": "etcd",
            "cert_dir": "certs",
            "token_file": "tokens.csv",
            "sa_key": "sa.key",
            "audit_policy": "audit-policy.yaml",
            "audit_log": "audit.log",
            "admin_kubeconfig": "admin.kubeconfig",
            "controller_manager_kubeconfig": "controller-manager.kubeconfig",
            "scheduler_kubeconfig": "scheduler.kubeconfig",
            "logs": "logs",
        }
        for attribute, name in paths.items():
            object.__setattr__(self, attribute, self.root / name)

    @property
    def serving_cert(self) -> Path:
        """The apiserver's self-signed serving certificate (written by it on first start): the
        leaf for 127.0.0.1 followed by the CA that signed it, usable as a CA bundle."""
        return self.cert_dir / "apiserver.crt"


def default_users(*, new_token: Callable[[], str]) -> tuple[User, ...]:
    """The run's identities; `new_token()` returns a fresh random token."""
    users = [
        User(name=ADMIN, token=new_token(), groups=("system:masters",), uid="admin"),
        User(name=CONTROLLER_MANAGER, token=new_token(), uid="kcm"),
        User(name=SCHEDULER, token=new_token(), uid="scheduler"),
    ]
    users += [User(name=name, token=new_token(), uid=name) for name in PLAIN_USERS]
    return tuple(users)


def token_file(users: Sequence[User]) -> str:
    """The apiserver's --token-auth-file: `token,user,uid,"group1,group2"` per line."""
    lines = []
    for user in users:
        line = f"{user.token},{user.name},{user.uid or user.name}"
        if user.groups:
            line += ',"' + ",".join(user.groups) + '"'
        lines.append(line)
    return "\n".join(lines) + "\n"


# rebootd's own ServiceAccount (deploy/kustomize/base): its reads are audited too, so a run can
# count every request of the daemons and prove that none was refused (403). The what-if's reader
# (`rebootd simulate --from-cluster` under a read-only role) too: its test proves from the log
# that it read nothing else (no Secret) and wrote nothing.
WHATIF_READER = "system:serviceaccount:kube-system:rebootd-whatif"
AUDITED_READERS = ("system:serviceaccount:kube-system:rebootd", WHATIF_READER)


def audit_policy(*, audited_readers: Sequence[str] = AUDITED_READERS) -> str:
    """Reads only of `audited_readers` (metadata: who, what, the answer's code); every write with
    its request and response bodies."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "users": list(audited_readers), "verbs": list(READ_VERBS)},
            {"level": "None", "verbs": list(READ_VERBS)},
            {"level": "None", "nonResourceURLs": ["/*"]},
            {"level": "RequestResponse"},
        ],
    }
    return json.dumps(policy, indent=2) + "\n"  # JSON is YAML


def etcd_args(*, ports: Ports, layout: Layout) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        f"--name={ETCD_NAME}",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={ETCD_NAME}={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",  # tests only: a lost test cluster is started afresh
        "--log-level=warn",
    ]


def apiserver_args(*, ports: Ports, layout: Layout) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={layout.cert_dir}",
        "--authorization-mode=Node,RBAC",
        f"--token-auth-file={layout.token_file}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={layout.sa_key}",
        f"--service-account-signing-key-file={layout.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        "--audit-log-maxbackup=0",
    ]


def controller_manager_args(
    *, ports: Ports, layout: Layout, node_monitor_period: int, node_monitor_grace_period: int
) -> list[str]:
    return [
        f"--kubeconfig={layout.controller_manager_kubeconfig}",
        f"--authentication-kubeconfig={layout.controller_manager_kubeconfig}",
        f"--authorization-kubeconfig={layout.controller_manager_kubeconfig}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={layout.sa_key}",
        f"--root-ca-file={layout.serving_cert}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.cert_dir / 'controller-manager'}",
        f"--node-monitor-period={node_monitor_period}s",
        f"--node-monitor-grace-period={node_monitor_grace_period}s",
    ]


def scheduler_args(*, ports: Ports, layout: Layout) -> list[str]:
    return [
        f"--kubeconfig={layout.scheduler_kubeconfig}",
        f"--authentication-kubeconfig={layout.scheduler_kubeconfig}",
        f"--authorization-kubeconfig={layout.scheduler_kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.cert_dir / 'scheduler'}",
    ]


def kubeconfig(*, server: str, user: User, ca_file: Path | None) -> dict[str, Any]:
    """A kubeconfig for one user: the CA bundle when given, else insecure-skip-tls-verify (a
    client refuses both at once)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    else:
        cluster["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rebootd-test", "cluster": cluster}],
        "users": [{"name": user.name, "user": {"token": user.token}}],
        "contexts": [{"name": "rebootd-test", "context": {"cluster": "rebootd-test", "user": user.name}}],
        "current-context": "rebootd-test",
    }


def users_by_name(users: Sequence[User]) -> Mapping[str, User]:
    return {user.name: user for user in users}
