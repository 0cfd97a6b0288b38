"""Least privilege the other way round: what rebootd's own RBAC (deploy/kustomize/base, built by the
real `kubectl kustomize`) must NOT allow its service account, asked of the RBAC evaluator as
SubjectAccessReviews (the same bodies a real kube-apiserver answers), every answer required to be
no; and a sweep of every verb on every resource, namespace and name that requires each yes to be
one of the permissions rebootd needs, so a wildcard or a dropped `resourceNames` is caught.

The one yes the sweep tolerates beyond rebootd's own Lease: `create` of a Lease of any name in
the daemon's namespace. RBAC cannot restrict `create` by resourceNames (the name is in the body,
not the URL, when the request is authorized), so role.yaml keeps `create` in a rule of its own
without names, and every other verb on Leases is restricted to the name `rebootd`: a Lease
created under another name can never be read, changed or deleted through this Role. Beside it,
`get` (read only) of the kubelets' heartbeat Leases in kube-node-lease, named after their nodes:
forging one (update) stays refused.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from rebootd.emulator.rbac import Authorizer, access_review, review
from tests.fixtures.tools import require_binary
from tests.integration.rbac_runs import NAMESPACE, SA_GROUPS, SA_USER, Doc, build_base

KUBECTL_HINT = "kubectl v1.32 from the Kubernetes apt repository"
LEASE = "rebootd"

# (verb, group, resource/subresource, namespace or None for any, name or None for any):
# exactly what rebootd calls (src/rebootd/kube/), and the one tolerated Lease create.
NEEDED: list[tuple[str, str, str, str | None, str | None]] = [
    *[(verb, "", "nodes", None, None) for verb in ("get", "list", "watch", "patch")],
    *[(verb, "", "pods", None, None) for verb in ("list", "watch")],
    ("create", "", "pods/eviction", None, None),
    *[(verb, "policy", "poddisruptionbudgets", None, None) for verb in ("list", "watch")],
    ("get", "apps", "daemonsets", None, None),
    ("create", "", "events", None, None),
    *[
        (verb, "coordination.k8s.io", "leases", NAMESPACE, LEASE)
        for verb in ("get", "list", "watch", "update")
    ],
    ("create", "coordination.k8s.io", "leases", NAMESPACE, None),  # see the module docstring
    # the kubelets' heartbeat Leases (named after their nodes), read before a reclaim
    ("get", "coordination.k8s.io", "leases", "kube-node-lease", None),
]


def q(**attributes: str) -> dict[str, Any]:
    """A question: verb, group, resource[/subresource], namespace, name."""
    return attributes


# What rebootd must never be able to do (the question, why it matters).
MUST_NOT: list[tuple[dict[str, Any], str]] = [
    (
        q(verb="delete", resource="pods", namespace="default", name="web-1"),
        "delete a pod, bypassing its PDB",
    ),
    (q(verb="deletecollection", resource="pods", namespace="default"), "delete every pod"),
    (q(verb="create", resource="pods", namespace=NAMESPACE), "run a pod as any service account"),
    (q(verb="update", resource="pods", namespace="default", name="web-1"), "rewrite a pod"),
    (q(verb="patch", resource="pods", namespace="default", name="web-1"), "patch a pod"),
    (q(verb="create", resource="pods", subresource="exec", namespace="default", name="web-1"), "exec"),
    (q(verb="get", resource="pods", subresource="log", namespace="default", name="web-1"), "read logs"),
    (q(verb="update", resource="nodes", name="n1"), "replace a Node wholesale (patch is what it needs)"),
    (q(verb="delete", resource="nodes", name="n1"), "delete a Node"),
    (q(verb="create", resource="nodes"), "register a Node"),
    (q(verb="patch", resource="nodes", subresource="status", name="n1"), "forge a Node's status"),
    (q(verb="get", resource="nodes", subresource="proxy", name="n1"), "reach the kubelet API"),
    (
        q(
            verb="update",
            group="coordination.k8s.io",
            resource="leases",
            namespace=NAMESPACE,
            name="kube-scheduler",
        ),
        "take over another component's leader-election Lease",
    ),
    (
        q(verb="get", group="coordination.k8s.io", resource="leases", namespace=NAMESPACE, name="other"),
        "read any other Lease",
    ),
    (
        q(verb="list", group="coordination.k8s.io", resource="leases", namespace=NAMESPACE),
        "list every Lease of its namespace (only its own, by field selector)",
    ),
    (
        q(verb="delete", group="coordination.k8s.io", resource="leases", namespace=NAMESPACE, name=LEASE),
        "delete its own Lease (a halt lives there)",
    ),
    (
        q(verb="patch", group="coordination.k8s.io", resource="leases", namespace=NAMESPACE, name=LEASE),
        "patch its own Lease (every change is an update with resourceVersion)",
    ),
    (
        q(
            verb="update",
            group="coordination.k8s.io",
            resource="leases",
            namespace="kube-node-lease",
            name="n1",
        ),
        "forge a kubelet heartbeat",
    ),
    (
        q(verb="create", group="coordination.k8s.io", resource="leases", namespace="default"),
        "create a Lease in another namespace",
    ),
    (
        q(verb="update", group="coordination.k8s.io", resource="leases", namespace="default", name=LEASE),
        "write a Lease of the same name in another namespace",
    ),
    (q(verb="get", resource="secrets", namespace=NAMESPACE, name="token"), "read a Secret"),
    (q(verb="list", resource="secrets"), "list Secrets"),
    (q(verb="watch", resource="secrets", namespace="default"), "watch Secrets"),
    (q(verb="get", resource="configmaps", namespace=NAMESPACE, name="rebootd-config"), "read a ConfigMap"),
    (q(verb="list", resource="configmaps"), "list ConfigMaps"),
    (
        q(verb="create", resource="serviceaccounts", subresource="token", namespace=NAMESPACE, name="x"),
        "mint",
    ),
    (
        q(verb="update", group="apps", resource="daemonsets", namespace=NAMESPACE, name="rebootd"),
        "kured's lock",
    ),
    (q(verb="list", group="apps", resource="daemonsets"), "list DaemonSets (it gets one by name)"),
    (
        q(verb="delete", group="apps", resource="deployments", namespace="default", name="web"),
        "delete a workload",
    ),
    (q(verb="patch", group="apps", resource="statefulsets", namespace="default", name="db"), "scale"),
    (
        q(verb="delete", group="policy", resource="poddisruptionbudgets", namespace="default", name="db"),
        "PDB",
    ),
    (
        q(verb="patch", group="policy", resource="poddisruptionbudgets", namespace="default", name="db"),
        "PDB",
    ),
    (q(verb="delete", resource="events", namespace="default", name="e"), "erase its trail"),
    (q(verb="update", resource="events", namespace="default", name="e"), "rewrite Events"),
    (q(verb="delete", resource="namespaces", name="default"), "delete a namespace"),
    (
        q(verb="escalate", group="rbac.authorization.k8s.io", resource="clusterroles", name="rebootd"),
        "escalate",
    ),
    (
        q(verb="bind", group="rbac.authorization.k8s.io", resource="clusterroles", name="cluster-admin"),
        "bind",
    ),
    (
        q(
            verb="update",
            group="rbac.authorization.k8s.io",
            resource="roles",
            namespace=NAMESPACE,
            name=LEASE,
        ),
        "",
    ),
    (q(verb="create", group="rbac.authorization.k8s.io", resource="clusterrolebindings"), "grant itself"),
    (q(verb="impersonate", resource="users", name="admin"), "impersonate a user"),
    (q(verb="impersonate", resource="groups", name="system:masters"), "impersonate a group"),
    (
        q(verb="impersonate", resource="serviceaccounts", namespace=NAMESPACE, name="x"),
        "impersonate an SA",
    ),
    (q(verb="create", group="certificates.k8s.io", resource="certificatesigningrequests"), "get a cert"),
    (
        q(verb="create", group="apiextensions.k8s.io", resource="customresourcedefinitions"),
        "extend the API",
    ),
    (q(verb="*", resource="pods", namespace="default", name="web-1"), "every verb on a pod"),
    (q(verb="*", resource="nodes", name="n1"), "every verb on a Node"),
]

VERBS = (
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
    "escalate", "bind", "impersonate", "approve", "use", "*",
)  # fmt: skip
RESOURCES: list[tuple[str, str]] = [
    ("", "pods"), ("", "pods/eviction"), ("", "pods/exec"), ("", "pods/log"), ("", "pods/status"),
    ("", "pods/binding"), ("", "pods/ephemeralcontainers"), ("", "nodes"), ("", "nodes/status"),
    ("", "nodes/proxy"), ("", "events"), ("", "secrets"), ("", "configmaps"), ("", "services"),
    ("", "endpoints"), ("", "namespaces"), ("", "serviceaccounts"), ("", "serviceaccounts/token"),
    ("", "persistentvolumes"), ("", "persistentvolumeclaims"), ("", "users"), ("", "groups"),
    ("apps", "daemonsets"), ("apps", "deployments"), ("apps", "deployments/scale"), ("apps", "statefulsets"),
    ("apps", "replicasets"), ("policy", "poddisruptionbudgets"), ("policy", "poddisruptionbudgets/status"),
    ("coordination.k8s.io", "leases"), ("events.k8s.io", "events"), ("batch", "jobs"),
    ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "rolebindings"), ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("example.com", "widgets"),
]  # fmt: skip
# The same resources in a group of their own (a rule's apiGroups widened to "*" shows there), and
# an unknown resource in every group (a rule's resources widened to "*" shows there).
RESOURCES += sorted({("example.com", resource) for _, resource in RESOURCES})
RESOURCES += sorted({(group, "widgets") for group, _ in RESOURCES})
NAMESPACES = ("", NAMESPACE, "default", "kube-node-lease")
NAMES = ("", LEASE, "other")


def ask(authorizer: Authorizer, **attributes: Any) -> bool:
    """The evaluator's answer to a SubjectAccessReview for rebootd's service account."""
    resource, _, subresource = str(attributes.pop("resource")).partition("/")
    attributes.setdefault("subresource", subresource)
    body = access_review(user=SA_USER, groups=SA_GROUPS, resource=resource, **attributes)
    return bool(review(authorizer, body)["status"]["allowed"])


def needed(verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
    return any(
        (verb, group, resource) == (v, g, r) and ns in (None, namespace) and n in (None, name)
        for v, g, r, ns, n in NEEDED
    )


def overreach(docs: Sequence[Doc]) -> list[str]:
    """Every request the RBAC allows rebootd that is not one it needs."""
    authorizer = Authorizer.from_documents(docs)
    found = []
    for (group, resource), verb, namespace, name in itertools.product(RESOURCES, VERBS, NAMESPACES, NAMES):
        allowed = ask(authorizer, verb=verb, group=group, resource=resource, namespace=namespace, name=name)
        if allowed and not needed(verb, group, resource, namespace, name):
            found.append(f"{verb} {group or 'core'}/{resource} ns={namespace!r} name={name!r}")
    found.extend(
        f"{why or 'must not'}: {question}" for question, why in MUST_NOT if ask(authorizer, **dict(question))
    )
    return found


@pytest.fixture(scope="module")
def base_docs() -> tuple[Doc, ...]:
    return build_base(require_binary("kubectl", install_hint=KUBECTL_HINT))


@pytest.mark.parametrize(
    ("question", "why"),
    MUST_NOT,
    ids=[f"{q['verb']}-{q['resource']}-{i}" for i, (q, _) in enumerate(MUST_NOT)],
)
def test_the_base_rbac_answers_no_to_what_rebootd_must_not_do(
    base_docs: tuple[Doc, ...], question: dict[str, Any], why: str
) -> None:
    assert not ask(Authorizer.from_documents(base_docs), **dict(question)), why


def test_the_base_rbac_answers_yes_to_each_request_rebootd_makes(base_docs: tuple[Doc, ...]) -> None:
    authorizer = Authorizer.from_documents(base_docs)
    for verb, group, resource, namespace, name in NEEDED:
        asked = {"namespace": namespace or "default", "name": name or ""}
        if resource == "nodes":
            asked["namespace"] = ""
        assert ask(authorizer, verb=verb, group=group, resource=resource, **asked), (verb, resource, asked)


def test_every_verb_on_every_resource_namespace_and_name_is_refused_beyond_what_rebootd_needs(
    base_docs: tuple[Doc, ...],
) -> None:
    assert overreach(base_docs) == []


def _rules(docs: tuple[Doc, ...]) -> list[tuple[int, int]]:
    return [
        (d, r)
        for d, doc in enumerate(docs)
        if doc.get("kind") in ("Role", "ClusterRole")
        for r in range(len(doc.get("rules") or ()))
    ]


def _mutated(
    docs: tuple[Doc, ...], where: tuple[int, int], change: Callable[[dict[str, Any]], None]
) -> list[Doc]:
    out = [copy.deepcopy(doc) for doc in docs]
    change(out[where[0]]["rules"][where[1]])
    return out


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "verbs *": lambda rule: rule.update(verbs=["*"]),
    "resources *": lambda rule: rule.update(resources=["*"]),
    "apiGroups *": lambda rule: rule.update(apiGroups=["*"]),
    "one more verb": lambda rule: rule.update(verbs=[*rule["verbs"], "delete"]),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_wildcard_or_an_extra_verb_in_any_rule_is_caught(base_docs: tuple[Doc, ...], mutation: str) -> None:
    for where in _rules(base_docs):
        docs = _mutated(base_docs, where, MUTATIONS[mutation])
        rule = docs[where[0]]["rules"][where[1]]
        assert overreach(docs), f"{mutation} in {docs[where[0]]['kind']} rule {rule} went unnoticed"


def test_dropping_the_resource_names_of_the_lease_rule_is_caught(base_docs: tuple[Doc, ...]) -> None:
    named = [
        where for where in _rules(base_docs) if base_docs[where[0]]["rules"][where[1]].get("resourceNames")
    ]
    assert named, "the Lease rule lost its resourceNames"
    for where in named:
        found = overreach(_mutated(base_docs, where, lambda rule: rule.pop("resourceNames")))
        assert any("leases" in line and "'other'" in line for line in found), found


def test_a_subject_access_review_is_answered_in_the_apiserver_shape(base_docs: tuple[Doc, ...]) -> None:
    body = access_review(
        user=SA_USER,
        groups=SA_GROUPS,
        verb="create",
        resource="pods",
        subresource="eviction",
        namespace="default",
        name="x",
    )
    answer = review(Authorizer.from_documents(base_docs), body)
    assert answer["kind"] == "SubjectAccessReview"
    assert answer["spec"]["resourceAttributes"] == {
        "verb": "create",
        "group": "",
        "resource": "pods",
        "subresource": "eviction",
        "namespace": "default",
        "name": "x",
    }
    assert answer["status"]["allowed"] is True
    assert 'ClusterRoleBinding "rebootd" of ClusterRole "rebootd"' in answer["status"]["reason"]
    denied = review(
        Authorizer.from_documents(base_docs), {**body, "spec": {**body["spec"], "user": "someone"}}
    )
    assert denied["status"] == {"allowed": False}
