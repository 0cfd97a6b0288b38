"""Issue 17's "done when", as a table: kured command lines, environments, DaemonSets and Helm values
run through `rebootd config` and `rebootd migrate` give kured's meaning, or an error naming the
difference, for every point of the issue.

Each case names the issue's point it proves. A `config` case is a kured command line and
environment given to `rebootd config --output json`. A `ds` case is a kured DaemonSet (kured's
command line and `KURED_*` env in its container) and a `helm` case kured's chart values; each is
given to `rebootd migrate` in both outputs (kustomize overlay and Helm values), and each output's
settings are loaded by `rebootd config` again: both must give the same, expected, configuration.
(The cycle's side of the points, labels, taint, annotations and drain delay in whole rollouts, is
tests/integration/test_kured_signs.py; the live DaemonSet is tests/integration/test_migrate_live.py.)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from rebootd.cli import EXIT_OK, main
from rebootd.settings import load_settings

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Case:
    point: str  # the issue's point, as the case id
    source: str  # config | ds | helm
    argv: tuple[str, ...] = ()  # kured's command line (config, ds)
    env: Mapping[str, str] = field(default_factory=dict)  # the environment (config) or container env (ds)
    values: Mapping[str, Any] = field(default_factory=dict)  # kured's Helm values (helm)
    expect: Mapping[str, Any] = field(default_factory=dict)  # `rebootd config --output json` fields
    raw: Mapping[str, str] = field(default_factory=dict)  # REBOOTD_* the migration emits (secrets)
    error: str = ""  # the run fails (exit 2 config, 1 migrate) with this text on stderr
    says: str = ""  # the run succeeds and this text is on stderr or in the output's comments
    check: Callable[[JsonObj], None] | None = None


@dataclass(frozen=True)
class Result:
    code: int
    config: JsonObj | None
    text: str  # stderr, plus the migration's output (its comments)
    raw: Mapping[str, str]


def run_config(argv: tuple[str, ...], env: Mapping[str, str]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(["config", "--output", "json", *argv], environ=dict(env), stdout=out, stderr=err)
    return Result(code, json.loads(out.getvalue()) if code == EXIT_OK else None, err.getvalue(), {})


def daemonset(argv: tuple[str, ...], env: Mapping[str, str]) -> str:
    container_env = [{"name": "KURED_NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    container_env += [{"name": k, "value": v} for k, v in env.items()]
    doc = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "kured", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"name": "kured"}},
            "template": {
                "metadata": {"labels": {"name": "kured"}},
                "spec": {
                    "containers": [
                        {
                            "name": "kured",
                            "image": "ghcr.io/kubereboot/kured:1.23.0",
                            "command": ["/usr/bin/kured", *argv],
                            "env": container_env,
                            "volumeMounts": [{"name": "sentinel", "mountPath": "/sentinel"}],
                        }
                    ],
                    "volumes": [{"name": "sentinel", "hostPath": {"path": "/var/run", "type": "Directory"}}],
                },
            },
        },
    }
    return yaml.safe_dump(doc)


LIST_SEPARATORS = {"rebootDays": ",", "blockingPodSelector": ";", "preRebootNodeLabels": ",",
                   "postRebootNodeLabels": ","}  # fmt: skip


def snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def settings_of_overlay(text: str) -> dict[str, str]:
    doc = yaml.safe_load(text)
    literals = doc["configMapGenerator"][0]["literals"] or []
    env = dict(item.split("=", 1) for item in literals)
    for secret in doc.get("secretGenerator") or []:
        env["REBOOTD_NOTIFY_URL"] = secret["literals"][0].removeprefix("url=")
    return env


def settings_of_values(text: str) -> dict[str, str]:
    doc = yaml.safe_load(text)
    env: dict[str, str] = {}
    for key, value in (doc.get("configuration") or {}).items():
        if isinstance(value, list):
            value = LIST_SEPARATORS[key].join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"REBOOTD_{snake(key).upper()}"] = str(value)
    for entry in doc.get("extraEnvVars") or []:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
    return env


def run_migrate(text: str, tmp_path: Path) -> list[Result]:
    """Both outputs of `rebootd migrate`, each loaded again by `rebootd config`."""
    path = tmp_path / "kured.yaml"
    path.write_text(text)
    results = []
    for output, read in (("kustomize", settings_of_overlay), ("helm", settings_of_values)):
        out, err = io.StringIO(), io.StringIO()
        code = main(["migrate", str(path), "--output", output], environ={}, stdout=out, stderr=err)
        if code != EXIT_OK:
            assert out.getvalue() == "", "a failed migration prints nothing on stdout"
            results.append(Result(code, None, err.getvalue(), {}))
            continue
        env = read(out.getvalue())
        loaded = run_config((), env)
        assert loaded.code == EXIT_OK, f"{output}: the migration's settings do not load: {loaded.text}"
        results.append(Result(code, loaded.config, err.getvalue() + loaded.text + out.getvalue(), env))
    return results


def window_contains(config: JsonObj, when: str) -> bool:
    settings = load_settings(
        environ={
            f"REBOOTD_{name.upper()}": str(config[name])
            for name in ("reboot_days", "start_time", "end_time", "time_zone")
        }
    )
    return settings.window.contains(
        datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(config["time_zone"]))
    )


def past_midnight_as_kured(config: JsonObj) -> None:
    """`sa,su 22:00-06:00`: each half counts toward its own day (kured's timewindow)."""
    # 2026-01-03 is a Saturday.
    inside = ["2026-01-03T23:00", "2026-01-03T03:00", "2026-01-04T03:00", "2026-01-04T23:30"]
    outside = ["2026-01-05T03:00", "2026-01-02T23:00", "2026-01-03T12:00", "2026-01-05T23:00"]
    assert [window_contains(config, t) for t in inside] == [True] * 4
    assert [window_contains(config, t) for t in outside] == [False] * 4


WINDOW = ("--reboot-days=sa", "--reboot-days=su", "--start-time=22:00", "--end-time=06:00")
TEAMS = "teams://group@tenant/altId/groupOwner"
HOOK = "https://hooks.slack.com/services/T1/B1/XYZ"

CASES = [
    # --- a repeated flag appends (reboot days, node labels) -------------------------------------
    Case(
        "repeat-reboot-days",
        "config",
        ("--reboot-days", "mo", "--reboot-days", "tu"),
        expect={"reboot_days": "mon,tue"},
    ),
    Case(
        "repeat-labels",
        "config",
        (
            "--pre-reboot-node-labels=a=1",
            "--pre-reboot-node-labels=b=2",
            "--post-reboot-node-labels=a=2",
            "--post-reboot-node-labels=b=3",
        ),
        expect={"pre_reboot_node_labels": ["a=1", "b=2"], "post_reboot_node_labels": ["a=2", "b=3"]},
    ),
    Case(
        "repeat-reboot-days",
        "ds",
        ("--reboot-days=mo", "--reboot-days=tu,we"),
        expect={"reboot_days": "mon-wed"},
    ),
    Case(
        "repeat-labels",
        "ds",
        ("--pre-reboot-node-labels=a=1", "--pre-reboot-node-labels=b=2"),
        expect={"pre_reboot_node_labels": ["a=1", "b=2"]},
        says="name different keys",
    ),
    Case(
        "repeat-reboot-days",
        "helm",
        values={"configuration": {"rebootDays": ["mo", "tu"]}},
        expect={"reboot_days": "mon,tue"},
    ),
    Case(
        "repeat-labels",
        "helm",
        values={
            "configuration": {"preRebootNodeLabels": ["a=1", "b=2"], "postRebootNodeLabels": ["a=2", "b=3"]}
        },
        expect={"pre_reboot_node_labels": ["a=1", "b=2"], "post_reboot_node_labels": ["a=2", "b=3"]},
    ),
    Case(
        "repeat-env-appends-to-flag",
        "ds",
        ("--reboot-days=mo",),
        {"KURED_REBOOT_DAYS": "we"},
        expect={"reboot_days": "mon,wed"},
    ),
    Case(
        "repeat-selectors",
        "config",
        ("--blocking-pod-selector=app=x,tier=y", "--blocking-pod-selector=name=z"),
        expect={"blocking_pod_selector": ["app=x,tier=y", "name=z"]},
    ),
    # --- an empty reboot-days means never -----------------------------------------------------
    Case(
        "empty-days-never",
        "config",
        ("--reboot-days=",),
        expect={"reboot_days": ""},
        says="no reboot will ever",
    ),
    Case(
        "empty-days-never",
        "config",
        env={"REBOOTD_REBOOT_DAYS": ""},
        expect={"reboot_days": ""},
        says="no reboot will ever",
    ),
    Case(
        "empty-days-never",
        "config",
        env={"KURED_REBOOT_DAYS": ""},
        expect={"reboot_days": ""},
        says="no reboot will ever",
    ),
    Case(
        "empty-days-never", "ds", ("--reboot-days=",), expect={"reboot_days": ""}, says="no reboot will ever"
    ),
    # kured's chart renders no --reboot-days for an empty list: every day
    Case(
        "empty-days-chart",
        "helm",
        values={"configuration": {"rebootDays": []}},
        expect={"reboot_days": "mon-sun"},
    ),
    # --- unknown REBOOTD_* variables, KURED_* variables ---------------------------------------
    Case(
        "unknown-rebootd-var",
        "config",
        env={"REBOOTD_SLACK_HOOK_URL": HOOK},
        error="REBOOTD_SLACK_HOOK_URL: unknown variable; kured's --slack-hook-url is REBOOTD_NOTIFY_URL",
    ),
    Case(
        "unknown-rebootd-var",
        "config",
        env={"REBOOTD_REBOOT_DAY": "mo"},
        error="did you mean REBOOTD_REBOOT_DAYS?",
    ),
    Case("unknown-rebootd-var", "config", env={"REBOOTD_DS_NAME": "kured"}, error="REBOOTD_LOCK_NAME"),
    Case(
        "kured-var-read",
        "config",
        env={"KURED_PERIOD": "30m", "KURED_CONCURRENCY": "2"},
        expect={"period": "30m", "concurrency": 2},
        says="KURED_PERIOD read as REBOOTD_PERIOD",
    ),
    Case(
        "kured-var-loses",
        "config",
        env={"KURED_PERIOD": "30m", "REBOOTD_PERIOD": "10m"},
        expect={"period": "10m"},
        says="KURED_PERIOD ignored: REBOOTD_PERIOD is set and wins",
    ),
    Case(
        "kured-var-ignored-by-kured",
        "config",
        env={"KURED_BLOCKING_POD_SELECTOR": "app=x"},
        error="kured ignores this variable",
    ),
    Case(
        "kured-var-ignored-by-kured",
        "ds",
        env={"KURED_BLOCKING_POD_SELECTOR": "app=x"},
        error="kured ignores this variable",
    ),
    Case(
        "kured-var-overrides-flag", "ds", ("--period=1h",), {"KURED_PERIOD": "30m"}, expect={"period": "30m"}
    ),
    Case(
        "kured-var-in-chart",
        "helm",
        values={"extraEnvVars": [{"name": "KURED_CONCURRENCY", "value": "3"}]},
        expect={"concurrency": 3},
    ),
    Case("kured-var-unitless-duration", "config", env={"KURED_DRAIN_DELAY": "30"}, error="needs a unit"),
    # --- notification URLs apprise does not know ----------------------------------------------
    Case("notify-shoutrrr", "config", ("--notify-url", TEAMS), error="apprise"),
    Case(
        "notify-shoutrrr",
        "config",
        env={"KURED_NOTIFY_URL": "smtp://u:p@mail.example.com:25/?fromAddress=a@b.c"},
        error="mailtos://",
    ),
    Case("notify-shoutrrr", "ds", (f"--notify-url={TEAMS}",), error="apprise"),
    Case("notify-shoutrrr", "helm", values={"configuration": {"notifyUrl": TEAMS}}, error="apprise"),
    Case(
        "notify-quoted",
        "ds",
        ('--notify-url="slack://T1/B1/XYZ"',),
        raw={"REBOOTD_NOTIFY_URL": "slack://T1/B1/XYZ"},
    ),
    Case(
        "notify-slack-hook",
        "ds",
        (f"--slack-hook-url={HOOK}", "--slack-channel=ops", "--slack-username=prod"),
        raw={"REBOOTD_NOTIFY_URL": "slack://T1/B1/XYZ"},
        says="kured v1.23 ignored --slack-channel",
    ),
    Case(
        "notify-slack-hook",
        "config",
        (f"--slack-hook-url={HOOK}",),
        says="--slack-hook-url (kured's) read as --notify-url",
    ),
    Case(
        "notify-slack-hook",
        "config",
        env={"KURED_SLACK_HOOK_URL": HOOK},
        says="KURED_SLACK_HOOK_URL read as REBOOTD_NOTIFY_URL",
    ),
    Case(
        "notify-slack-hook",
        "helm",
        values={"configuration": {"slackHookUrl": HOOK}},
        raw={"REBOOTD_NOTIFY_URL": "slack://T1/B1/XYZ"},
    ),
    Case(
        "notify-over-slack",
        "ds",
        ("--notify-url=slack://A1/B1/C1", f"--slack-hook-url={HOOK}"),
        raw={"REBOOTD_NOTIFY_URL": "slack://A1/B1/C1"},
        says="kured ignored --slack-hook-url",
    ),
    # --- the alert filter: Go RE2 and the empty value ------------------------------------------
    Case("re2", "config", ("--alert-filter-regexp", "[[:alpha:]]+"), error="Go RE2"),
    Case("re2", "ds", (r"--alert-filter-regexp=^Reboot\z",), error="Go RE2"),
    Case("re2", "helm", values={"configuration": {"alertFilterRegexp": "(?U)a+"}}, error="Go RE2"),
    Case(
        "re2",
        "config",
        ("--alert-filter-regexp", "^(RebootRequired|Watchdog)$"),
        expect={"alert_filter_regexp": "^(RebootRequired|Watchdog)$"},
    ),
    Case(
        "re2-empty",
        "config",
        ("--alert-filter-regexp=",),
        expect={"alert_filter_regexp": ""},
        says="no alert blocks reboots",
    ),
    Case(
        "re2-empty",
        "ds",
        ("--alert-filter-regexp=",),
        expect={"alert_filter_regexp": ""},
        says="no alert blocks reboots",
    ),
    # the chart renders no flag for "": no filter, every alert blocks
    Case(
        "re2-empty-chart",
        "helm",
        values={"configuration": {"alertFilterRegexp": ""}},
        expect={"alert_filter_regexp": None},
    ),
    # --- Prometheus: kured's PromQL ALERTS query -----------------------------------------------
    Case(
        "prometheus-query",
        "config",
        ("--prometheus-url", "http://thanos-query:10902"),
        expect={"prometheus_alerts_source": "query", "prometheus_url": "http://thanos-query:10902"},
    ),
    Case(
        "prometheus-query",
        "ds",
        ("--prometheus-url=http://vm:8428", "--alert-firing-only"),
        expect={"prometheus_alerts_source": "query", "alert_firing_only": True},
    ),
    # --- force-reboot and the PDB preflight ----------------------------------------------------
    Case(
        "force-reboot",
        "config",
        ("--force-reboot",),
        expect={"force_reboot": True, "pdb_preflight": True},
        says="REBOOTD_PDB_PREFLIGHT=false",
    ),
    Case(
        "force-reboot",
        "config",
        ("--force-reboot", "--pdb-preflight=false"),
        expect={"force_reboot": True, "pdb_preflight": False},
    ),
    Case(
        "force-reboot",
        "ds",
        ("--force-reboot",),
        expect={"force_reboot": True},
        says="REBOOTD_PDB_PREFLIGHT=false",
    ),
    Case(
        "force-reboot",
        "helm",
        values={"configuration": {"forceReboot": True}},
        expect={"force_reboot": True},
        says="REBOOTD_PDB_PREFLIGHT=false",
    ),
    # the chart renders extraArgs' false as a bare flag: true
    Case(
        "force-reboot-chart-bare",
        "helm",
        values={"extraArgs": {"force-reboot": False}},
        expect={"force_reboot": True},
        says="renders a bare --force-reboot",
    ),
    # --- drain delay, node labels, taint (their order and timing: the integration tests) -------
    Case("drain-delay", "config", ("--drain-delay=30s",), expect={"drain_delay": "30s"}),
    Case("drain-delay", "ds", ("--drain-delay=30s",), expect={"drain_delay": "30s"}),
    Case("drain-delay-unitless", "ds", ("--drain-delay=30",), error="needs a unit"),
    Case("drain-delay-unitless", "helm", values={"configuration": {"drainDelay": 30}}, error="needs a unit"),
    Case(
        "taint",
        "ds",
        ("--prefer-no-schedule-taint=weave.works/kured-node-reboot",),
        expect={"prefer_no_schedule_taint": "weave.works/kured-node-reboot"},
    ),
    Case(
        "taint",
        "helm",
        values={"configuration": {"preferNoScheduleTaint": "weave.works/kured-node-reboot"}},
        expect={"prefer_no_schedule_taint": "weave.works/kured-node-reboot"},
    ),
    Case(
        "labels-keys-differ",
        "config",
        ("--pre-reboot-node-labels=kured=rebooting",),
        expect={"pre_reboot_node_labels": ["kured=rebooting"]},
        says="name different keys",
    ),
    # --- a window past midnight: each half counts toward its own day --------------------------
    Case("window-past-midnight", "config", WINDOW, check=past_midnight_as_kured),
    Case(
        "window-past-midnight",
        "ds",
        (*WINDOW, "--time-zone=Europe/Berlin"),
        expect={"time_zone": "Europe/Berlin"},
        check=past_midnight_as_kured,
    ),
    Case(
        "window-past-midnight",
        "helm",
        values={"configuration": {"rebootDays": ["sa", "su"], "startTime": "10pm", "endTime": "6am"}},
        check=past_midnight_as_kured,
    ),
    Case(
        "window-past-midnight",
        "config",
        env={"KURED_REBOOT_DAYS": "sa,su", "KURED_START_TIME": "22:00", "KURED_END_TIME": "06:00"},
        check=past_midnight_as_kured,
    ),
    # --- metrics host: every address, both families --------------------------------------------
    Case("metrics-host", "config", expect={"metrics_host": ""}),
    Case(
        "metrics-host",
        "ds",
        ("--metrics-host=", "--metrics-port=9090"),
        expect={"metrics_host": "", "metrics_port": 9090},
    ),
    # --- kured's monitoring contract ----------------------------------------------------------
    Case(
        "kured-compat",
        "config",
        ("--annotate-nodes", "--kured-compat"),
        expect={"annotate_nodes": True, "kured_compat": True},
    ),
    Case(
        "kured-compat",
        "ds",
        ("--annotate-nodes",),
        expect={"annotate_nodes": True, "kured_compat": True},
        says="weave.works/kured-* node annotations beside rebootd's",
    ),
    Case("kured-compat", "helm", values={"configuration": {}}, expect={"kured_compat": True}),
    # --- the lock: --ds-name, --lock-annotation, --lock-ttl -------------------------------------
    Case("lock-own-name", "ds", ("--ds-name=kured-gpu",), expect={"lock_name": "kured-gpu"}),
    Case(
        "lock-own-name",
        "ds",
        ("--ds-name=kured", "--lock-annotation=weave.works/kured-node-lock"),
        expect={"lock_name": "rebootd"},
    ),
    Case(
        "lock-own-name",
        "helm",
        values={"configuration": {"lockAnnotation": "example.com/gpu-lock"}},
        expect={"lock_name": "kured-gpu-lock"},
    ),
    Case(
        "lock-own-name",
        "config",
        ("--ds-name=kured-gpu",),
        expect={"lock_name": "kured-gpu"},
        says="--ds-name (kured's) read as --lock-name",
    ),
    Case("lock-ttl-zero", "ds", ("--lock-ttl=0",), expect={"lock_ttl": "5m"}, says="never expire"),
    Case("lock-ttl-zero", "config", ("--lock-ttl=0",), error="kured's 'never expire'"),
    Case("lock-ttl", "ds", ("--lock-ttl=1m",), expect={"lock_ttl": "1m", "lock_renew_interval": "20s"}),
    Case("lock-ttl", "helm", values={"configuration": {"lockTtl": "30m"}}, expect={"lock_ttl": "30m"}),
    # --- the chart's own rendering rules ------------------------------------------------------
    Case(
        "chart-sentinel",
        "helm",
        values={
            "configuration": {
                "rebootSentinel": "/var/run/reboot-required",
                "rebootSentinelCommand": "sh -c 'exit 1'",
            }
        },
        expect={"reboot_sentinel": "/host/var/run/reboot-required", "reboot_sentinel_command": ""},
        says="useRebootSentinelHostPath",
    ),
    Case(
        "chart-sentinel",
        "helm",
        values={
            "configuration": {
                "useRebootSentinelHostPath": False,
                "rebootSentinelCommand": "/usr/bin/needs-restarting -r",
            }
        },
        expect={"reboot_sentinel_command": "/usr/bin/needs-restarting -r"},
    ),
    Case(
        "chart-sentinel",
        "helm",
        values={"configuration": {"rebootSentinel": "/opt/flags/reboot"}},
        error="mounts only the host's /var/run",
    ),
    Case(
        "chart-unknown-key",
        "helm",
        values={"configuration": {"rebootDay": ["mo"]}},
        expect={"reboot_days": "mon-sun"},
        says="did you mean rebootDays?",
    ),
    Case(
        "chart-zero-concurrency",
        "helm",
        values={"configuration": {"concurrency": 0}},
        expect={"concurrency": 1},
    ),
    Case(
        "chart-extra-args",
        "helm",
        values={"extraArgs": {"drain-timeout": "20m", "lock-release-delay": "5m"}},
        expect={"drain_timeout": "20m", "lock_release_delay": "5m"},
    ),
    Case(
        "kured-meaning-of-values",
        "ds",
        ("--concurrency=0", "--drain-grace-period=-30"),
        expect={"concurrency": 1, "drain_grace_period": -1},
        says="kured read 0 as 1",
    ),
    Case("kured-meaning-of-values", "config", ("--concurrency=0",), error="kured read 0 or less as 1"),
    Case(
        "kured-meaning-of-values",
        "config",
        env={"KURED_CONCURRENCY": "0"},
        expect={"concurrency": 1},
        says="kured read 0 as 1",
    ),
    Case(
        "force-reboot-chart-bare",
        "helm",
        values={"configuration": {"forceReboot": "false"}},
        expect={"force_reboot": True},
        says="renders a bare --force-reboot",
    ),
    Case("not-a-kured-flag", "ds", ("--no-such-flag=1",), error="--no-such-flag: not a kured flag"),
    Case(
        "not-a-kured-flag", "config", ("--no-such-flag=1",), error="unrecognized arguments: --no-such-flag=1"
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.point}-{c.source}-{i}" for i, c in enumerate(CASES)])
def test_kured_settings_keep_kureds_meaning_or_fail_naming_the_difference(case: Case, tmp_path: Path) -> None:
    if case.source == "config":
        results = [run_config(case.argv, case.env)]
    elif case.source == "ds":
        results = run_migrate(daemonset(case.argv, case.env), tmp_path)
    else:
        results = run_migrate(yaml.safe_dump(dict(case.values)), tmp_path)
    for result in results:
        if case.error:
            assert result.code != EXIT_OK, f"expected an error naming {case.error!r}"
            assert case.error in result.text, result.text
            continue
        assert result.code == EXIT_OK, result.text
        assert result.config is not None
        assert {k: result.config[k] for k in case.expect} == dict(case.expect)
        assert {k: result.raw.get(k) for k in case.raw} == dict(case.raw)
        if case.says:
            assert case.says in result.text, result.text
        if case.check is not None:
            case.check(result.config)
    if len(results) == 2 and not case.error:
        assert results[0].config == results[1].config, "the overlay and the Helm values mean the same"


def test_every_point_of_the_issue_has_cases_through_each_input() -> None:
    """The table covers each point through the inputs a kured user has."""
    points = {
        "repeat": {"config", "ds", "helm"},
        "empty-days": {"config", "ds", "helm"},
        "unknown-rebootd-var": {"config"},
        "kured-var": {"config", "ds", "helm"},
        "notify": {"config", "ds", "helm"},
        "re2": {"config", "ds", "helm"},
        "prometheus": {"config", "ds"},
        "force-reboot": {"config", "ds", "helm"},
        "drain-delay": {"config", "ds", "helm"},
        "taint": {"ds", "helm"},
        "window-past-midnight": {"config", "ds", "helm"},
        "metrics-host": {"config", "ds"},
        "kured-compat": {"config", "ds"},
        "lock": {"config", "ds", "helm"},
    }
    for prefix, sources in points.items():
        have = {c.source for c in CASES if c.point.startswith(prefix)}
        assert sources <= have, (prefix, sources - have)
