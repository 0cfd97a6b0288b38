"""Configuration rules that span fields, and a fuzz of whole environments built from the settings'
own field list: `rebootd config` exits 0, or exits 2 naming the variable at fault, never a traceback.

Every rule of `settings._contradictions` (and the field validators for values a type accepts that
cannot work: 0 timeouts, empty paths, an empty token) has a bad case here that
names the option at fault, and an accepted case just on the other side of the rule (so a rule
cannot be made stricter unnoticed either).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from rebootd.cli import main
from rebootd.settings import SECRET_FIELDS, InvalidConfig, Settings, env_name, flag_name, load_settings

PROBLEM_LINE = re.compile(r"^  (REBOOTD_[A-Z0-9_]+) \(--[a-z0-9-]+\): got ", re.MULTILINE)


def run_config(env: Mapping[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["config", "--output", "json"], environ=dict(env), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def named(err: str) -> set[str]:
    return set(PROBLEM_LINE.findall(err))


# --- every cross-field and unusable-value rule: (env, the option named, what it expects) -------

RULE_CASES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "renew interval 0",
        {"REBOOTD_LOCK_RENEW_INTERVAL": "0"},
        "lock_renew_interval",
        "expected a positive duration",
    ),
    (
        "ttl 0, kured's never expire",
        {"REBOOTD_LOCK_TTL": "0"},
        "lock_ttl",
        "0 is kured's 'never expire'; rebootd's holders renew their record, so the TTL only expires "
        "a dead holder: leave it unset (5m) or give at least 3 x lock-renew-interval",
    ),
    (
        "ttl under 3 x renew",
        {"REBOOTD_LOCK_TTL": "89s"},
        "lock_ttl",
        "expected at least 3 x lock-renew-interval (1m30s)",
    ),
    (
        "renew over a third of the ttl",
        {"REBOOTD_LOCK_RENEW_INTERVAL": "101s"},
        "lock_ttl",
        "expected at least 3 x lock-renew-interval (5m3s)",
    ),
    (
        "bearer token and basic auth",
        {
            "REBOOTD_PROMETHEUS_BEARER_TOKEN": "t0ken",
            "REBOOTD_PROMETHEUS_USERNAME": "u",
            "REBOOTD_PROMETHEUS_PASSWORD": "p",
        },
        "prometheus_bearer_token",
        "give either a bearer token or basic auth for Prometheus, not both",
    ),
    (
        "bearer token and a password alone",
        {"REBOOTD_PROMETHEUS_BEARER_TOKEN": "t0ken", "REBOOTD_PROMETHEUS_PASSWORD": "p"},
        "prometheus_bearer_token",
        "give either a bearer token or basic auth for Prometheus, not both",
    ),
    (
        "username without password",
        {"REBOOTD_PROMETHEUS_USERNAME": "u"},
        "prometheus_username",
        "expected prometheus-username and prometheus-password together",
    ),
    (
        "password without username",
        {"REBOOTD_PROMETHEUS_PASSWORD": "p"},
        "prometheus_username",
        "expected prometheus-username and prometheus-password together",
    ),
    (
        "command method, empty command",
        {"REBOOTD_REBOOT_COMMAND": ""},
        "reboot_command",
        "expected a command for reboot-method=command",
    ),
    (
        "command method named, blank command",
        {"REBOOTD_REBOOT_METHOD": "command", "REBOOTD_REBOOT_COMMAND": "  "},
        "reboot_command",
        "expected a command for reboot-method=command",
    ),
    (
        "zone limit over concurrency",
        {"REBOOTD_ZONE_CONCURRENCY": "2"},
        "zone_concurrency",
        "expected at most concurrency (1)",
    ),
    (
        "match-only without a regexp",
        {"REBOOTD_ALERT_FILTER_MATCH_ONLY": "true"},
        "alert_filter_match_only",
        "expected alert-filter-regexp to be set as well",
    ),
    (
        "sentinel file and command",
        {"REBOOTD_REBOOT_SENTINEL": "/run/x", "REBOOTD_REBOOT_SENTINEL_COMMAND": "true"},
        "reboot_sentinel_command",
        "give either a sentinel file or a sentinel command, not both (kured silently ignored the file)",
    ),
    (
        "empty window",
        {"REBOOTD_START_TIME": "09:00", "REBOOTD_END_TIME": "9am"},
        "end_time",
        "expected an end time different from start-time (the window would be empty; kured's was "
        "that one second each day)",
    ),
    (
        "period 0",
        {"REBOOTD_PERIOD": "0s"},
        "period",
        "expected a positive duration",
    ),
    (
        "boot timeout 0",
        {"REBOOTD_BOOT_TIMEOUT": "0"},
        "boot_timeout",
        "expected a positive duration (0 would fail at once, not mean 'never')",
    ),
    (
        "recovery timeout 0",
        {"REBOOTD_RECOVERY_TIMEOUT": "0s"},
        "recovery_timeout",
        "expected a positive duration (0 would fail at once, not mean 'never')",
    ),
    (
        "sentinel command timeout 0",
        {"REBOOTD_REBOOT_SENTINEL_COMMAND_TIMEOUT": "0ms"},
        "reboot_sentinel_command_timeout",
        "expected a positive duration (0 would fail at once, not mean 'never')",
    ),
    (
        "empty sentinel path",
        {"REBOOTD_REBOOT_SENTINEL": ""},
        "reboot_sentinel",
        "expected a file path, not an empty value (unset the variable instead)",
    ),
    (
        "empty boot id file",
        {"REBOOTD_BOOT_ID_FILE": " "},
        "boot_id_file",
        "expected a file path, not an empty value (unset the variable instead)",
    ),
    (
        "empty CA file",
        {"REBOOTD_PROMETHEUS_CA_FILE": ""},
        "prometheus_ca_file",
        "expected a file path, not an empty value (unset the variable instead)",
    ),
    (
        "empty kubeconfig",
        {"REBOOTD_KUBECONFIG": ""},
        "kubeconfig",
        "expected a file path, not an empty value (unset the variable instead)",
    ),
    (
        "empty bearer token",
        {"REBOOTD_PROMETHEUS_BEARER_TOKEN": ""},
        "prometheus_bearer_token",
        "expected a non-empty token (unset the variable instead)",
    ),
]

# Just on the accepted side of each rule above.
ACCEPTED_CASES: list[tuple[str, dict[str, str]]] = [
    ("ttl exactly 3 x renew", {"REBOOTD_LOCK_TTL": "90s", "REBOOTD_LOCK_RENEW_INTERVAL": "30s"}),
    ("renew a third of the ttl", {"REBOOTD_LOCK_RENEW_INTERVAL": "100s"}),
    ("a tiny positive renew interval", {"REBOOTD_LOCK_RENEW_INTERVAL": "1ms"}),
    ("bearer token alone", {"REBOOTD_PROMETHEUS_BEARER_TOKEN": "t0ken"}),
    ("basic auth alone", {"REBOOTD_PROMETHEUS_USERNAME": "u", "REBOOTD_PROMETHEUS_PASSWORD": "p"}),
    ("signal method, no command", {"REBOOTD_REBOOT_METHOD": "signal", "REBOOTD_REBOOT_COMMAND": ""}),
    ("zone limit equal to concurrency", {"REBOOTD_CONCURRENCY": "2", "REBOOTD_ZONE_CONCURRENCY": "2"}),
    (
        "match-only with a regexp",
        {"REBOOTD_ALERT_FILTER_MATCH_ONLY": "true", "REBOOTD_ALERT_FILTER_REGEXP": "^A$"},
    ),
    ("sentinel command alone", {"REBOOTD_REBOOT_SENTINEL_COMMAND": "true"}),
    ("a one-second window", {"REBOOTD_START_TIME": "09:00", "REBOOTD_END_TIME": "09:00:01"}),
    ("drain timeout 0 means never", {"REBOOTD_DRAIN_TIMEOUT": "0"}),
    ("short positive timeouts", {"REBOOTD_BOOT_TIMEOUT": "1ms", "REBOOTD_RECOVERY_TIMEOUT": "1ms"}),
    ("explicit paths", {"REBOOTD_REBOOT_SENTINEL": "/run/x", "REBOOTD_KUBECONFIG": "/etc/kubeconfig"}),
]


@pytest.mark.parametrize(
    ("env", "field", "expected"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_each_cross_field_rule_exits_2_naming_the_option_at_fault(
    env: dict[str, str], field: str, expected: str
) -> None:
    code, out, err = run_config(env)
    assert code == 2, (out, err)
    assert out == ""
    assert "Traceback" not in err
    given = "'**********'" if field in SECRET_FIELDS else repr(env.get(env_name(field), ""))
    assert f"  {env_name(field)} ({flag_name(field)}): got {given}: {expected}" in err.splitlines(), err


@pytest.mark.parametrize("env", [c[1] for c in ACCEPTED_CASES], ids=[c[0] for c in ACCEPTED_CASES])
def test_the_accepted_side_of_each_rule_loads(env: dict[str, str]) -> None:
    code, out, err = run_config(env)
    assert code == 0, err
    assert err == ""
    assert json.loads(out)


def test_a_secret_given_to_a_rule_is_never_echoed() -> None:
    code, _, err = run_config(
        {"REBOOTD_PROMETHEUS_BEARER_TOKEN": "t0ken-xyz", "REBOOTD_PROMETHEUS_PASSWORD": "pw-xyz"}
    )
    assert code == 2
    assert "t0ken-xyz" not in err
    assert "pw-xyz" not in err


# --- the fuzz: values per field type, derived from the model -----------------------------------

# Options a rule may name when another option of the rule is the one given.
RULE_FIELDS: list[set[str]] = [
    {"reboot_sentinel", "reboot_sentinel_command"},
    {"start_time", "end_time"},
    {"lock_ttl", "lock_renew_interval"},
    {"concurrency", "zone_concurrency"},
    {"alert_filter_match_only", "alert_filter_regexp"},
    {"reboot_method", "reboot_command"},
    {"prometheus_username", "prometheus_password", "prometheus_bearer_token"},
]

Values = tuple[list[str], list[str]]  # (accepted on their own, refused on their own)

_BY_VALIDATOR: dict[str, Values] = {
    "_duration": (
        ["90s", "1h30m", "500ms", "2", "0.25", "1m0s"],
        ["abc", "-5m", "1x", "5 minutes", "1h-5m", ""],
    ),
    "_days": (["mo-fr", "sat,sun", "mon,tue,wed", "0-6", ""], ["funday", "mo-xx"]),
    "_time_of_day": (["09:00", "5pm", "17", "23:59:59", "5:30pm"], ["25:00", "12:61", "noon-ish"]),
    "_time_zone": (["UTC", "Europe/Paris", "America/Los_Angeles"], ["Mars/Olympus_Mons", "Nowhere"]),
    "_regexp": (["^(A|B)$", "Watchdog", ""], ["^(unclosed", "*x"]),
    "_selector": (["app=db", "tier!=cache,app in (a,b)", ""], ["app in (a,b", "=value"]),
    "_selectors": (["app=db;tier!=x", "a=b,c=d"], ["app=db;tier!!=x", "app in (a"]),
    "_labels": (["a=b", "example.com/x=y,k=v"], ["novalue", "bad key=x", "=v"]),
    "_command": (["sh -c 'exit 0'", "/bin/true"], ["'unterminated", '"open quote']),
    "_notify_urls": (
        ["json://127.0.0.1/hook", "slack://A/B/C mailto://u:p@example.com"],
        ["not a url", "://x", "discord://token@123456"],  # the last: shoutrrr's layout, apprise's scheme
    ),
    "_http_url": (["http://127.0.0.1:9090", "https://prom.monitoring:9090/x", ""], ["ftp://p", "prom:9090"]),
    "_dns_label": (["kube-system", "rebootd"], ["Kube_System", "-x", "a" * 64]),
    "_dns_subdomain": (["rebootd", "rebootd.lock"], ["UPPER", "a..b", ""]),
    "_label_key": (["example.com/zone", "zone", ""], ["a=b", "not valid!", "a,b"]),
    "_signal_number": (["1", "15", "39"], ["0", "999", "x"]),
    "_template": (["{node}: {reason}", "Draining %s", "plain"], ["Draining {nodes}", "{0}", "{"]),
}
_BOOL: Values = (["true", "false", "1", "0", "yes", "off", "TRUE"], ["maybe", "2", ""])
_PATH: Values = (["/run/x", "relative/file"], ["", "  "])
_SECRET: Values = (["s3cret"], [])
_TEXT: Values = (["node-1", "x y", "é"], [])


def _validator_name(info: FieldInfo) -> str | None:
    for item in info.metadata:
        func = getattr(item, "func", None)
        if func is not None:
            return str(func.__name__)
    return None


def _int_values(info: FieldInfo, annotation: Any) -> Values:
    bounds = list(info.metadata)
    for arg in typing.get_args(annotation):  # Optional[Annotated[int, Field(ge=...)]]
        for inner in typing.get_args(arg)[1:]:
            bounds.extend(getattr(inner, "metadata", ()))
    low = next((b.ge for b in bounds if hasattr(b, "ge")), None)
    high = next((b.le for b in bounds if hasattr(b, "le")), None)
    valid = ["7"] if low is None else [str(low), str(low + 1)]
    invalid = ["two", "1.5", ""]
    if low is not None:
        invalid.append(str(low - 1))
    if high is not None:
        valid.append(str(high))
        invalid.append(str(high + 1))
    return valid, invalid


def field_values(name: str, info: FieldInfo) -> Values:
    """Values accepted and refused for one option, from its type and its validator."""
    annotation = info.annotation
    validator = _validator_name(info)
    if validator in _BY_VALIDATOR:
        valid, invalid = _BY_VALIDATOR[validator]
        if validator == "_duration" and info.default and info.default > 0 and name != "drain_timeout":
            return valid, invalid
        return [*valid, "0"] if validator == "_duration" else valid, invalid
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [*map(str, args), str(args[0]).upper()], ["bogus", ""]
    if annotation is bool:
        return _BOOL
    if annotation is int or int in args or any(int in typing.get_args(a) for a in args):
        return _int_values(info, annotation)
    if "Path" in str(annotation):
        return _PATH
    if "SecretStr" in str(annotation):
        return _SECRET
    return _TEXT


FIELDS = {name: field_values(name, info) for name, info in Settings.model_fields.items()}


def refused_options(env: Mapping[str, str]) -> set[str]:
    """The options `load_settings` names as problems (empty: the environment loads)."""
    try:
        load_settings(environ=env)
    except InvalidConfig as exc:
        return {problem.field for problem in exc.problems}
    return set()


def test_the_fuzz_knows_accepted_and_refused_values_for_every_typed_option() -> None:
    for name, (valid, invalid) in FIELDS.items():
        assert valid, name
        info = Settings.model_fields[name]
        if info.annotation not in (str,) and "SecretStr" not in str(info.annotation):
            assert invalid, f"{name}: no refused value derived from {info.annotation}"
    for name, (valid, invalid) in FIELDS.items():  # each class of value is what it claims, alone
        partners = {f for rule in RULE_FIELDS if name in rule for f in rule}
        for value in valid:
            # Alone, an accepted value is refused only by a rule it shares with another option.
            assert refused_options({env_name(name): value}) <= partners, (name, value)
        for value in invalid:
            assert name in refused_options({env_name(name): value}), (name, value)


@st.composite
def environments(draw: Callable[..., Any]) -> tuple[dict[str, str], set[str]]:
    """A few options, each with an accepted or a refused value; returns (env, refused options)."""
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=6, unique=True))
    env: dict[str, str] = {}
    refused: set[str] = set()
    for name in names:
        valid, invalid = FIELDS[name]
        if invalid and draw(st.booleans()):
            env[env_name(name)] = draw(st.sampled_from(invalid))
            refused.add(name)
        else:
            env[env_name(name)] = draw(st.sampled_from(valid))
    return env, refused


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=environments())
def test_any_environment_exits_0_or_2_naming_the_variables_at_fault(
    case: tuple[dict[str, str], set[str]],
) -> None:
    env, refused = case
    given_fields = {name for name in Settings.model_fields if env_name(name) in env}
    partners = set().union(*(rule for rule in RULE_FIELDS if rule & given_fields))
    code, out, err = run_config(env)
    assert "Traceback" not in err
    assert code in (0, 2), err
    if refused:
        assert code == 2, (env, out)
    if code == 2:
        assert out == ""
        shown = named(err)
        assert shown, err
        assert {env_name(f) for f in refused} <= shown, (env, err)
        assert shown <= {env_name(f) for f in given_fields | partners}, (env, err)
        return
    # Loaded: stderr holds only warnings (kured behaviours that rebootd names), never an error.
    assert all(line.startswith("rebootd: warning: ") for line in err.splitlines()), err
    # What `config` prints for the options given loads back to the same values (secrets are
    # redacted, so they are left out).
    printed = json.loads(out)
    first = load_settings(environ=env)
    again: dict[str, str] = {}
    for name in given_fields - {"prometheus_username"}:  # its partner, a secret, is redacted
        value = printed[name]
        if value is None or value == "**********" or (isinstance(value, list) and "**********" in value):
            continue
        if isinstance(value, list):
            value = (";" if name == "blocking_pod_selector" else ",").join(map(str, value))
        again[env_name(name)] = str(value)
    second = load_settings(environ=again)
    for name in given_fields:
        if env_name(name) not in again:
            continue
        a, b = getattr(first, name), getattr(second, name)
        if isinstance(a, re.Pattern):
            a, b = a.pattern, getattr(b, "pattern", b)
        assert a == b, (name, env, printed[name])


# --- single-option validators at their edges (killing what `nox -s mutants` found surviving) ----


def problem_lines(
    *, environ: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None
) -> list[str]:
    try:
        load_settings(environ=environ or {}, flags=flags)
    except InvalidConfig as exc:
        return [problem.render() for problem in exc.problems]
    return []


def test_a_duration_given_programmatically_must_be_a_non_negative_number() -> None:
    assert problem_lines(flags={"period": -5}) == [
        "REBOOTD_PERIOD (--period): got '-5': expected a non-negative duration"
    ]
    assert problem_lines(flags={"period": True}) == [
        "REBOOTD_PERIOD (--period): got 'True': expected a duration such as 90s, 1h30m, 500ms, "
        "or a number of seconds"
    ]
    assert load_settings(environ={}, flags={"period": 90}).period == 90.0


def test_an_empty_alert_filter_matches_every_alert_as_in_kured() -> None:
    empty = load_settings(environ={"REBOOTD_ALERT_FILTER_REGEXP": ""}).alert_filter_regexp
    assert empty is not None
    assert empty.pattern == ""
    assert load_settings(environ={}).alert_filter_regexp is None  # unset: no filter


def test_a_bad_selector_or_regexp_says_what_is_expected_and_why() -> None:
    [selector] = problem_lines(environ={"REBOOTD_DRAIN_POD_SELECTOR": "app in (a,b"})
    assert selector.startswith(
        "REBOOTD_DRAIN_POD_SELECTOR (--drain-pod-selector): got 'app in (a,b': "
        "expected a label selector such as app=db,tier!=cache ("
    ), selector
    [regexp] = problem_lines(environ={"REBOOTD_ALERT_FILTER_REGEXP": "^(x"})
    assert regexp.startswith(
        "REBOOTD_ALERT_FILTER_REGEXP (--alert-filter-regexp): got '^(x': "
        "expected a valid regular expression ("
    ), regexp


def test_node_labels_are_split_on_commas_into_pairs() -> None:
    settings = load_settings(environ={"REBOOTD_PRE_REBOOT_NODE_LABELS": "a=b,example.com/c=d, e="})
    assert settings.pre_reboot_node_labels == ("a=b", "example.com/c=d", "e=")


@pytest.mark.parametrize(
    ("env", "code", "named_var"),
    [
        ({"REBOOTD_LOCK_RENEW_INTERVAL": "0"}, 2, "REBOOTD_LOCK_RENEW_INTERVAL"),
        ({"REBOOTD_PROMETHEUS_BEARER_TOKEN": " "}, 2, "REBOOTD_PROMETHEUS_BEARER_TOKEN"),
        ({"REBOOTD_REBOOT_METHOD": "command", "REBOOTD_REBOOT_COMMAND": ""}, 2, "REBOOTD_REBOOT_COMMAND"),
        ({"REBOOTD_LOCK_TTL": "90s", "REBOOTD_LOCK_RENEW_INTERVAL": "30s"}, 0, None),
    ],
)
def test_the_real_entry_point_exits_like_main_with_no_traceback(
    env: dict[str, str], code: int, named_var: str | None
) -> None:
    """A few cases through a real `python -m rebootd config` process (the console script's path)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")}
    result = subprocess.run(
        [sys.executable, "-m", "rebootd", "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    if named_var is not None:
        assert f"  {named_var} (" in result.stderr
        assert result.stdout == ""
    else:
        assert result.stderr == ""


# What each single-option validator says (the exact line an operator reads), one bad value each.
VALIDATOR_MESSAGES: list[tuple[str, str, str]] = [
    ("REBOOT_COMMAND", "'x", "expected a command line (No closing quotation)"),
    (
        "LOCK_NAMESPACE",
        "Kube_System",
        "expected a DNS-1123 label (lowercase letters, digits, '-', at most 63)",
    ),
    ("LOCK_NAME", "UPPER", "expected a DNS-1123 subdomain (lowercase letters, digits, '-', '.')"),
    ("PROMETHEUS_URL", "ftp://p", "expected an http(s) URL such as http://prometheus.monitoring:9090"),
    (
        "ZONE_LABEL",
        "a b",
        "expected a label/taint key such as rebootd.io/reboot (unable to parse requirement: ",
    ),
    ("PREFER_NO_SCHEDULE_TAINT", "a=b", "expected a single label/taint key such as rebootd.io/reboot"),
    ("PRE_REBOOT_NODE_LABELS", "novalue", "expected key=value label pairs, comma-separated (got 'novalue')"),
    (
        "POST_REBOOT_NODE_LABELS",
        "bad key=x",
        "expected valid key=value labels (unable to parse requirement: ",
    ),
    ("NOTIFY_URL", "not a url", "expected notification URLs such as slack://T/B/C or json://host/path"),
    # a scheme but no `//`: refused for its layout before apprise is asked
    (
        "NOTIFY_URL",
        "mailto:u@example.com",
        "expected notification URLs such as slack://T/B/C or json://host/path",
    ),
    ("REBOOT_SIGNAL", "0", "expected a signal number from 1 to 64 (SIGRTMIN+5 is 39)"),
    (
        "MESSAGE_TEMPLATE_HALT",
        "{nodes}",
        "expected a template with {node} / {reason} or kured's %s ('nodes')",
    ),
]


@pytest.mark.parametrize(("suffix", "value", "expected"), VALIDATOR_MESSAGES)
def test_each_validator_says_what_it_expects(suffix: str, value: str, expected: str) -> None:
    [line] = problem_lines(environ={f"REBOOTD_{suffix}": value})
    shown = "'**********'" if suffix == "NOTIFY_URL" else repr(value)
    prefix = f"REBOOTD_{suffix} (--{suffix.lower().replace('_', '-')}): got {shown}: "
    assert line.startswith(prefix + expected), line
    if not expected.endswith(": "):
        assert line == prefix + expected


@pytest.mark.parametrize(
    ("suffix", "accepted", "refused"),
    [
        ("LOCK_NAMESPACE", "a" * 63, "a" * 64),
        ("LOCK_NAME", "a" * 253, "a" * 254),
        ("REBOOT_SIGNAL", "64", "65"),  # SIGRTMAX on Linux
        ("ZONE_LABEL", "example.com/Xzone", "example.com/zone!"),
        ("NOTIFY_URL", "json://127.0.0.1/hook", "mailto:u@example.com"),
        ("NOTIFY_URL", "JSON://host/p", "1json://host/p"),  # apprise's schemes, any case
    ],
)
def test_limits_are_inclusive_and_exact(suffix: str, accepted: str, refused: str) -> None:
    assert problem_lines(environ={f"REBOOTD_{suffix}": accepted}) == []
    assert problem_lines(environ={f"REBOOTD_{suffix}": refused}) != []


def test_values_given_programmatically_as_lists_or_secrets_load() -> None:
    settings = load_settings(
        environ={},
        flags={
            "reboot_command": ["/bin/systemctl", "reboot", "--force"],
            "notify_url": [SecretStr("json://h/p")],
        },
    )
    assert settings.reboot_command == ("/bin/systemctl", "reboot", "--force")
    assert [url.get_secret_value() for url in settings.notify_url] == ["json://h/p"]


def test_reboot_days_given_programmatically_as_a_list_are_one_comma_list() -> None:
    settings = load_settings(environ={}, flags={"reboot_days": ["mon", "fri"]})
    assert settings.reboot_days == frozenset({0, 4})


@pytest.mark.parametrize("template", ["{node:d}", "{reason:d}"])
def test_a_template_whose_format_spec_does_not_fit_text_is_refused_as_invalid(template: str) -> None:
    """The node and reason are text: a numeric format spec is a configuration error (exit 2),
    not a crash of the validator."""
    with pytest.raises(InvalidConfig, match=r"REBOOTD_MESSAGE_TEMPLATE_DRAIN .*: expected a template with"):
        load_settings(environ={}, flags={"message_template_drain": template})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"alert_filter_regexp": r"(a)\1"},
            "REBOOTD_ALERT_FILTER_REGEXP (--alert-filter-regexp): got '(a)\\\\1': expected a Go RE2 pattern "
            "that Python reads the same way: \\1 is a backreference in Python and refused by RE2",
        ),
        (
            {"notify_url": ["nosuchscheme://host"]},
            "REBOOTD_NOTIFY_URL (--notify-url): got '**********': expected apprise URLs: nosuchscheme:// "
            "is not an apprise scheme (see https://github.com/caronc/apprise/wiki)",
        ),
        (
            {"pre_reboot_node_labels": ["=a=b"]},
            "REBOOTD_PRE_REBOOT_NODE_LABELS (--pre-reboot-node-labels): got '=a=b': expected key=value "
            "label pairs, comma-separated (got '=a=b')",
        ),
    ],
)
def test_a_value_refused_programmatically_says_exactly_why(flags: dict[str, Any], message: str) -> None:
    """A pattern RE2 reads otherwise, an URL of no apprise scheme, a label without a key before
    its first `=`: each refused with the reason of its own check."""
    with pytest.raises(InvalidConfig) as refused:
        load_settings(environ={}, flags=flags)
    assert str(refused.value) == message
