"""RBAC decisions and Forbidden messages match kube-apiserver's RBAC authorizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from rebootd.emulator.rbac import Authorizer, deny_message, effective_groups, service_account_username

REBOOTD = service_account_username(namespace="kube-system", name="rebootd")

# Shaped like `kubectl kustomize` output: several documents, some of other kinds, one without a
# namespace, one empty document.
MANIFESTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: rebootd, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: rebootd}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
- apiGroups: [apps]
  resources: [daemonsets]
  verbs: [get]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: rebootd}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: rebootd}
subjects:
- {kind: ServiceAccount, name: rebootd, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rebootd-lock, namespace: kube-system}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [rebootd]
  verbs: [get, watch, update, patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rebootd-lock, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rebootd-lock}
subjects:
- {kind: ServiceAccount, name: rebootd}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads-pods, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: unqualified}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects:
- {kind: User, name: dave}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-reader}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: monitoring-reads-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
- {kind: Group, name: "system:serviceaccounts:monitoring", apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: ops, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: namespace-reader}
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-reads-namespaces}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: namespace-reader}
subjects:
- {kind: Group, name: "system:authenticated", apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: scaler}
rules:
- apiGroups: ["*"]
  resources: ["*/scale"]
  verbs: ["*"]
- apiGroups: [apps]
  resources: ["*"]
  verbs: [list]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [settings]
  verbs: [get, list, delete, deletecollection]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-scales}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: scaler}
subjects:
- {kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wrong-ref-kind}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rebootd-lock}
subjects:
- {kind: User, name: erin}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: missing-role}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: does-not-exist}
subjects:
- {kind: User, name: frank}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: sa-without-namespace}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
- {kind: ServiceAccount, name: lost}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aggregated}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {example.com/aggregate-to-aggregated: "true"}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: piece
  labels: {example.com/aggregate-to-aggregated: "true"}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: carol-aggregated}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aggregated}
subjects:
- {kind: User, name: carol}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: rebootd, namespace: kube-system}
spec: {}
---
"""


@pytest.fixture(scope="module")
def authorizer() -> Authorizer:
    return Authorizer.from_documents(yaml.safe_load_all(MANIFESTS))


def _ask(
    authz: Authorizer,
    user: str,
    verb: str,
    resource: str,
    *,
    groups: tuple[str, ...] = (),
    group: str = "",
    sub: str = "",
    ns: str = "",
    name: str = "",
) -> bool:
    return authz.authorize(
        user=user,
        groups=groups,
        verb=verb,
        api_group=group,
        resource=resource,
        subresource=sub,
        namespace=ns,
        name=name,
    )


@dataclass(frozen=True)
class Req:
    """One resource request, positional for compact tables: user, verb, resource[/sub],
    then optional group, namespace, name and extra groups."""

    user: str
    verb: str
    resource: str
    group: str = ""
    ns: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.ns}/" if self.ns else ""
        return f"{self.user} {self.verb} {self.resource}.{self.group or 'core'} {where}{self.name}"

    def ask(self, authz: Authorizer) -> bool:
        resource, _, sub = self.resource.partition("/")
        return _ask(
            authz,
            self.user,
            self.verb,
            resource,
            groups=self.groups,
            group=self.group,
            sub=sub,
            ns=self.ns,
            name=self.name,
        )


COORD = "coordination.k8s.io"
MONITORING_SA = service_account_username(namespace="monitoring", name="prom")
DEFAULT_SA = service_account_username(namespace="default", name="rebootd")


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        # ClusterRoleBinding to a ServiceAccount: cluster-wide grants.
        (Req(REBOOTD, "get", "nodes", name="n1"), True),
        (Req(REBOOTD, "patch", "nodes", name="n1"), True),
        (Req(REBOOTD, "delete", "nodes", name="n1"), False),
        (Req(REBOOTD, "list", "pods"), True),
        (Req(REBOOTD, "list", "pods", ns="default"), True),
        (Req(REBOOTD, "delete", "pods", ns="default", name="p"), False),
        # Subresources are resources of their own.
        (Req(REBOOTD, "create", "pods/eviction", ns="d", name="p"), True),
        (Req(REBOOTD, "create", "pods", ns="d"), False),
        (Req(REBOOTD, "get", "pods/log", ns="d", name="p"), False),
        # API groups must match.
        (Req(REBOOTD, "get", "daemonsets", "apps", ns="k", name="x"), True),
        (Req(REBOOTD, "get", "daemonsets", ns="k", name="x"), False),
        (Req(REBOOTD, "get", "leases", ns="kube-system", name="rebootd"), False),
        # resourceNames: only requests that name that object.
        (Req(REBOOTD, "update", "leases", COORD, "kube-system", "rebootd"), True),
        (Req(REBOOTD, "update", "leases", COORD, "kube-system", "other"), False),
        (Req(REBOOTD, "watch", "leases", COORD, "kube-system", "rebootd"), True),  # fieldSelector name
        (Req(REBOOTD, "watch", "leases", COORD, "kube-system"), False),
        (Req(REBOOTD, "get", "leases", COORD, "kube-system"), False),
        (Req(REBOOTD, "create", "leases", COORD, "kube-system"), True),
        # A RoleBinding grants in its own namespace only (its SA subject defaults to it).
        (Req(REBOOTD, "update", "leases", COORD, "default", "rebootd"), False),
        (Req(REBOOTD, "update", "leases", COORD, "", "rebootd"), False),
        (Req(DEFAULT_SA, "get", "nodes", name="n1"), False),
        # RoleBinding to a ClusterRole: the ClusterRole's rules, inside the binding's namespace.
        (Req("alice", "get", "pods", ns="apps", name="p"), True),
        (Req("alice", "list", "pods", ns="apps"), True),
        (Req("alice", "get", "pods", ns="default", name="p"), False),
        (Req("alice", "list", "pods"), False),
        (Req("alice", "delete", "pods", ns="apps", name="p"), False),
        # A namespaced binding without a namespace lands in "default", as with kubectl apply.
        (Req("dave", "get", "pods", ns="default", name="p"), True),
        # Users match by exact name only.
        (Req("Alice", "get", "pods", ns="apps", name="p"), False),
        # Groups: given, added for service accounts, or system:authenticated.
        (Req("zed", "get", "nodes", name="n", groups=("ops",)), True),
        (Req("zed", "get", "nodes", name="n"), False),
        (Req(MONITORING_SA, "get", "nodes", name="n"), True),
        (Req("zed", "get", "namespaces", name="default"), True),
        (
            Req("system:anonymous", "get", "namespaces", name="default", groups=("system:unauthenticated",)),
            False,
        ),
        (Req("zed", "delete", "nodes", name="n", groups=("system:masters",)), True),
        # Wildcards: "*" verbs, "*/subresource", "*" resources (which match subresources too).
        (Req("bob", "update", "deployments/scale", "apps", "a", "d"), True),
        (Req("bob", "patch", "statefulsets/scale", "apps", "a", "s"), True),
        (Req("bob", "update", "deployments", "apps", "a", "d"), False),
        (Req("bob", "get", "deployments/status", "apps", "a", "d"), False),
        (Req("bob", "list", "replicasets", "apps", "a"), True),
        (Req("bob", "list", "replicasets/status", "apps", "a"), True),
        # resourceNames never match an empty name: no list, no deletecollection.
        (Req("bob", "get", "configmaps", ns="a", name="settings"), True),
        (Req("bob", "get", "configmaps", ns="a", name="other"), False),
        (Req("bob", "list", "configmaps", ns="a"), False),
        (Req("bob", "deletecollection", "configmaps", ns="a"), False),
        # Broken references grant nothing.
        (Req("erin", "get", "leases", COORD, "kube-system", "rebootd"), False),
        (Req("frank", "get", "pods", ns="a", name="p"), False),
        (Req("system:serviceaccount::lost", "get", "nodes", name="n"), False),
        # Aggregated ClusterRoles: the matched roles' rules replace the aggregated role's own.
        (Req("carol", "get", "services", ns="a", name="s"), True),
        (Req("carol", "get", "secrets", ns="a", name="s"), False),
    ],
    ids=lambda value: str(value) if isinstance(value, Req) else ("allowed" if value else "denied"),
)
def test_authorize_follows_rbac_rules(authorizer: Authorizer, req: Req, expected: bool) -> None:
    assert req.ask(authorizer) is expected


def test_star_resource_matches_subresources_too(authorizer: Authorizer) -> None:
    # ResourceMatches: "*" matches any combined resource, "replicasets/status" included.
    assert _ask(authorizer, "bob", "list", "replicasets", sub="status", group="apps", ns="a")
    star = Authorizer.from_documents(
        yaml.safe_load_all(
            """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: all}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: all}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: all}
subjects: [{kind: User, name: root}]
"""
        )
    )
    assert _ask(star, "root", "get", "replicasets", sub="status", group="apps", ns="a", name="r")
    assert _ask(star, "root", "create", "pods", sub="eviction", ns="a", name="p")
    assert not _ask(star, "nobody", "get", "pods", ns="a", name="p")


def test_allowed_by_names_the_granting_binding(authorizer: Authorizer) -> None:
    reason = authorizer.allowed_by(
        user=REBOOTD,
        groups=(),
        verb="patch",
        api_group="coordination.k8s.io",
        resource="leases",
        subresource="",
        namespace="kube-system",
        name="rebootd",
    )
    assert reason == (
        'RBAC: allowed by RoleBinding "rebootd-lock/kube-system" of Role "rebootd-lock" to '
        'ServiceAccount "rebootd/kube-system"'
    )
    reason = authorizer.allowed_by(
        user=REBOOTD,
        groups=(),
        verb="get",
        api_group="",
        resource="nodes",
        subresource="",
        namespace="",
        name="n1",
    )
    assert reason == (
        'RBAC: allowed by ClusterRoleBinding "rebootd" of ClusterRole "rebootd" to '
        'ServiceAccount "rebootd/kube-system"'
    )


def test_effective_groups_add_what_authenticators_add() -> None:
    assert effective_groups(user=REBOOTD, groups=()) == (
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    )
    assert effective_groups(user="alice", groups=("dev",)) == ("dev", "system:authenticated")
    assert effective_groups(user="system:anonymous", groups=("system:unauthenticated",)) == (
        "system:unauthenticated",
    )


def test_non_rbac_documents_and_lists_are_handled() -> None:
    docs: list[dict[str, Any] | None] = [
        None,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        {"apiVersion": "example.com/v1", "kind": "Role", "metadata": {"name": "fake"}, "rules": []},
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "r"},
                    "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "b"},
                    "roleRef": {"kind": "ClusterRole", "name": "r"},
                    "subjects": [{"kind": "User", "name": "u"}],
                },
            ],
        },
    ]
    authz = Authorizer.from_documents(docs)
    assert _ask(authz, "u", "list", "nodes")
    assert not _ask(authz, "u", "get", "nodes", name="n")


def test_later_document_replaces_earlier_one() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
    }
    replacement = {**role, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "User", "name": "u"}],
    }
    authz = Authorizer.from_documents([role, binding, replacement])
    assert not _ask(authz, "u", "list", "nodes")
    assert _ask(authz, "u", "list", "pods")


def test_document_without_name_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"ClusterRole without metadata\.name"):
        Authorizer.from_documents([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            {
                "verb": "get",
                "api_group": "",
                "resource": "pods",
                "subresource": "",
                "namespace": "default",
                "name": "x",
            },
            'pods "x" is forbidden: User "system:serviceaccount:kube-system:rebootd" cannot get resource '
            '"pods" in API group "" in the namespace "default"',
        ),
        (
            {
                "verb": "list",
                "api_group": "",
                "resource": "pods",
                "subresource": "",
                "namespace": "default",
                "name": "",
            },
            'pods is forbidden: User "system:serviceaccount:kube-system:rebootd" cannot list resource '
            '"pods" in API group "" in the namespace "default"',
        ),
        (
            {
                "verb": "delete",
                "api_group": "",
                "resource": "nodes",
                "subresource": "",
                "namespace": "",
                "name": "n1",
            },
            'nodes "n1" is forbidden: User "system:serviceaccount:kube-system:rebootd" cannot delete '
            'resource "nodes" in API group "" at the cluster scope',
        ),
        (
            {
                "verb": "create",
                "api_group": "",
                "resource": "pods",
                "subresource": "eviction",
                "namespace": "default",
                "name": "web-1",
            },
            'pods "web-1" is forbidden: User "system:serviceaccount:kube-system:rebootd" cannot create '
            'resource "pods/eviction" in API group "" in the namespace "default"',
        ),
        (
            {
                "verb": "update",
                "api_group": "coordination.k8s.io",
                "resource": "leases",
                "subresource": "",
                "namespace": "kube-system",
                "name": "rebootd",
            },
            'leases.coordination.k8s.io "rebootd" is forbidden: User '
            '"system:serviceaccount:kube-system:rebootd" cannot update resource "leases" in API group '
            '"coordination.k8s.io" in the namespace "kube-system"',
        ),
        (
            {
                "verb": "list",
                "api_group": "policy",
                "resource": "poddisruptionbudgets",
                "subresource": "",
                "namespace": "",
                "name": "",
            },
            'poddisruptionbudgets.policy is forbidden: User "system:serviceaccount:kube-system:rebootd" '
            'cannot list resource "poddisruptionbudgets" in API group "policy" at the cluster scope',
        ),
    ],
)
def test_deny_message_matches_kube_apiserver(call: dict[str, str], message: str) -> None:
    assert deny_message(user=REBOOTD, **call) == message


def test_deny_message_sanitizes_html_and_quotes_like_go() -> None:
    message = deny_message(
        user='<evil> & "co"',
        verb="get",
        api_group="",
        resource="pods",
        subresource="",
        namespace="ns",
        name='a"b',
    )
    assert message == (
        'pods "a\\"b" is forbidden: User "&lt;evil&gt; &amp; \\"co\\"" cannot get resource "pods" '
        'in API group "" in the namespace "ns"'
    )


def test_aggregation_is_transitive_and_empty_when_nothing_matches() -> None:
    def cluster_role(name: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            **extra,
        }

    def bind(role: str, user: str) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{role}-{user}"},
            "roleRef": {"kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": user}],
        }

    def selecting(label: str) -> dict[str, Any]:
        return {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}}

    authz = Authorizer.from_documents(
        [
            # Listed before the roles it depends on: the result must not depend on order.
            cluster_role("top", {}, **selecting("to-top")),
            cluster_role("middle", {"to-top": "true"}, **selecting("to-middle")),
            cluster_role(
                "leaf",
                {"to-middle": "true"},
                rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
            ),
            cluster_role("lonely", {}, **selecting("to-nobody")),
            bind("top", "u"),
            bind("lonely", "v"),
        ]
    )
    assert _ask(authz, "u", "get", "configmaps", ns="a", name="c")
    assert not _ask(authz, "u", "list", "configmaps", ns="a")
    assert not _ask(authz, "v", "get", "configmaps", ns="a", name="c")
