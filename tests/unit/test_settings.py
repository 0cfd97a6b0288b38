"""Configuration: every bad input exits 2 naming its env var and flag, with no traceback."""

from __future__ import annotations

import io
import re
from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd.cli import main
from rebootd.settings import Settings, env_name, flag_name, load_settings

BASE = {"REBOOTD_NODE_ID": "node-1"}


def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ={**BASE, **env}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# (env var suffix, bad value) -> the option named in the error
BAD_INPUTS: list[tuple[str, str]] = [
    ("PERIOD", "abc"),
    ("PERIOD", "-5m"),
    ("PERIOD", "0"),
    ("PERIOD", "5 minutes"),
    ("LOCK_TTL", "1x"),
    ("LOCK_TTL", "10s"),  # shorter than 3 x the default 30s renew interval
    ("LOCK_RELEASE_DELAY", "soon"),
    ("DRAIN_TIMEOUT", "1h-5m"),
    ("REBOOT_DELAY", "1.2.3s"),
    ("BOOT_TIMEOUT", "ms"),
    ("REBOOT_DAYS", "funday"),
    ("REBOOT_DAYS", "mo-xx"),
    ("START_TIME", "25:00"),
    ("START_TIME", "12:61"),
    ("END_TIME", "noon-ish"),
    ("END_TIME", "00:00"),  # equals the default start time: empty window
    ("TIME_ZONE", "Mars/Olympus_Mons"),
    ("CONCURRENCY", "0"),
    ("CONCURRENCY", "two"),
    ("ZONE_CONCURRENCY", "-1"),
    ("ZONE_CONCURRENCY", "3"),  # more than concurrency 1
    ("MAX_UNAVAILABLE_NODES", "-2"),
    ("DRAIN_GRACE_PERIOD", "-7"),
    ("SKIP_WAIT_FOR_DELETE_TIMEOUT", "1.5"),
    ("FORCE_REBOOT", "maybe"),
    ("ALERT_FIRING_ONLY", "yesno"),
    ("ALERT_FILTER_REGEXP", "^(unclosed"),
    ("ALERT_FILTER_MATCH_ONLY", "true"),  # without a regexp
    ("METRICS_PORT", "0"),
    ("METRICS_PORT", "70000"),
    ("METRICS_PORT", "http"),
    ("REBOOT_METHOD", "kexec"),
    ("REBOOT_SIGNAL", "0"),
    ("REBOOT_SIGNAL", "999"),
    ("REBOOT_COMMAND", "'unterminated"),
    ("REBOOT_SENTINEL_COMMAND", '"open quote'),
    ("DRAIN_POD_SELECTOR", "app in (a,b"),
    ("DRAIN_POD_SELECTOR", "=value"),
    ("BLOCKING_POD_SELECTOR", "app=db;tier!!=x"),
    ("NOTIFY_URL", "not a url"),
    ("NOTIFY_URL", "://missing-scheme"),
    ("PROMETHEUS_URL", "ftp://prometheus"),
    ("PROMETHEUS_URL", "prometheus:9090"),
    ("PROMETHEUS_USERNAME", "admin"),  # without a password
    ("LOCK_NAMESPACE", "Kube_System"),
    ("LOCK_NAME", "UPPER"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "loud"),
    ("PRE_REBOOT_NODE_LABELS", "novalue"),
    ("POST_REBOOT_NODE_LABELS", "bad key=x"),
    ("PREFER_NO_SCHEDULE_TAINT", "a=b"),
    ("MESSAGE_TEMPLATE_DRAIN", "Draining {nodes}"),
    ("ZONE_LABEL", "not valid!"),
]


@pytest.mark.parametrize(("suffix", "value"), BAD_INPUTS)
def test_bad_env_value_exits_2_naming_env_var_and_flag(suffix: str, value: str) -> None:
    code, out, err = run_cli(["config"], {f"REBOOTD_{suffix}": value})
    assert code == 2, err
    field = suffix.lower()
    assert f"REBOOTD_{suffix}" in err or "REBOOTD_" in err
    named = [line for line in err.splitlines() if line.startswith("  REBOOTD_")]
    assert named, err
    # The option given is the one named (contradictions name the option at fault, which may be its partner).
    assert any(env_name(field) in line for line in named) or suffix in {"ALERT_FILTER_MATCH_ONLY"}
    assert "Traceback" not in err
    assert out == ""


def test_at_least_thirty_distinct_bad_inputs_are_covered() -> None:
    assert len(BAD_INPUTS) >= 30
    assert len({suffix for suffix, _ in BAD_INPUTS}) >= 30


def test_error_line_shows_value_given_and_what_is_expected() -> None:
    code, _, err = run_cli(["config"], {"REBOOTD_PERIOD": "abc"})
    assert code == 2
    assert "REBOOTD_PERIOD (--period): got 'abc': expected a duration such as 90s, 1h30m" in err


def test_every_bad_option_gets_its_own_line() -> None:
    code, _, err = run_cli(
        ["config"], {"REBOOTD_PERIOD": "abc", "REBOOTD_CONCURRENCY": "x", "REBOOTD_LOG_LEVEL": "y"}
    )
    assert code == 2
    assert "(3 problems)" in err
    assert sum(line.startswith("  REBOOTD_") for line in err.splitlines()) == 3


def test_flag_wins_over_env_var() -> None:
    code, out, err = run_cli(["config", "--output", "json", "--period", "5m"], {"REBOOTD_PERIOD": "1h"})
    assert code == 0, err
    assert '"period": "5m"' in out


def test_bad_flag_value_is_reported_with_flag_and_env_names() -> None:
    code, _, err = run_cli(["config", "--concurrency", "zero"], {})
    assert code == 2
    assert "REBOOTD_CONCURRENCY (--concurrency): got 'zero'" in err


def test_sentinel_file_and_command_both_explicit_is_a_contradiction() -> None:
    code, _, err = run_cli(
        ["config"], {"REBOOTD_REBOOT_SENTINEL": "/run/x", "REBOOTD_REBOOT_SENTINEL_COMMAND": "true"}
    )
    assert code == 2
    assert "REBOOTD_REBOOT_SENTINEL_COMMAND" in err
    assert "not both" in err


def test_sentinel_command_alone_is_accepted() -> None:
    settings = load_settings(environ={"REBOOTD_REBOOT_SENTINEL_COMMAND": "sh -c '! needs-restarting -r'"})
    assert settings.reboot_sentinel_command == ("sh", "-c", "! needs-restarting -r")


def test_run_without_node_id_is_refused_before_doing_anything() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["run"], environ={}, stdout=out, stderr=err)
    assert code == 2
    assert "REBOOTD_NODE_ID (--node-id)" in err.getvalue()


def test_secrets_are_redacted_in_errors_and_in_config_output() -> None:
    secret = "xoxb-very-secret-token"
    code, _, err = run_cli(
        ["config"], {"REBOOTD_NOTIFY_URL": f"slack://{secret}/B/C", "REBOOTD_PERIOD": "bad"}
    )
    assert code == 2
    assert secret not in err
    code, out, _ = run_cli(
        ["config", "--output", "json"],
        {
            "REBOOTD_NOTIFY_URL": f"slack://{secret}/B/C",
            "REBOOTD_PROMETHEUS_URL": f"http://user:{secret}@prom:9090",
            "REBOOTD_PROMETHEUS_BEARER_TOKEN": secret,
        },
    )
    assert code == 0
    assert secret not in out
    assert "**********" in out
    code, out, _ = run_cli(
        ["config"], {"REBOOTD_PROMETHEUS_PASSWORD": secret, "REBOOTD_PROMETHEUS_USERNAME": "u"}
    )
    assert code == 0
    assert secret not in out
    settings = load_settings(environ={"REBOOTD_PROMETHEUS_BEARER_TOKEN": secret})
    assert secret not in repr(settings)
    assert secret not in str(settings)


def test_notify_urls_split_on_space_and_on_comma_before_a_scheme() -> None:
    settings = load_settings(
        environ={
            "REBOOTD_NOTIFY_URL": "mailto://u:p@mail.example.com?to=a@example.com,b@example.com,"
            "json://127.0.0.1/hook slack://A/B/C"
        }
    )
    urls = [u.get_secret_value() for u in settings.notify_url]
    assert urls == [
        "mailto://u:p@mail.example.com?to=a@example.com,b@example.com",
        "json://127.0.0.1/hook",
        "slack://A/B/C",
    ]


def test_blocking_pod_selectors_repeat_on_flags_and_split_on_semicolon_in_env() -> None:
    settings = load_settings(
        environ={"REBOOTD_BLOCKING_POD_SELECTOR": "runtime=long,cost=expensive;name=temperamental"}
    )
    assert settings.blocking_pod_selector == ("runtime=long,cost=expensive", "name=temperamental")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "config",
            "--output",
            "json",
            "--blocking-pod-selector",
            "a=b,c=d",
            "--blocking-pod-selector",
            "e=f",
        ],
        environ={},
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert '"a=b,c=d"' in out.getvalue()
    assert '"e=f"' in out.getvalue()


def test_kured_style_values_are_accepted() -> None:
    settings = load_settings(
        environ={
            "REBOOTD_REBOOT_DAYS": "mon,tue,wed,thu,fri",
            "REBOOTD_START_TIME": "9am",
            "REBOOTD_END_TIME": "5pm",
            "REBOOTD_TIME_ZONE": "America/Los_Angeles",
            "REBOOTD_PERIOD": "1h0m0s",
            "REBOOTD_LOCK_TTL": "30m",
            "REBOOTD_MESSAGE_TEMPLATE_DRAIN": "Draining node %s part of *my-cluster*",
            "REBOOTD_ALERT_FILTER_REGEXP": "^(RebootRequired|AnotherBenignAlert)$",
            "REBOOTD_FORCE_REBOOT": "true",
        }
    )
    assert settings.reboot_days == frozenset({0, 1, 2, 3, 4})
    assert settings.start_time == time(9, 0)
    assert settings.end_time == time(17, 0)
    assert settings.period == 3600.0
    assert settings.lock_ttl == 1800.0
    assert settings.force_reboot is True
    assert settings.alert_filter_regexp is not None
    assert settings.alert_filter_regexp.match("RebootRequired")


def test_defaults_are_valid_and_documented() -> None:
    settings = load_settings(environ={})
    assert settings.period == 60.0
    assert settings.reboot_sentinel.as_posix() == "/var/run/reboot-required"
    assert settings.reboot_command == ("/bin/systemctl", "reboot")
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no description"


ENV_SUFFIXES = sorted(name.upper() for name in Settings.model_fields)


@given(
    suffix=st.sampled_from(ENV_SUFFIXES),
    value=st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40),
)
def test_any_env_value_is_accepted_or_rejected_cleanly(suffix: str, value: str) -> None:
    """Fuzz: random text in any option either loads, or exits 2 naming that option; never a traceback."""
    code, out, err = run_cli(["config", "--output", "json"], {f"REBOOTD_{suffix}": value})
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert out == ""
        assert re.search(r"^  REBOOTD_[A-Z_]+ \(--[a-z-]+\): got ", err, re.MULTILINE), err
    else:  # only start-up warnings (a kured meaning that may surprise), never an error
        assert all(line.startswith("rebootd: warning: ") for line in err.splitlines()), err


@given(
    flag=st.sampled_from(sorted(Settings.model_fields)),
    value=st.text(max_size=30).filter(lambda v: "\x00" not in v),
)
def test_any_flag_value_is_accepted_or_rejected_cleanly(flag: str, value: str) -> None:
    code, _, err = run_cli(["config", f"{flag_name(flag)}={value}"], {})
    assert code in (0, 2)
    assert "Traceback" not in err
