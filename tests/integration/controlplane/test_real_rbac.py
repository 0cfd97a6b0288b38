"""Least privilege under the real RBAC authorizer: rebootd's own RBAC from deploy/kustomize/base
(built by the real `kubectl kustomize`) applied to the real kube-apiserver, and the questions of
tests/integration/test_rbac_must_not.py asked of it as SubjectAccessReviews (by the admin, about
rebootd's ServiceAccount with the groups a real token of it carries). Every "must not" is no,
every request rebootd makes is yes, and the whole sweep (every verb on every resource, namespace
and name) allows nothing beyond what rebootd needs. The sweep's answers are also compared one by
one with the emulator's RBAC evaluator on the same documents: the emulator's authorizer, which the
rest of the suite trusts, answers as the real one does.

The real server also has its default roles (system:basic-user, system:discovery, ...), bound to
every authenticated user: the sweep shows they grant nothing among the swept resources.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from rebootd.controlplane import ControlPlane
from rebootd.emulator.rbac import Authorizer, access_review, review
from tests.fixtures.controlplane import run_kubectl
from tests.fixtures.tools import require_binary
from tests.integration.rbac_runs import SA_GROUPS, SA_USER, Doc, build_base
from tests.integration.test_rbac_must_not import MUST_NOT, NAMES, NAMESPACES, NEEDED, RESOURCES, VERBS, needed

RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
GROUPS = (*SA_GROUPS, "system:authenticated")  # what a real ServiceAccount token carries
REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
PARALLEL = 16

Question = tuple[str, str, str, str, str]  # verb, group, resource[/subresource], namespace, name


@pytest.fixture(scope="module")
def base_rbac(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Doc]]:
    """The base's RBAC objects, applied for real; deleted on the way out."""
    docs = [
        doc
        for doc in build_base(require_binary("kubectl", install_hint="kubectl"))
        if doc["kind"] in RBAC_KINDS
    ]
    work = tmp_path_factory.mktemp("rbac")
    text = "\n---\n".join(yaml.safe_dump(doc) for doc in docs)
    applied = run_kubectl(control_plane, work, "apply", "-f", "-", stdin=text)
    assert applied.returncode == 0, applied.stderr
    yield docs
    run_kubectl(control_plane, work, "delete", "-f", "-", "--ignore-not-found", "--wait=false", stdin=text)


def review_body(question: Question) -> dict[str, Any]:
    verb, group, path, namespace, name = question
    resource, _, subresource = path.partition("/")
    return access_review(
        user=SA_USER,
        groups=GROUPS,
        verb=verb,
        group=group,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


async def ask_all(plane: ControlPlane, questions: Sequence[Question]) -> list[bool]:
    """The real authorizer's answers, asked as the admin over a few kept-alive connections."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    headers = {"Authorization": f"Bearer {plane.admin.token}", "Content-Type": "application/json"}
    answers: list[bool | None] = [None] * len(questions)
    queue = iter(enumerate(questions))

    async def worker(session: aiohttp.ClientSession) -> None:
        for index, question in queue:
            async with session.post(plane.url + REVIEWS, data=json.dumps(review_body(question))) as response:
                assert response.status == 201, await response.text()
                answers[index] = bool((await response.json())["status"].get("allowed", False))

    connector = aiohttp.TCPConnector(ssl=context, limit=PARALLEL)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(PARALLEL)))
    assert all(answer is not None for answer in answers)
    return [bool(answer) for answer in answers]


def must_not_questions() -> list[Question]:
    out = []
    for question, _ in MUST_NOT:
        resource = str(question["resource"])
        if question.get("subresource"):
            resource += f"/{question['subresource']}"
        out.append(
            (
                str(question["verb"]),
                str(question.get("group", "")),
                resource,
                str(question.get("namespace", "")),
                str(question.get("name", "")),
            )
        )
    return out


async def test_the_real_authorizer_answers_no_to_everything_rebootd_must_not_do(
    control_plane: ControlPlane, base_rbac: list[Doc]
) -> None:
    questions = must_not_questions()
    answers = await ask_all(control_plane, questions)
    allowed = [f"{why}: {q}" for q, (_, why), yes in zip(questions, MUST_NOT, answers, strict=True) if yes]
    assert len(questions) == len(MUST_NOT) > 40
    assert allowed == []


async def test_the_real_authorizer_answers_yes_to_each_request_rebootd_makes(
    control_plane: ControlPlane, base_rbac: list[Doc]
) -> None:
    questions: list[Question] = [
        (verb, group, resource, "" if resource == "nodes" else namespace or "default", name or "")
        for verb, group, resource, namespace, name in NEEDED
    ]
    answers = await ask_all(control_plane, questions)
    assert [q for q, yes in zip(questions, answers, strict=True) if not yes] == []


async def test_the_real_authorizer_allows_nothing_beyond_what_rebootd_needs_and_agrees_with_the_emulator(
    control_plane: ControlPlane, base_rbac: list[Doc]
) -> None:
    questions: list[Question] = [
        (verb, group, resource, namespace, name)
        for (group, resource), verb, namespace, name in itertools.product(RESOURCES, VERBS, NAMESPACES, NAMES)
    ]
    real = await ask_all(control_plane, questions)
    beyond = [q for q, yes in zip(questions, real, strict=True) if yes and not needed(*q)]
    assert beyond == []
    assert sum(real) >= len(NEEDED)  # the sweep reached the rules it should (each needed yes is in it)
    emulator = Authorizer.from_documents(base_rbac)
    differ = [
        (q, yes)
        for q, yes in zip(questions, real, strict=True)
        if yes != bool(review(emulator, review_body(q))["status"]["allowed"])
    ]
    assert differ == [], f"{len(differ)} of {len(questions)} answers differ (question, real answer)"


def test_a_real_service_account_token_is_refused_what_the_base_rbac_does_not_grant(
    control_plane: ControlPlane, base_rbac: list[Doc], tmp_path: Path
) -> None:
    token = control_plane.service_account_token(namespace="kube-system", name="rebootd")
    allowed = run_kubectl(control_plane, tmp_path, "get", "nodes", "-o", "name", user=token)
    assert allowed.returncode == 0, allowed.stderr
    for args in (("delete", "pod", "-n", "default", "web-1"), ("get", "secrets", "-n", "kube-system")):
        refused = run_kubectl(control_plane, tmp_path, *args, user=token)
        assert refused.returncode != 0
        assert "Forbidden" in refused.stderr, refused.stderr
        assert SA_USER in refused.stderr, refused.stderr
