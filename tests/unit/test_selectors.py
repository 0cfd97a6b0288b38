"""Label and field selectors behave exactly as kube-apiserver's apimachinery code does.

The error messages in the tables were checked against the real kubectl 1.32 (`kubectl set selector
--local`, which runs labels.Parse); `test_label_parser_agrees_with_real_kubectl` re-checks a fixed
and a seeded random corpus against kubectl on every run.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd.selectors import (
    FieldSelector,
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    label_selector_from_object,
    parse_field_selector,
    parse_label_selector,
    validate_label_key,
    validate_label_value,
)
from tests.fixtures.tools import require_binary

_NAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# --- label selector grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("  \t ", ""),
        ("a=b", "a=b"),
        ("a==b", "a=b"),
        ("a!=b", "a!=b"),
        ("a=", "a="),
        ("a in (x,y)", "a in (x,y)"),
        ("a in (y,x,x)", "a in (x,y)"),
        ("a in(b)", "a in (b)"),
        ("a notin (x)", "a notin (x)"),
        ("a", "a"),
        ("!a", "!a"),
        ("a>1", "a>1"),
        ("a<10", "a<10"),
        (" a = b , c ", "a=b,c"),
        ("b=1,a=2", "a=2,b=1"),
        ("a=1,a=1", "a=1"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("in in (in),notin=notin", "in in (in),notin=notin"),
        ("example.com/app=web", "example.com/app=web"),
        ("c,!b,a=b", "a=b,!b,c"),
    ],
)
def test_label_selector_parses_to_canonical_string(text: str, canonical: str) -> None:
    assert str(parse_label_selector(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a=!b", "unable to parse requirement: found '!', expected: identifier"),
        ("a>=1", "unable to parse requirement: found '=', expected: identifier"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("-a=b", f'unable to parse requirement: <nil>: Invalid value: "-a": name part {_NAME_RULE}'),
        ("/a", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
        (
            "a/",
            'unable to parse requirement: <nil>: Invalid value: "a/": name part must be non-empty; '
            f"name part {_NAME_RULE}",
        ),
        (
            "a" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": '
            "name part must be no more than 63 characters",
        ),
        (
            "Example.com/a",
            'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part a lowercase '
            "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
            "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        ("a=-b", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {_VALUE_RULE}'),
        (
            "a=" + "b" * 64,
            f'unable to parse requirement: values[0][a]: Invalid value: "{"b" * 64}": '
            "must be no more than 63 characters",
        ),
        (
            "a>b",
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, "
            "the value must be an integer",
        ),
        ("a>-1", f'unable to parse requirement: values[0][a]: Invalid value: "-1": {_VALUE_RULE}'),
        ("a=b\x00", "found NUL character in label selector"),
    ],
)
def test_label_selector_rejects_what_the_apiserver_rejects(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_label_selector(text)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a==b", {"a": "b", "x": "y"}, True),
        ("a!=b", {"a": "c"}, True),
        ("a!=b", {"a": "b"}, False),
        ("a!=b", {}, True),  # != matches objects without the key
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {}, False),
        ("a notin (x,y)", {"a": "y"}, False),
        ("a notin (x,y)", {"a": "z"}, True),
        ("a notin (x,y)", {}, True),  # notin matches objects without the key
        ("a in ()", {"a": ""}, True),
        ("a=", {"a": ""}, True),
        ("a=", {}, False),
        ("a", {"a": ""}, True),
        ("a", {}, False),
        ("!a", {}, True),
        ("!a", {"a": "x"}, False),
        ("a>5", {"a": "6"}, True),
        ("a>5", {"a": "5"}, False),
        ("a>5", {"a": "x"}, False),
        ("a>5", {}, False),
        ("a<5", {"a": "-7"}, True),
        ("a<5", {"a": "007"}, False),
        ("a>5", {"a": "99999999999999999999"}, False),  # not an int64: no match
        ("a=b,c", {"a": "b"}, False),
        ("a=b,c", {"a": "b", "c": "1"}, True),
    ],
)
def test_label_selector_matches_like_apimachinery(
    text: str, labels: Mapping[str, str], expected: bool
) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_selector_is_empty_and_nothing_is_not() -> None:
    assert parse_label_selector("").is_empty
    assert LabelSelector.everything().is_empty
    assert not parse_label_selector("a").is_empty
    nothing = LabelSelector.nothing()
    assert not nothing.is_empty
    assert not nothing.matches({})
    assert not nothing.matches({"a": "b"})


def test_nothing_selector_prints_a_string_that_refuses_to_parse() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(str(LabelSelector.nothing()))


def test_requires_exact_match_reports_single_required_value() -> None:
    selector = parse_label_selector("app=web,tier in (db),zone in (a,b),x!=y")
    assert selector.requires_exact_match("app") == "web"
    assert selector.requires_exact_match("tier") == "db"
    assert selector.requires_exact_match("zone") is None
    assert selector.requires_exact_match("x") is None
    assert selector.requires_exact_match("missing") is None


def test_from_labels_builds_an_equality_selector() -> None:
    selector = LabelSelector.from_labels({"b": "2", "a": "1"})
    assert str(selector) == "a=1,b=2"
    assert selector == parse_label_selector("a==1,b=2")


@pytest.mark.parametrize(
    ("key", "operator", "values", "message"),
    [
        ("a", Operator.IN, (), "for 'in', 'notin' operators, values set can't be empty"),
        ("a", Operator.EQUALS, ("x", "y"), "exact-match compatibility requires one single value"),
        ("a", Operator.EXISTS, ("x",), "values set must be empty for exists and does not exist"),
        ("a", Operator.GREATER_THAN, ("1", "2"), "exactly one value is required"),
        ("", Operator.EXISTS, (), 'key: Invalid value: "": name part must be non-empty'),
    ],
)
def test_requirement_constructor_validates_like_new_requirement(
    key: str, operator: Operator, values: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SelectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Requirement(key, operator, values)


def test_validate_label_key_and_value_helpers() -> None:
    validate_label_key("rebootd.io/drain")
    validate_label_value("")
    with pytest.raises(SelectorError, match="name part must be no more than 63 characters"):
        validate_label_key("x" * 64)
    with pytest.raises(SelectorError, match='value: Invalid value: "a b"'):
        validate_label_value("a b")


# --- metav1.LabelSelector objects -------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "labels", "expected"),
    [
        (None, {}, False),  # policy/v1: a null selector matches nothing
        (None, {"app": "web"}, False),
        ({}, {}, True),  # policy/v1: an empty selector matches everything
        ({"matchLabels": None, "matchExpressions": None}, {"x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "pod": "1"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"app": "b"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": ""}, False),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}],
            },
            {"app": "web", "tier": "be"},
            False,
        ),
    ],
)
def test_label_selector_object_has_policy_v1_semantics(
    obj: Mapping[str, Any] | None, labels: Mapping[str, str], expected: bool
) -> None:
    assert label_selector_from_object(obj).matches(labels) is expected


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "values set can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, '"Gt" is not a valid'),
        ({"matchLabels": {"bad key": "x"}}, 'key: Invalid value: "bad key"'),
        ({"matchLabels": {"a": "bad value"}}, r'values\[0\]\[a\]: Invalid value: "bad value"'),
    ],
)
def test_label_selector_object_rejects_invalid_selectors(obj: Mapping[str, Any], message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        label_selector_from_object(obj)


# --- properties ---------------------------------------------------------------------------------

_KEYS = st.sampled_from(["a", "b", "in", "notin", "x.io/app", "A_1", "k-8.s"])
_VALUES = st.sampled_from(["", "v", "w", "in", "1", "10", "007", "x_y"])
_INTS = st.integers(min_value=0, max_value=50).map(str)


@st.composite
def _raw_requirements(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    """A requirement as plain data: (key, operator word, values)."""
    key = draw(_KEYS)
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    if op in ("=", "==", "!="):
        return key, op, (draw(_VALUES),)
    if op in ("in", "notin"):
        # Sorted and unique: labels.Parse rejects some spellings of repeated empty values,
        # e.g. "(,,)" and "(b,,)" (checked with kubectl).
        return key, op, tuple(sorted(set(draw(st.lists(_VALUES, min_size=1, max_size=3)))))
    if op in ("gt", "lt"):
        return key, op, (draw(_INTS),)
    return key, op, ()


def _render(raw: tuple[str, str, tuple[str, ...]], spaces: str) -> str:
    """An independent printer for the selector grammar, with arbitrary spacing."""
    key, op, values = raw
    s = spaces
    if op == "exists":
        return f"{s}{key}{s}"
    if op == "!":
        return f"{s}!{s}{key}{s}"
    if op in ("in", "notin"):
        return f"{s}{key} {op}{s}({s}{f'{s},{s}'.join(values)}{s}){s}"
    symbol = {"gt": ">", "lt": "<"}.get(op, op)
    # A value may be empty; whitespace after the operator is then still an empty value.
    return f"{s}{key}{s}{symbol}{s}{values[0]}{s}"


def _reference_match(raw: tuple[str, str, tuple[str, ...]], labels: Mapping[str, str]) -> bool:
    """The documented semantics, written independently of the module under test."""
    key, op, values = raw
    has = key in labels
    value = labels.get(key)
    if op in ("=", "==", "in"):
        return has and value in values
    if op in ("!=", "notin"):
        return (not has) or value not in values
    if op == "exists":
        return has
    if op == "!":
        return not has
    if not has or value is None or not value.lstrip("+-").isdigit():
        return False
    return int(value) > int(values[0]) if op == "gt" else int(value) < int(values[0])


_LABEL_SETS = st.dictionaries(_KEYS, st.one_of(_VALUES, _INTS), max_size=5)


@given(raws=st.lists(_raw_requirements(), max_size=5), spaces=st.sampled_from(["", " ", "  \t"]))
def test_printed_selector_parses_back_to_itself(
    raws: list[tuple[str, str, tuple[str, ...]]], spaces: str
) -> None:
    selector = parse_label_selector(",".join(_render(raw, spaces) for raw in raws))
    assert parse_label_selector(str(selector)) == selector
    assert len(selector.requirements) <= len(raws)


@given(
    raws=st.lists(_raw_requirements(), max_size=5),
    labels=_LABEL_SETS,
    spaces=st.sampled_from(["", " "]),
)
def test_matches_agrees_with_reference_evaluation(
    raws: list[tuple[str, str, tuple[str, ...]]], labels: dict[str, str], spaces: str
) -> None:
    selector = parse_label_selector(",".join(_render(raw, spaces) for raw in raws))
    assert selector.matches(labels) == all(_reference_match(raw, labels) for raw in raws)


# --- differential test against the real kubectl -----------------------------------------------

_FIXED_CORPUS = [
    "",
    "a",
    "!a",
    "a=b",
    "a==b",
    "a!=b",
    "a=",
    "a in (b,c)",
    "a notin ()",
    "a in (,)",
    "a in (b,,c,)",
    "a in (,,)",
    "a in (b,,)",
    "a in (,,b)",
    "a in (b",
    "a in b",
    "x in (foo,,baz),y,z notin ()",
    "in in (in)",
    "notin notin (notin)",
    "a>1",
    "a<1",
    "a>b",
    "a>",
    "a>=1",
    "a=>1",
    "a=b,",
    ",",
    "a,,b",
    "a b",
    "a=b c",
    "a=b=c",
    "!a=b",
    "!!a",
    "a=!b",
    "a==",
    "a===b",
    "a!==b",
    "a/b=c",
    "/b",
    "a/",
    "a/b/c",
    "Example.com/a",
    "example.com/a",
    "a_b.c-d=e_f.g-h",
    "_a",
    "a_",
    "a=_b",
    "x" * 63,
    "x" * 64,
    "a=" + "y" * 63,
    "a=" + "y" * 64,
    " a = b ",
    "\ta\n=\rb",
    "a=(b)",
    "a in ((b))",
    "a)",
    "(a)",
    "é=1",
]
_TOKENS = [
    "a",
    "b",
    "in",
    "notin",
    "=",
    "==",
    "!=",
    "!",
    "(",
    ")",
    ",",
    " ",
    ">",
    "<",
    "1",
    "-",
    ".",
    "/",
    "x.io/",
    "A",
    "_",
]


def _random_corpus(*, seed: int, count: int) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible test corpus, not a secret
    return ["".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 8))) for _ in range(count)]


_KUBECTL_AFTER_PARSE = (
    "not supported on this object",
    "isn't supported in label selectors",
    "is not a valid label selector operator",
)


def _kubectl_verdicts(kubectl: str, selectors: list[str], home: Path) -> list[str | None]:
    """labels.Parse's verdict through `kubectl set selector --local`: None = accepted, else the
    parse error message."""
    service = home / "svc.yaml"
    service.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\n"
        "spec: {selector: {a: b}, ports: [{port: 80}]}\n"
    )
    # GOGC/GOMAXPROCS only make the ~100 short kubectl runs cheaper (about 40 ms each).
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "KUBECONFIG": str(home / "none"),
        "GOGC": "off",
        "GOMAXPROCS": "1",
    }
    verdicts: list[str | None] = []
    batch_size = 32
    for start in range(0, len(selectors), batch_size):
        batch = selectors[start : start + batch_size]
        with contextlib.ExitStack() as stack:
            procs = [
                stack.enter_context(
                    subprocess.Popen(
                        [kubectl, "set", "selector", "--local", "-f", str(service), "-o", "name", "--", text],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    )
                )
                for text in batch
            ]
            outcomes = [
                (text, proc.communicate(timeout=60)[1], proc.returncode)
                for text, proc in zip(batch, procs, strict=True)
            ]
        for text, stderr, returncode in outcomes:
            prefix = f'error: couldn\'t parse the selector string "{text}": '
            if returncode == 0:
                verdicts.append(None)
            elif stderr.startswith(prefix):
                verdicts.append(stderr[len(prefix) :].rstrip("\n"))
            else:
                # Parsed fine; kubectl then refuses `!=`, set-based or gt/lt terms for a Service.
                assert any(reason in stderr for reason in _KUBECTL_AFTER_PARSE), stderr
                verdicts.append(None)
    return verdicts


def _our_verdict(text: str) -> str | None:
    try:
        parse_label_selector(text)
    except SelectorError as exc:
        return str(exc)
    return None


def test_label_parser_agrees_with_real_kubectl(tmp_path: Path) -> None:
    kubectl = require_binary("kubectl", install_hint="install kubectl 1.32 from the Kubernetes release")
    corpus = _FIXED_CORPUS + _random_corpus(seed=20240601, count=45)
    theirs = _kubectl_verdicts(kubectl, corpus, tmp_path)
    disagreements = [
        (text, ours, their)
        for text, their in zip(corpus, theirs, strict=True)
        if (ours := _our_verdict(text)) != their
    ]
    assert disagreements == []
    accepted = sum(verdict is None for verdict in theirs)
    assert 20 <= accepted <= len(corpus) - 20  # the corpus exercises both outcomes


# --- field selectors ----------------------------------------------------------------------------

_POD_FIELDS = frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"})


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("", {}, True),
        ("spec.nodeName=n1", {"spec.nodeName": "n1"}, True),
        ("spec.nodeName==n1", {"spec.nodeName": "n2"}, False),
        ("spec.nodeName!=n1", {"spec.nodeName": "n2"}, True),
        ("spec.nodeName=", {}, True),  # a missing field reads as ""
        ("spec.nodeName!=", {}, False),
        ("spec.nodeName=n1,status.phase!=Running", {"spec.nodeName": "n1", "status.phase": "Pending"}, True),
        ("spec.nodeName=n1,status.phase!=Running", {"spec.nodeName": "n1", "status.phase": "Running"}, False),
        ("metadata.name=a\\,b", {"metadata.name": "a,b"}, True),
        ("metadata.name=a\\=b\\\\", {"metadata.name": "a=b\\"}, True),
        (",,metadata.name=x,", {"metadata.name": "x"}, True),
    ],
)
def test_field_selector_matches_supplied_values(text: str, values: Mapping[str, str], expected: bool) -> None:
    assert parse_field_selector(text, supported=_POD_FIELDS).matches(values) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spec.host=x", "field label not supported: spec.host"),
        (" metadata.name=x", "field label not supported:  metadata.name"),  # no trimming
        ("=x", "field label not supported: "),
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
        ("metadata.name=a\\x", "invalid field selector: invalid escape sequence: \\x"),
        ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_rejects_like_the_apiserver(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_field_selector(text, supported=_POD_FIELDS)
    assert str(excinfo.value) == message


def test_field_selector_exact_reports_equality_terms_only() -> None:
    selector = parse_field_selector("metadata.name==lock,spec.nodeName!=n1", supported=_POD_FIELDS)
    assert selector.exact("metadata.name") == "lock"
    assert selector.exact("spec.nodeName") is None
    assert selector.exact("status.phase") is None
    assert parse_field_selector("", supported=_POD_FIELDS).is_empty


def test_field_selector_operator_split_takes_first_operator() -> None:
    selector = parse_field_selector("a!b=c", supported=frozenset({"a!b"}))
    assert selector.exact("a!b") == "c"


def test_field_selector_string_round_trips_escapes() -> None:
    selector = parse_field_selector("metadata.name=a\\,b\\=c,spec.nodeName!=n", supported=_POD_FIELDS)
    assert str(selector) == "metadata.name=a\\,b\\=c,spec.nodeName!=n"
    assert parse_field_selector(str(selector), supported=_POD_FIELDS) == selector
    assert isinstance(selector, FieldSelector)
