"""kured's settings read as rebootd's: one table of kured's 43 flags (v1.23 `cmd/kured/main.go`)
and one translation used by `KURED_*` variables, `rebootd migrate` and the migration guide.

Rule: a kured setting either becomes the rebootd setting that does the same, with a note when its
meaning changes, or is an error naming why it cannot. Values are translated as kured reads them
(`--lock-ttl=0` never expires, `--slack-hook-url` becomes a slack:// URL, a repeated
`--reboot-days` appends). Pure and a leaf: it knows rebootd's settings by name only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rebootd.durations import format_duration, parse_duration

KURED_PREFIX = "KURED_"
# Kubernetes service links (a Service named kured or rebootd in the namespace): never settings.
SERVICE_LINK = re.compile(
    r"(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)"
)

# kured's annotations (`--annotate-nodes`) and its default lock annotation.
KURED_REBOOT_IN_PROGRESS = "weave.works/kured-reboot-in-progress"
KURED_MOST_RECENT_REBOOT_NEEDED = "weave.works/kured-most-recent-reboot-needed"
KURED_NODE_LOCK = "weave.works/kured-node-lock"
DEFAULT_RENEW = 30.0


@dataclass(frozen=True)
class Flag:
    """One kured flag: its default as kured prints it, the rebootd setting, what changes."""

    name: str
    default: str
    setting: str | None
    change: str = ""
    repeatable: bool = False


FLAGS: tuple[Flag, ...] = (
    Flag("alert-filter-match-only", "false", "alert_filter_match_only"),
    Flag(
        "alert-filter-regexp",
        "",
        "alert_filter_regexp",
        "Go RE2 syntax: a construct Python reads differently ([[:alpha:]], \\z, (?U), {,n}) is refused "
        "with the reason; an empty value matches every alert name, as in kured (then no alert blocks)",
    ),
    Flag("alert-firing-only", "false", "alert_firing_only"),
    Flag(
        "annotate-nodes",
        "false",
        "annotate_nodes",
        "rebootd's own rebootd.io/* annotations; kured's weave.works/kured-reboot-in-progress and "
        "weave.works/kured-most-recent-reboot-needed too with REBOOTD_KURED_COMPAT=true",
    ),
    Flag(
        "blocking-pod-selector",
        "",
        "blocking_pod_selector",
        "repeatable as a flag; in one variable selectors are separated by ';' (a comma means AND)",
        repeatable=True,
    ),
    Flag("concurrency", "1", "concurrency"),
    Flag("drain-delay", "0s", "drain_delay"),
    Flag("drain-grace-period", "-1", "drain_grace_period"),
    Flag("drain-pod-selector", "", "drain_pod_selector"),
    Flag(
        "drain-timeout",
        "0s",
        "drain_timeout",
        "rebootd's default is 15m (kured: 0, wait forever); a timed-out drain uncordons and frees the slot",
    ),
    Flag(
        "ds-name",
        "kured",
        "lock_name",
        "kured's lock is an annotation of its DaemonSet; rebootd's is a Lease: a separate --ds-name "
        "(a separate lock) becomes a separate Lease name",
    ),
    Flag("ds-namespace", "kube-system", "lock_namespace", "the namespace of rebootd's Lease"),
    Flag("end-time", "23:59:59", "end_time"),
    Flag(
        "force-reboot",
        "false",
        "force_reboot",
        "reboots past a failed drain as in kured; the PDB preflight still holds a node a PDB pins before "
        "it takes a slot unless REBOOTD_PDB_PREFLIGHT=false",
    ),
    Flag(
        "lock-annotation",
        KURED_NODE_LOCK,
        "lock_name",
        "the lock is a Lease: a separate --lock-annotation (a separate lock) becomes a separate Lease name",
    ),
    Flag("lock-release-delay", "0s", "lock_release_delay"),
    Flag(
        "lock-ttl",
        "0s",
        "lock_ttl",
        "rebootd's holders renew their record, so the TTL only expires a dead holder; kured's 0 "
        "(never expire) becomes rebootd's default 5m",
    ),
    Flag("log-format", "text", "log_format"),
    Flag("message-template-drain", "Draining node %s", "message_template_drain"),
    Flag("message-template-reboot", "Rebooting node %s", "message_template_reboot"),
    Flag(
        "message-template-uncordon",
        "Node %s rebooted & uncordoned successfully!",
        "message_template_uncordon",
    ),
    Flag("metrics-host", "", "metrics_host", "empty listens on every address, IPv4 and IPv6, as in kured"),
    Flag("metrics-port", "8080", "metrics_port"),
    Flag("node-id", "", "node_id"),
    Flag(
        "notify-url",
        "",
        "notify_url",
        "apprise URLs instead of shoutrrr's: checked at start against apprise's schemas",
    ),
    Flag("period", "1h0m0s", "period", "rebootd's default is 1m (kured: 1h)"),
    Flag("post-reboot-node-labels", "", "post_reboot_node_labels", repeatable=True),
    Flag("pre-reboot-node-labels", "", "pre_reboot_node_labels", repeatable=True),
    Flag("prefer-no-schedule-taint", "", "prefer_no_schedule_taint"),
    Flag(
        "prometheus-url",
        "",
        "prometheus_url",
        "queries ALERTS as kured does (REBOOTD_PROMETHEUS_ALERTS_SOURCE=query, the default); "
        "REBOOTD_PROMETHEUS_QUERY adds any PromQL expression that blocks while it has a result",
    ),
    Flag("reboot-command", "/bin/systemctl reboot", "reboot_command"),
    Flag("reboot-days", "su,mo,tu,we,th,fr,sa", "reboot_days", "", repeatable=True),
    Flag("reboot-delay", "0s", "reboot_delay"),
    Flag("reboot-method", "command", "reboot_method"),
    Flag("reboot-sentinel", "/var/run/reboot-required", "reboot_sentinel"),
    Flag("reboot-sentinel-command", "", "reboot_sentinel_command"),
    Flag("reboot-signal", "39", "reboot_signal"),
    Flag("skip-wait-for-delete-timeout", "0", "skip_wait_for_delete_timeout"),
    Flag(
        "slack-channel",
        "",
        "notify_url",
        "deprecated in kured, and ignored by kured v1.23 (the webhook's own channel is used): not "
        "carried into the slack:// URL; append /#channel to REBOOTD_NOTIFY_URL to choose one",
    ),
    Flag(
        "slack-hook-url",
        "",
        "notify_url",
        "deprecated in kured: https://hooks.slack.com/services/A/B/C becomes slack://A/B/C",
    ),
    Flag(
        "slack-username",
        "kured",
        "notify_url",
        "deprecated in kured, and ignored by kured v1.23 (the webhook's own name is used): not "
        "carried into the slack:// URL; write slack://name@A/B/C to choose one",
    ),
    Flag("start-time", "0:00", "start_time"),
    Flag("time-zone", "UTC", "time_zone"),
)
BY_NAME: Mapping[str, Flag] = {f.name: f for f in FLAGS}
# kured's time.Duration flags: Go syntax only (a bare number other than 0 is refused by kured).
DURATION_FLAGS = frozenset(
    {"drain-delay", "drain-timeout", "reboot-delay", "period", "lock-ttl", "lock-release-delay"}
)
_GO_DURATION = re.compile(r"[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)")
# kured's LoadFromEnv has no case for stringArray flags: "Unsupported flag type", the variable is
# ignored (v1.23).
ENV_IGNORED = frozenset({"blocking-pod-selector"})


def env_ignored_error(name: str) -> str:
    variable = KURED_PREFIX + name.upper().replace("-", "_")
    return (
        f"{variable}: kured ignores this variable (its --{name} is a string array, which kured's "
        "LoadFromEnv does not read), so it blocked nothing; give the selectors as "
        "REBOOTD_BLOCKING_POD_SELECTOR (separated by ';') if you mean them"
    )


# kured flags that rebootd reads under another name (a hint for a misspelled REBOOTD_* variable).
RENAMED = {
    f.name.replace("-", "_"): f.setting for f in FLAGS if f.setting and f.setting != f.name.replace("-", "_")
}


@dataclass
class Translation:
    """rebootd settings (field -> value as a REBOOTD_* variable would carry it), a note per
    setting whose meaning changes, and errors for what cannot be translated."""

    values: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def note(self, setting: str, text: str) -> None:
        self.notes.setdefault(setting, []).append(text)


def _strip_quotes(text: str) -> str:
    """kured's stripQuotes (notify URLs): one pair of surrounding quotes is removed."""
    if len(text) > 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _dns_name(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63] or "kured"


def slack_url(*, hook: str) -> str:
    """kured's validateNotificationURL for `--slack-hook-url`: https://hooks.slack.com/services/A/B/C
    becomes slack://A/B/C (kured v1.23 carries neither --slack-username nor --slack-channel)."""
    path = urlsplit(_strip_quotes(hook)).path.replace("/services/", "", 1).strip("/")
    if len(path.split("/")) != 3:
        raise ValueError(
            f"--slack-hook-url={hook}: not a Slack webhook URL (expected "
            "https://hooks.slack.com/services/A/B/C); kured sent no notification with it"
        )
    return f"slack://{path}"


def _lock_ttl(text: str, out: Translation) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        out.errors.append(f"--lock-ttl={text}: {exc}")
        return
    if seconds == 0:
        out.note("lock_ttl", "kured --lock-ttl=0 (never expire): rebootd renews live holders, keeps 5m")
        return
    out.values["lock_ttl"] = format_duration(seconds)
    if seconds < 3 * DEFAULT_RENEW:
        out.values["lock_renew_interval"] = format_duration(seconds / 3)
    out.note(
        "lock_ttl",
        f"kured --lock-ttl={text} expired even a live holder; rebootd's only expires a holder "
        "that stopped renewing",
    )


def translate(given: Mapping[str, Sequence[str]]) -> Translation:
    """kured flags (name without dashes -> every value given, in order) as rebootd settings."""
    out = Translation()
    for name in given:
        if name not in BY_NAME and name not in {"help", "h"}:
            out.errors.append(f"--{name}: not a kured flag (kured v1.23 has {len(FLAGS)})")
    last = {name: values[-1] for name, values in given.items() if values}
    for name in sorted(DURATION_FLAGS & set(last)):
        if not _GO_DURATION.fullmatch(last[name].strip()):
            out.errors.append(
                f"--{name}={last[name]}: kured refuses this value (a Go duration needs a unit, such as "
                f"{last[name].strip()}s or 1h30m) and would not start; rebootd would read it differently, "
                "so give it with a unit"
            )

    def plain(name: str) -> None:
        flag = BY_NAME[name]
        assert flag.setting is not None
        if flag.repeatable:  # kured appends: stringArray (selectors) or comma lists
            sep = ";" if name == "blocking-pod-selector" else ","
            out.values[flag.setting] = sep.join(given[name])
        else:
            out.values[flag.setting] = last[name]
        if flag.change and name not in {"drain-timeout", "period"}:
            out.note(flag.setting, f"kured --{name}: {flag.change}")

    for name in given:
        if name not in BY_NAME or name in {
            "ds-name",
            "lock-annotation",
            "lock-ttl",
            "slack-hook-url",
            "slack-channel",
            "slack-username",
            "notify-url",
            "alert-filter-regexp",
            "node-id",
        }:
            continue
        plain(name)
    for name, floor, meaning in (
        ("concurrency", 1, "kured read {v} as 1 (one node at a time)"),
        ("drain-grace-period", -1, "kured and kubectl drain read {v} as -1 (the pod's own grace period)"),
    ):
        setting = BY_NAME[name].setting
        assert setting is not None
        with contextlib.suppress(ValueError):
            if name in last and int(last[name]) < floor:
                out.values[setting] = str(floor)
                out.note(setting, f"--{name}={last[name]}: " + meaning.format(v=last[name]))
    if last.get("reboot-sentinel-command") and "reboot_sentinel" in out.values:
        # kured's NewRebootChecker: a sentinel command replaces the file
        del out.values["reboot_sentinel"]
        out.note(
            "reboot_sentinel_command",
            "kured ignored --reboot-sentinel because --reboot-sentinel-command is given; so does rebootd",
        )
    if "node-id" in last and not last["node-id"].startswith("$("):
        out.values["node_id"] = last["node-id"]
    if "alert-filter-regexp" in last:
        out.values["alert_filter_regexp"] = last["alert-filter-regexp"]
        if last["alert-filter-regexp"] == "":
            out.note("alert_filter_regexp", "kured: an empty filter matches every alert, so no alert blocks")
    ds_name = last.get("ds-name", "kured")
    annotation = last.get("lock-annotation", KURED_NODE_LOCK)
    if ds_name != "kured" or annotation != KURED_NODE_LOCK:  # kured's own lock: rebootd's default Lease
        name = _dns_name(ds_name)
        if annotation != KURED_NODE_LOCK:
            name = _dns_name(f"{ds_name}-{annotation.rpartition('/')[2]}")
        out.values["lock_name"] = name
        out.note(
            "lock_name",
            f"kured's lock was the annotation {annotation} of DaemonSet {ds_name}; "
            f"rebootd's is the Lease {name}",
        )
    if "lock-ttl" in last:
        _lock_ttl(last["lock-ttl"], out)
    notify = _strip_quotes(last.get("notify-url", ""))
    hook = last.get("slack-hook-url", "")
    if notify:
        out.values["notify_url"] = notify
        out.note("notify_url", "kured --notify-url is a shoutrrr URL; rebootd's are apprise URLs")
        if hook:
            out.note(
                "notify_url", "kured ignored --slack-hook-url because --notify-url is set; so does rebootd"
            )
    elif hook:
        try:
            out.values["notify_url"] = slack_url(hook=hook)
            out.note("notify_url", "from kured's deprecated --slack-hook-url")
            if "slack-channel" in last or "slack-username" in last:
                out.note(
                    "notify_url",
                    "kured v1.23 ignored --slack-channel/--slack-username (the webhook's own channel and "
                    "name were used); so does this URL: append /#channel or write name@ to choose them",
                )
        except ValueError as exc:
            out.errors.append(str(exc))
    elif "slack-channel" in last or "slack-username" in last:
        out.note("notify_url", "kured's --slack-channel/--slack-username do nothing without --slack-hook-url")
    return out


def env_flag_values(environ: Mapping[str, str]) -> dict[str, list[str]]:
    """The kured flags set by `KURED_<FLAG>` variables (as kured's LoadFromEnv reads them)."""
    found: dict[str, list[str]] = {}
    for key, value in environ.items():
        if not key.startswith(KURED_PREFIX):
            continue
        name = key.removeprefix(KURED_PREFIX).lower().replace("_", "-")
        if name in BY_NAME and name not in ENV_IGNORED:
            found[name] = [value]
    return found
