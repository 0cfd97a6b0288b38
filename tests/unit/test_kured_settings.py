"""kured users' settings mean what they meant in kured (v1.23 `cmd/kured/main.go`), or stop the
daemon with an error naming the difference; run through `rebootd config` as a user would."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from rebootd.blockers import ActiveAlert, blocking_alert_names
from rebootd.cli import EXIT_OK, EXIT_USAGE, main
from rebootd.settings import load_settings_and_warnings


def config(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["config", "--output", "json", *argv], environ=dict(environ or {}), stdout=out, stderr=err)
    return code, json.loads(out.getvalue()) if code == EXIT_OK else None, err.getvalue()


def test_repeated_reboot_days_flags_append_like_kured() -> None:
    code, data, _ = config(["--reboot-days", "mo", "--reboot-days", "tu"])
    assert code == EXIT_OK
    assert data["reboot_days"] == "mon,tue"


def test_repeated_node_label_flags_append_like_kured() -> None:
    code, data, _ = config(
        [
            "--pre-reboot-node-labels",
            "a=1,b=2",
            "--pre-reboot-node-labels",
            "c=3",
            "--post-reboot-node-labels",
            "a=0",
        ]
    )
    assert code == EXIT_OK
    assert data["pre_reboot_node_labels"] == ["a=1", "b=2", "c=3"]
    assert data["post_reboot_node_labels"] == ["a=0"]


def test_empty_reboot_days_means_never_and_says_so() -> None:
    code, data, err = config(environ={"REBOOTD_REBOOT_DAYS": ""})
    assert code == EXIT_OK
    assert data["reboot_days"] == ""
    assert "no reboot will ever start" in err


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("REBOOTD_PERIOUD", "did you mean REBOOTD_PERIOD?"),
        ("REBOOTD_SLACK_HOOK_URL", "kured's --slack-hook-url is REBOOTD_NOTIFY_URL"),
        ("REBOOTD_DS_NAME", "kured's --ds-name is REBOOTD_LOCK_NAME"),
        ("REBOOTD_WHATEVER", "rebootd run --help"),
    ],
)
def test_unknown_rebootd_variable_is_an_error_naming_it(variable: str, hint: str) -> None:
    code, _, err = config(environ={variable: "x"})
    assert code == EXIT_USAGE
    assert f"{variable}: unknown variable" in err
    assert hint in err
    assert "'x'" not in err  # an unknown variable's value may be a secret


def test_service_link_variables_of_a_service_named_rebootd_are_not_settings() -> None:
    environ = {
        "REBOOTD_SERVICE_HOST": "10.0.0.1",
        "REBOOTD_PORT": "tcp://10.0.0.1:8080",
        "REBOOTD_PORT_8080_TCP_PROTO": "tcp",
    }
    assert config(environ=environ)[0] == EXIT_OK


def test_kured_variables_are_read_with_one_warning_each() -> None:
    code, data, err = config(
        environ={"KURED_PERIOD": "2h", "KURED_REBOOT_DAYS": "sa,su", "KURED_PORT": "tcp://x"}
    )
    assert code == EXIT_OK
    assert data["period"] == "2h"
    assert data["reboot_days"] == "sat,sun"
    assert err.count("warning: KURED_PERIOD read as REBOOTD_PERIOD") == 1
    assert err.count("warning: KURED_REBOOT_DAYS read as REBOOTD_REBOOT_DAYS") == 1
    assert "KURED_PORT" not in err


def test_rebootd_variable_wins_over_its_kured_variable() -> None:
    code, data, err = config(environ={"KURED_PERIOD": "2h", "REBOOTD_PERIOD": "5m"})
    assert code == EXIT_OK
    assert data["period"] == "5m"
    assert "KURED_PERIOD ignored: REBOOTD_PERIOD is set and wins" in err


def test_kured_lock_ttl_zero_keeps_a_renewed_lock_instead_of_failing() -> None:
    code, data, err = config(environ={"KURED_LOCK_TTL": "0"})
    assert code == EXIT_OK
    assert data["lock_ttl"] == "5m"
    assert "never expire" in err


def test_kured_slack_variables_become_one_apprise_slack_url() -> None:
    environ = {
        "KURED_SLACK_HOOK_URL": "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "KURED_SLACK_CHANNEL": "ops",
        "KURED_SLACK_USERNAME": "prod",
    }
    code, _, err = config(environ=environ)
    assert code == EXIT_OK
    assert "KURED_SLACK_HOOK_URL read as REBOOTD_NOTIFY_URL" in err
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in err


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("teams://group@tenant/altId/groupOwner", "shoutrrr (kured) scheme"),
        ("smtp://user:pass@mail.example.com:25/?fromAddress=a@b.c&toAddresses=d@e.f", "mailtos://"),
        ("generic+https://example.com/hook", "jsons://"),
        ("nosuchscheme://x/y", "not an apprise scheme"),
        ("https://example.com/hook", "no apprise service claims"),
        ("discord://abcdefTOKEN@123456789", "discord://webhook_id/webhook_token"),  # shoutrrr's layout
    ],
)
def test_notification_urls_apprise_does_not_know_are_refused_at_start(url: str, reason: str) -> None:
    code, _, err = config(environ={"REBOOTD_NOTIFY_URL": url})
    assert code == EXIT_USAGE
    assert reason in err
    assert url not in err  # the URL itself (it carries secrets) is never echoed


def test_notification_urls_apprise_knows_are_accepted() -> None:
    urls = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ json://127.0.0.1:9/hook"
    assert config(environ={"REBOOTD_NOTIFY_URL": urls})[0] == EXIT_OK


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("^[[:alpha:]]+$", "POSIX class"),
        ("Reboot\\z", "\\z"),
        ("(?U)Reboot.*", "ungreedy"),
        ("Reboot{,3}", "{,n}"),
        ("(?=Reboot)", "refused by RE2"),
        ("(a)\\1", "backreference"),
    ],
)
def test_re2_constructs_python_reads_differently_are_refused_with_the_reason(
    pattern: str, reason: str
) -> None:
    code, _, err = config(environ={"REBOOTD_ALERT_FILTER_REGEXP": pattern})
    assert code == EXIT_USAGE
    assert reason in err


def test_empty_alert_filter_means_what_it_meant_in_kured() -> None:
    alerts = [ActiveAlert(name="RebootRequired", state="firing"), ActiveAlert(name="Other", state="pending")]
    code, data, err = config(environ={"REBOOTD_ALERT_FILTER_REGEXP": ""})
    assert code == EXIT_OK
    assert "no alert blocks reboots" in err
    from rebootd.settings import load_settings

    empty = load_settings(environ={"REBOOTD_ALERT_FILTER_REGEXP": ""}).alert_filter_regexp
    assert blocking_alert_names(alerts, filter_regexp=empty, filter_match_only=False, firing_only=False) == []
    assert blocking_alert_names(alerts, filter_regexp=empty, filter_match_only=True, firing_only=False) == [
        "Other",
        "RebootRequired",
    ]
    unset = load_settings(environ={}).alert_filter_regexp
    assert unset is None
    assert data["alert_filter_regexp"] == ""


def test_metrics_host_defaults_to_every_address_like_kured() -> None:
    assert config()[1]["metrics_host"] == ""


def test_force_reboot_with_the_pdb_preflight_warns_and_the_override_is_a_setting() -> None:
    code, data, err = config(environ={"REBOOTD_FORCE_REBOOT": "true"})
    assert code == EXIT_OK
    assert data["pdb_preflight"] is True
    assert "REBOOTD_PDB_PREFLIGHT=false" in err
    code, data, err = config(environ={"REBOOTD_FORCE_REBOOT": "true", "REBOOTD_PDB_PREFLIGHT": "false"})
    assert code == EXIT_OK
    assert data["pdb_preflight"] is False
    assert "PDB" not in err


def test_pre_and_post_reboot_labels_with_different_keys_warn_like_kured() -> None:
    _, warnings = load_settings_and_warnings(
        environ={"REBOOTD_PRE_REBOOT_NODE_LABELS": "kured=rebooting,drain=yes"},
        flags={"post_reboot_node_labels": ["kured=done"]},
    )
    assert any("different keys (drain,kured / kured)" in w for w in warnings), warnings
    _, warnings = load_settings_and_warnings(
        environ={
            "REBOOTD_PRE_REBOOT_NODE_LABELS": "kured=rebooting",
            "REBOOTD_POST_REBOOT_NODE_LABELS": "kured=done",
        }
    )
    assert not any("different keys" in w for w in warnings), warnings
