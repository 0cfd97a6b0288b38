"""Kubernetes RBAC evaluation for the emulator: does this user get to do this?

Rule: the decision is the one kube-apiserver 1.32 makes for a resource request with the RBAC
authorizer, transcribed from k8s.io/kubernetes `plugin/pkg/auth/authorizer/rbac/rbac.go`
(RuleAllows), `pkg/apis/rbac/v1/evaluation_helpers.go` (VerbMatches, APIGroupMatches,
ResourceMatches, ResourceNameMatches) and `pkg/registry/rbac/validation/rule.go` (which bindings
apply to whom). The Forbidden text is `responsewriters.forbiddenMessage` wrapped by
`apierrors.NewForbidden`. Pure: it reads the policy documents once and keeps no other state.

What it models beyond RBAC itself, because a real cluster does it too:
- the groups authenticators add: `system:authenticated` for every user but `system:anonymous`,
  and `system:serviceaccounts` / `system:serviceaccounts:NS` for a service account's username;
- the `system:masters` group, which kube-apiserver allows before RBAC is asked;
- ClusterRole aggregation (`aggregationRule`): an aggregated role's rules are the union of the
  rules of the ClusterRoles its selectors match (its own `rules` are overwritten, as the
  clusterrole-aggregation controller does).
What it does not model: nonResourceURLs (rebootd makes no non-resource requests; such rules are
read and ignored), the Node and Webhook authorizers, and the default bootstrap roles (only the
documents given exist).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rebootd.selectors import LabelSelector, go_quote, label_selector_from_object

__all__ = [
    "Authorizer",
    "Binding",
    "PolicyRule",
    "Subject",
    "access_review",
    "deny_message",
    "effective_groups",
    "review",
    "service_account_username",
]

_RBAC_GROUP = "rbac.authorization.k8s.io"
_SA_PREFIX = "system:serviceaccount:"
_PRIVILEGED_GROUP = "system:masters"
_ANONYMOUS_USER = "system:anonymous"
_UNAUTHENTICATED_GROUP = "system:unauthenticated"
_AUTHENTICATED_GROUP = "system:authenticated"


def service_account_username(*, namespace: str, name: str) -> str:
    """The username a service account's token authenticates as."""
    return f"{_SA_PREFIX}{namespace}:{name}"


def effective_groups(*, user: str, groups: Sequence[str]) -> tuple[str, ...]:
    """`groups` plus what kube-apiserver's authenticators add for this user."""
    result = list(groups)

    def add(group: str) -> None:
        if group not in result:
            result.append(group)

    if user.startswith(_SA_PREFIX):
        namespace, _, name = user[len(_SA_PREFIX) :].partition(":")
        if namespace and name:
            add("system:serviceaccounts")
            add(f"system:serviceaccounts:{namespace}")
    if user != _ANONYMOUS_USER and _UNAUTHENTICATED_GROUP not in result:
        add(_AUTHENTICATED_GROUP)
    return tuple(result)


@dataclass(frozen=True)
class PolicyRule:
    """rbac/v1 PolicyRule."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PolicyRule:
        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(item) for item in (obj.get(key) or ()))

        return cls(
            verbs=strings("verbs"),
            api_groups=strings("apiGroups"),
            resources=strings("resources"),
            resource_names=strings("resourceNames"),
            non_resource_urls=strings("nonResourceURLs"),
        )

    def allows(self, *, verb: str, api_group: str, resource: str, subresource: str, name: str) -> bool:
        """RuleAllows for a resource request."""
        combined = f"{resource}/{subresource}" if subresource else resource
        return (
            self._verb_matches(verb)
            and self._api_group_matches(api_group)
            and self._resource_matches(combined, subresource)
            and self._resource_name_matches(name)
        )

    def _verb_matches(self, verb: str) -> bool:
        return any(rule_verb in ("*", verb) for rule_verb in self.verbs)

    def _api_group_matches(self, group: str) -> bool:
        return any(rule_group in ("*", group) for rule_group in self.api_groups)

    def _resource_matches(self, combined: str, subresource: str) -> bool:
        for rule_resource in self.resources:
            if rule_resource in ("*", combined):
                return True
            # `*/subresource` matches that subresource of every resource.
            if subresource and rule_resource == f"*/{subresource}":
                return True
        return False

    def _resource_name_matches(self, name: str) -> bool:
        # A rule with resourceNames never matches an empty name: no list, watch without a name,
        # create or deletecollection.
        return not self.resource_names or name in self.resource_names


@dataclass(frozen=True)
class Subject:
    """rbac/v1 Subject: kind User, Group or ServiceAccount."""

    kind: str
    name: str
    namespace: str = ""

    def applies_to(self, *, user: str, groups: Sequence[str], namespace: str) -> bool:
        """appliesToUser: `namespace` is the binding's namespace ("" for a ClusterRoleBinding)."""
        if self.kind == "User":
            return user == self.name
        if self.kind == "Group":
            return self.name in groups
        if self.kind == "ServiceAccount":
            sa_namespace = self.namespace or namespace
            if not sa_namespace:
                return False
            return user == service_account_username(namespace=sa_namespace, name=self.name)
        return False

    def describe(self, binding_namespace: str) -> str:
        if self.kind == "ServiceAccount":
            return f'{self.kind} "{self.name}/{self.namespace or binding_namespace}"'
        return f'{self.kind} "{self.name}"'


@dataclass(frozen=True)
class Binding:
    """A RoleBinding or ClusterRoleBinding: who gets which role's rules, and where."""

    kind: str  # RoleBinding | ClusterRoleBinding
    name: str
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str
    role_name: str
    subjects: tuple[Subject, ...]

    def describe(self, subject: Subject) -> str:
        shown = f"{self.name}/{self.namespace}" if self.kind == "RoleBinding" else self.name
        return (
            f'{self.kind} "{shown}" of {self.role_kind} "{self.role_name}" to '
            f"{subject.describe(self.namespace)}"
        )


@dataclass(frozen=True)
class _ClusterRole:
    labels: Mapping[str, str]
    rules: tuple[PolicyRule, ...]
    aggregation: tuple[LabelSelector, ...] | None


def _metadata(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        raise ValueError(f"{doc.get('kind')} without metadata.name")
    return metadata


def _rules(doc: Mapping[str, Any]) -> tuple[PolicyRule, ...]:
    return tuple(PolicyRule.from_object(rule) for rule in (doc.get("rules") or ()))


def _binding(doc: Mapping[str, Any], *, namespace: str) -> Binding:
    metadata = _metadata(doc)
    role_ref = doc.get("roleRef") or {}
    subjects = tuple(
        Subject(
            kind=str(subject.get("kind", "")),
            name=str(subject.get("name", "")),
            namespace=str(subject.get("namespace") or ""),
        )
        for subject in (doc.get("subjects") or ())
    )
    return Binding(
        kind=str(doc["kind"]),
        name=str(metadata["name"]),
        namespace=namespace,
        role_kind=str(role_ref.get("kind", "")),
        role_name=str(role_ref.get("name", "")),
        subjects=subjects,
    )


def _aggregate(cluster_roles: dict[str, _ClusterRole]) -> dict[str, tuple[PolicyRule, ...]]:
    """Effective rules per ClusterRole, aggregation resolved to a fixed point (the controller
    reaches the same state by re-aggregating whenever a ClusterRole changes)."""
    effective = {name: role.rules for name, role in cluster_roles.items()}
    aggregated = {name: role for name, role in cluster_roles.items() if role.aggregation is not None}
    for _ in range(len(aggregated) + 1):
        changed = False
        for name, role in aggregated.items():
            assert role.aggregation is not None
            rules: list[PolicyRule] = []
            for other_name in sorted(cluster_roles):
                if other_name == name:
                    continue
                other = cluster_roles[other_name]
                if any(selector.matches(other.labels) for selector in role.aggregation):
                    rules.extend(rule for rule in effective[other_name] if rule not in rules)
            if tuple(rules) != effective[name]:
                effective[name] = tuple(rules)
                changed = True
        if not changed:
            break
    return effective


class Authorizer:
    """RBAC over a fixed set of Role, ClusterRole, RoleBinding and ClusterRoleBinding objects."""

    def __init__(
        self,
        *,
        roles: Mapping[tuple[str, str], tuple[PolicyRule, ...]],
        cluster_roles: Mapping[str, tuple[PolicyRule, ...]],
        role_bindings: Sequence[Binding],
        cluster_role_bindings: Sequence[Binding],
    ) -> None:
        self._roles = dict(roles)
        self._cluster_roles = dict(cluster_roles)
        self._role_bindings = tuple(role_bindings)
        self._cluster_role_bindings = tuple(cluster_role_bindings)

    @classmethod
    def from_documents(
        cls, docs: Iterable[Mapping[str, Any] | None], *, default_namespace: str = "default"
    ) -> Authorizer:
        """Build from decoded manifests (e.g. `kubectl kustomize` output through
        yaml.safe_load_all). Other kinds and empty documents are ignored; `kind: List` items are
        read; a namespaced object without a namespace lands in `default_namespace`, as
        `kubectl apply` would put it; a later object with the same name replaces an earlier one."""
        roles: dict[tuple[str, str], tuple[PolicyRule, ...]] = {}
        cluster_roles: dict[str, _ClusterRole] = {}
        role_bindings: dict[tuple[str, str], Binding] = {}
        cluster_role_bindings: dict[str, Binding] = {}

        def visit(doc: Mapping[str, Any] | None) -> None:
            if not doc:
                return
            kind = doc.get("kind")
            if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
                for item in doc["items"]:
                    visit(item)
                return
            if not str(doc.get("apiVersion", "")).startswith(f"{_RBAC_GROUP}/"):
                return
            if kind not in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
                return
            metadata = _metadata(doc)
            name = str(metadata["name"])
            namespace = str(metadata.get("namespace") or default_namespace)
            if kind == "Role":
                roles[(namespace, name)] = _rules(doc)
            elif kind == "ClusterRole":
                aggregation_rule = doc.get("aggregationRule")
                aggregation = None
                if aggregation_rule is not None:
                    aggregation = tuple(
                        label_selector_from_object(selector)
                        for selector in (aggregation_rule.get("clusterRoleSelectors") or ())
                    )
                cluster_roles[name] = _ClusterRole(
                    labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
                    rules=_rules(doc),
                    aggregation=aggregation,
                )
            elif kind == "RoleBinding":
                role_bindings[(namespace, name)] = _binding(doc, namespace=namespace)
            else:
                cluster_role_bindings[name] = _binding(doc, namespace="")

        for doc in docs:
            visit(doc)
        return cls(
            roles=roles,
            cluster_roles=_aggregate(cluster_roles),
            role_bindings=[role_bindings[key] for key in sorted(role_bindings)],
            cluster_role_bindings=[cluster_role_bindings[key] for key in sorted(cluster_role_bindings)],
        )

    def _role_rules(self, binding: Binding) -> tuple[PolicyRule, ...]:
        """GetRoleReferenceRules: a missing role (or a Role referenced cluster-wide) grants nothing."""
        if binding.role_kind == "ClusterRole":
            return self._cluster_roles.get(binding.role_name, ())
        if binding.role_kind == "Role" and binding.namespace:
            return self._roles.get((binding.namespace, binding.role_name), ())
        return ()

    def allowed_by(
        self,
        *,
        user: str,
        groups: Sequence[str],
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
    ) -> str | None:
        """The reason the request is allowed (as kube-apiserver words it), or None if denied."""
        all_groups = effective_groups(user=user, groups=groups)
        if _PRIVILEGED_GROUP in all_groups:
            return f"allowed by the {_PRIVILEGED_GROUP} group"
        candidates: list[Binding] = list(self._cluster_role_bindings)
        if namespace:
            # RoleBindings only ever grant inside their own namespace.
            candidates.extend(b for b in self._role_bindings if b.namespace == namespace)
        for binding in candidates:
            subject = next(
                (
                    s
                    for s in binding.subjects
                    if s.applies_to(user=user, groups=all_groups, namespace=binding.namespace)
                ),
                None,
            )
            if subject is None:
                continue
            for rule in self._role_rules(binding):
                if rule.allows(
                    verb=verb, api_group=api_group, resource=resource, subresource=subresource, name=name
                ):
                    return f"RBAC: allowed by {binding.describe(subject)}"
        return None

    def authorize(
        self,
        *,
        user: str,
        groups: Sequence[str],
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
    ) -> bool:
        """Whether a resource request is allowed. `namespace` is "" for cluster-scoped resources
        and for cluster-wide lists; `name` is "" for list, watch and create (unless the request
        names the object, e.g. a watch with fieldSelector metadata.name=X or an eviction)."""
        return (
            self.allowed_by(
                user=user,
                groups=groups,
                verb=verb,
                api_group=api_group,
                resource=resource,
                subresource=subresource,
                namespace=namespace,
                name=name,
            )
            is not None
        )


def access_review(
    *,
    user: str,
    groups: Sequence[str] = (),
    verb: str,
    group: str = "",
    resource: str,
    subresource: str = "",
    namespace: str = "",
    name: str = "",
) -> dict[str, Any]:
    """An authorization.k8s.io/v1 SubjectAccessReview asking whether `user` may make a resource
    request: the body a real kube-apiserver answers at
    `/apis/authorization.k8s.io/v1/subjectaccessreviews`, and `Authorizer.review` answers here."""
    attributes = {"verb": verb, "group": group, "resource": resource}
    for key, value in (("subresource", subresource), ("namespace", namespace), ("name", name)):
        if value:
            attributes[key] = value
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": list(groups), "resourceAttributes": attributes},
    }


def review(authorizer: Authorizer, request: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a SubjectAccessReview as kube-apiserver does: the request with `status.allowed`
    (and the reason when allowed). A non-resource request is not modelled: never allowed here."""
    spec = request.get("spec") or {}
    attributes = spec.get("resourceAttributes")
    status: dict[str, Any] = {"allowed": False}
    if attributes is not None:
        reason = authorizer.allowed_by(
            user=str(spec.get("user", "")),
            groups=[str(g) for g in spec.get("groups") or ()],
            verb=str(attributes.get("verb", "")),
            api_group=str(attributes.get("group", "")),
            resource=str(attributes.get("resource", "")),
            subresource=str(attributes.get("subresource", "")),
            namespace=str(attributes.get("namespace", "")),
            name=str(attributes.get("name", "")),
        )
        if reason is not None:
            status = {"allowed": True, "reason": reason}
    return {**request, "status": status}


def _sanitize(text: str) -> str:
    # responsewriters' sanitizer: avoid messages that look like HTML.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def deny_message(
    *, user: str, verb: str, api_group: str, resource: str, subresource: str, namespace: str, name: str
) -> str:
    """The `message` of kube-apiserver's 403 Forbidden Status for a denied resource request, e.g.
    `pods "x" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace
    "default"` (or `... at the cluster scope` when `namespace` is "")."""
    shown_resource = f"{resource}/{subresource}" if subresource else resource
    scope = f"in the namespace {go_quote(namespace)}" if namespace else "at the cluster scope"
    reason = _sanitize(
        f"User {go_quote(user)} cannot {verb} resource {go_quote(shown_resource)} "
        f"in API group {go_quote(api_group)} {scope}"
    )
    qualified = f"{resource}.{api_group}" if api_group else resource
    if not qualified:
        return f"forbidden: {reason}"
    if not name:
        return f"{qualified} is forbidden: {reason}"
    return f"{qualified} {go_quote(name)} is forbidden: {reason}"
