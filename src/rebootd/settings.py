"""Every rebootd option: one pydantic-settings model, read from `REBOOTD_*` env vars and CLI flags.

Rule: configuration is validated completely before anything runs. A bad value or a contradiction
is reported as one `Problem` per option (env var, flag, the value given, what is expected) and the
process exits 2; nothing is silently replaced by a default. Secrets (notify URLs, Prometheus
credentials) are `SecretStr` and never printed. Flags win over env vars. A leaf module: it
imports only other leaves (`durations`, `schedule`, `selectors`, `kured`, `re2compat`, `notifyurls`).
"""

from __future__ import annotations

import difflib
import re
import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from rebootd import kured
from rebootd.durations import format_duration, parse_duration
from rebootd.notifyurls import notify_url_problem
from rebootd.re2compat import Re2Difference, compile_re2
from rebootd.schedule import Window, format_days, parse_days, parse_time_of_day, parse_time_zone
from rebootd.selectors import SelectorError, parse_label_selector

ENV_PREFIX = "REBOOTD_"
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_URL_START = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


# --- value parsers: each raises ValueError whose text says what is expected -------------------


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 1h30m, 500ms, or a number of seconds")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        return float(value)
    return value


def _share_of(value: Any, *, minimum: int, too_low: str = "") -> Any:
    """A number of nodes (an integer >= `minimum`) or a share of the cluster's nodes ("10%": more
    than 0%, at most 100%); resolved against the node count when used (`lockstate.resolve_share`)."""
    expected = (
        f"expected a number of nodes (at least {minimum}) or a percentage of the nodes "
        "such as 10% (more than 0%, at most 100%)"
    )
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            digits = text[:-1].strip()
            if not digits.isdecimal() or not 0 < int(digits) <= 100:
                raise ValueError(expected)
            return f"{int(digits)}%"
        if not text.removeprefix("-").isdecimal():  # what int() reads: not "--2", not "²"
            raise ValueError(expected)
        value = int(text)
    if isinstance(value, int):
        if value < minimum:
            raise ValueError(f"{expected} ({too_low})" if too_low else expected)
        return value
    raise ValueError(expected)


def _concurrency(value: Any) -> Any:
    return _share_of(value, minimum=1, too_low="kured read 0 or less as 1")


def _zone_concurrency(value: Any) -> Any:
    return _share_of(value, minimum=0)


def _days(value: Any) -> Any:
    """A comma list; a repeated flag appends (kured's `--reboot-days mo --reboot-days tu`)."""
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    return parse_days(value) if isinstance(value, str) else value


def _time_of_day(value: Any) -> Any:
    return parse_time_of_day(value) if isinstance(value, str) else value


def _time_zone(value: str) -> str:
    parse_time_zone(value)
    return value


def _regexp(value: Any) -> Any:
    """A Go RE2 pattern as kured reads it. Unset is no filter; an explicit empty pattern matches
    every name (kured's `--alert-filter-regexp=""`)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return compile_re2(value)
        except Re2Difference as exc:
            raise ValueError(f"expected a Go RE2 pattern that Python reads the same way: {exc}") from None
        except re.error as exc:
            raise ValueError(f"expected a valid regular expression ({exc})") from None
    return value


def _selector(value: str) -> str:
    try:
        parse_label_selector(value)
    except SelectorError as exc:
        raise ValueError(f"expected a label selector such as app=db,tier!=cache ({exc})") from None
    return value


def _selectors(value: Any) -> Any:
    """Repeatable selectors; in one env var they are separated by `;` (a comma means AND)."""
    if isinstance(value, str):
        value = [part for part in value.split(";") if part.strip()]
    if isinstance(value, list | tuple):
        return tuple(_selector(str(item).strip()) for item in value)
    return value


def _labels(value: Any) -> Any:
    """`key=value` pairs, comma-separated; each must be a valid label."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):  # a repeated flag appends, each a comma list (kured)
        pairs = []
        for item in (part for chunk in value for part in str(chunk).split(",") if part.strip()):
            key, sep, val = str(item).strip().partition("=")
            if not sep or not key:
                raise ValueError(f"expected key=value label pairs, comma-separated (got {item!r})")
            try:
                parse_label_selector(f"{key}={val}")
            except SelectorError as exc:
                raise ValueError(f"expected valid key=value labels ({exc})") from None
            pairs.append(f"{key}={val}")
        return tuple(pairs)
    return value


def _command(value: Any) -> Any:
    """A command line, split like a POSIX shell would (no shell is ever run)."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"expected a command line ({exc})") from None
    if isinstance(value, list):
        return tuple(value)
    return value


def _notify_urls(value: Any) -> Any:
    """Apprise URLs separated by whitespace, or by commas that start a new `scheme://`."""
    if isinstance(value, str):
        value = [u for chunk in _URL_START.split(value) for u in chunk.split() if u]
    if isinstance(value, list | tuple):
        urls = []
        for item in value:
            raw = item.get_secret_value() if isinstance(item, SecretStr) else str(item)
            parts = urlsplit(raw)
            if (
                not parts.scheme
                or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme)
                or "://" not in raw
            ):
                raise ValueError("expected notification URLs such as slack://T/B/C or json://host/path")
            problem = notify_url_problem(raw)
            if problem is not None:
                raise ValueError(f"expected apprise URLs: {problem}")
            urls.append(SecretStr(raw))
        return tuple(urls)
    return value


def _http_url(value: str) -> str:
    if value == "":
        return value
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an http(s) URL such as http://prometheus.monitoring:9090")
    return value


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        raise ValueError("expected a DNS-1123 label (lowercase letters, digits, '-', at most 63)")
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError("expected a DNS-1123 subdomain (lowercase letters, digits, '-', '.')")
    return value


def _label_key(value: str) -> str:
    if value == "":
        return value
    try:
        parse_label_selector(value)
    except SelectorError as exc:
        raise ValueError(f"expected a label/taint key such as rebootd.io/reboot ({exc})") from None
    if any(ch in value for ch in "=!, "):
        raise ValueError("expected a single label/taint key such as rebootd.io/reboot")
    return value


def _signal_number(value: int) -> int:
    if not 1 <= value <= signal.SIGRTMAX:
        raise ValueError(f"expected a signal number from 1 to {int(signal.SIGRTMAX)} (SIGRTMIN+5 is 39)")
    return value


def _template(value: str) -> str:
    try:
        value.replace("%s", "{node}").format(node="n", reason="r")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"expected a template with {{node}} / {{reason}} or kured's %s ({exc!s})") from None
    return value


Duration = Annotated[float, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]
Days = Annotated[
    frozenset[int], NoDecode, BeforeValidator(_days), PlainSerializer(format_days, return_type=str)
]
TimeOfDay = Annotated[time, BeforeValidator(_time_of_day), PlainSerializer(time.isoformat, return_type=str)]
Selectors = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_selectors)]
Labels = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_labels)]
Command = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(_command), PlainSerializer(shlex.join, return_type=str)
]
NotifyUrls = Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(_notify_urls)]
Regexp = Annotated[
    re.Pattern[str] | None,
    BeforeValidator(_regexp),
    PlainSerializer(lambda p: None if p is None else p.pattern, return_type=str | None),
]
NonNegativeInt = Annotated[int, Field(ge=0)]
# A number of nodes, or a share of the cluster's nodes ("10%").
Concurrency = Annotated[int | str, BeforeValidator(_concurrency)]
ZoneConcurrency = Annotated[int | str, BeforeValidator(_zone_concurrency)]


class Settings(BaseSettings):
    """All options. Field descriptions are the reference documentation (docs/configuration.md)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True, hide_input_in_errors=False
    )

    # --- identity and sentinel -----------------------------------------------------------------
    node_id: str = Field(
        "", description="Name of the Node this daemon runs on (from the downward API). Required by `run`."
    )
    pod_uid: str = Field(
        "",
        description=(
            "UID of this daemon's Pod (from the downward API): written with each slot grant so that a "
            "second daemon for the same node never acts on another's grant. Empty: a random id per start."
        ),
    )
    boot_id_file: Path = Field(
        Path("/proc/sys/kernel/random/boot_id"),
        description=(
            "The host's boot id (not namespaced: the same inside the container); a reboot is proven by "
            "its change, not by the Node's reported bootID alone."
        ),
    )
    reboot_sentinel: Path = Field(
        Path("/var/run/reboot-required"), description="File whose existence means a reboot is required."
    )
    reboot_sentinel_command: Command = Field(
        (),
        description="Command whose exit status 0 means a reboot is required; replaces the sentinel file.",
    )
    reboot_sentinel_command_timeout: Duration = Field(
        30.0, description="Time limit for one run of the sentinel command."
    )
    period: Duration = Field(60.0, description="How often the sentinel is checked.")

    # --- maintenance window --------------------------------------------------------------------
    reboot_days: Days = Field(
        frozenset(range(7)), description="Days reboots may start: names (mo,tu,...) or ranges (mo-fr)."
    )
    start_time: TimeOfDay = Field(time(0, 0), description="Window start (HH:MM[:SS], 5pm, 17).")
    end_time: TimeOfDay = Field(
        time(23, 59, 59), description="Window end, inclusive to the end of its second; before start = wraps."
    )
    time_zone: Annotated[str, AfterValidator(_time_zone)] = Field(
        "UTC", description="Time zone of the window: UTC, Local or an IANA name."
    )

    # --- lock ----------------------------------------------------------------------------------
    lock_namespace: Annotated[str, AfterValidator(_dns_label)] = Field(
        "kube-system", description="Namespace of the coordination.k8s.io/v1 Lease used as the lock."
    )
    lock_name: Annotated[str, AfterValidator(_dns_subdomain)] = Field(
        "rebootd", description="Name of the Lease used as the lock."
    )
    lock_ttl: Duration = Field(
        300.0, description="A holder whose record has not changed for this long is considered dead."
    )
    lock_renew_interval: Duration = Field(
        30.0, description="How often a holder renews its record; at most a third of the lock TTL."
    )
    lock_release_delay: Duration = Field(
        0.0, description="Keep the slot closed this long after a node finishes (throttles the rollout)."
    )
    concurrency: Concurrency = Field(
        1,
        description=(
            "How many nodes may be disrupted at once: a number, or a share of the nodes such as "
            "10% (rounded down, at least 1; counted again whenever a node starts waiting)."
        ),
    )
    zone_concurrency: ZoneConcurrency = Field(
        0,
        description=(
            "How many nodes per zone may be disrupted at once (0 = no per-zone limit); a share such "
            "as 10% counts the nodes of the node's own zone (rounded down, at least 1)."
        ),
    )
    zone_label: Annotated[str, AfterValidator(_label_key)] = Field(
        "topology.kubernetes.io/zone", description="Node label that names a node's zone."
    )
    max_unavailable_nodes: NonNegativeInt | None = Field(
        None,
        description="Take no slot while this many nodes are already unavailable (NotReady or unschedulable).",
    )
    max_unavailable_nodes_per_zone: NonNegativeInt | None = Field(
        None, description="The same budget within the node's own zone."
    )

    # --- drain ---------------------------------------------------------------------------------
    drain_grace_period: int = Field(
        -1, ge=-1, description="Seconds each pod gets to terminate; -1 uses the pod's own grace period."
    )
    drain_timeout: Duration = Field(
        900.0,
        description="Give up a drain after this long: uncordon, free the slot, retry later (0 = never).",
    )
    skip_wait_for_delete_timeout: NonNegativeInt = Field(
        0, description="Do not wait for pods terminating for longer than this many seconds (0 = always wait)."
    )
    drain_pod_selector: Annotated[str, AfterValidator(_selector)] = Field(
        "", description="Only evict pods matching this label selector (empty = all)."
    )
    drain_delay: Duration = Field(
        0.0,
        description=(
            "Wait this long after taking the slot, before cordoning and draining (kured: after the "
            "pre-reboot labels, before the cordon)."
        ),
    )
    force_reboot: bool = Field(False, description="Reboot even if the drain failed or timed out.")
    pdb_preflight: bool = Field(
        True,
        description=(
            "Before taking a slot, wait while a PodDisruptionBudget would refuse an eviction from this "
            "node. false: take the slot anyway (kured had no preflight; with force-reboot the node "
            "reboots after drain-timeout even though the PDB refused)."
        ),
    )

    # --- reboot --------------------------------------------------------------------------------
    reboot_method: Literal["command", "signal"] = Field(
        "command", description="How to reboot: run the reboot command, or send reboot-signal to PID 1."
    )
    reboot_command: Command = Field(
        ("/bin/systemctl", "reboot"), description="Command that reboots the host (method `command`)."
    )
    reboot_nsenter: bool = Field(
        True,
        description="Run the reboot and sentinel commands in the host's mount namespace (nsenter, PID 1).",
    )
    reboot_signal: Annotated[int, AfterValidator(_signal_number)] = Field(
        39, description="Signal sent to PID 1 by method `signal` (39 = SIGRTMIN+5: systemd reboot)."
    )
    reboot_delay: Duration = Field(0.0, description="Wait this long after the drain before rebooting.")
    boot_timeout: Duration = Field(
        900.0,
        description="A node not back (new bootID and Ready) this long after its reboot halts the rollout.",
    )
    recovery_timeout: Duration = Field(
        900.0,
        description="Disrupted workloads not healthy this long after the node is back halt the rollout.",
    )
    min_reboot_interval: Duration = Field(
        3600.0,
        description="A node that asks again sooner than this after its last reboot waits (reboot loop).",
    )

    # --- blockers ------------------------------------------------------------------------------
    prometheus_url: Annotated[str, AfterValidator(_http_url)] = Field(
        "", description="Prometheus to ask for active alerts; any active alert blocks reboots."
    )
    prometheus_alerts_source: Literal["query", "api"] = Field(
        "query",
        description=(
            "How active alerts are read: `query` runs the PromQL query ALERTS (kured's way; works on "
            "Thanos, Mimir, VictoriaMetrics), `api` reads /api/v1/alerts (Prometheus itself)."
        ),
    )
    prometheus_query: str = Field(
        "",
        description=(
            "A PromQL expression that blocks reboots while its result is not empty (needs prometheus-url)."
        ),
    )
    prometheus_bearer_token: SecretStr | None = Field(None, description="Bearer token for Prometheus.")
    prometheus_username: str = Field("", description="Basic-auth user name for Prometheus.")
    prometheus_password: SecretStr | None = Field(None, description="Basic-auth password for Prometheus.")
    prometheus_ca_file: Path | None = Field(None, description="CA bundle to verify Prometheus' certificate.")
    alert_filter_regexp: Regexp = Field(None, description="Alert names matching this are ignored.")
    alert_filter_match_only: bool = Field(
        False, description="Invert the filter: only alerts matching alert-filter-regexp block."
    )
    alert_firing_only: bool = Field(False, description="Only firing alerts block (pending ones do not).")
    blocking_pod_scope: Literal["node", "cluster"] = Field(
        "node", description="Where blocking pods count: on this node (kured) or anywhere in the cluster."
    )
    blocking_pod_selector: Selectors = Field(
        (),
        description="Any pod matching one of these selectors blocks reboots (repeat the flag; `;` in env).",
    )

    # --- node marks ----------------------------------------------------------------------------
    annotate_nodes: bool = Field(False, description="Record the phase and its times as node annotations.")
    pre_reboot_node_labels: Labels = Field(
        (),
        description=(
            "Labels set on the node once it has the slot, before the drain delay and the cordon (k=v,...)."
        ),
    )
    post_reboot_node_labels: Labels = Field(
        (),
        description=(
            "Labels set on the node after the uncordon that follows its reboot, or after a failed "
            "drain put it back (k=v,...)."
        ),
    )
    prefer_no_schedule_taint: Annotated[str, AfterValidator(_label_key)] = Field(
        "",
        description=(
            "Taint key set (PreferNoSchedule) while the node needs a reboot, in its window and "
            "unblocked, waits for another node to give back the slot; removed when it takes the "
            "slot, no longer needs a reboot, or its daemon stops (empty = none)."
        ),
    )

    # --- notifications -------------------------------------------------------------------------
    notify_url: NotifyUrls = Field((), description="Apprise notification URLs (space-separated).")
    message_template_drain: Annotated[str, AfterValidator(_template)] = Field(
        "Draining node {node}", description="Message sent when a node is drained ({node}; kured's %s works)."
    )
    message_template_reboot: Annotated[str, AfterValidator(_template)] = Field(
        "Rebooting node {node}", description="Message sent when a node is rebooted."
    )
    message_template_uncordon: Annotated[str, AfterValidator(_template)] = Field(
        "Node {node} rebooted and uncordoned", description="Message sent when a node is back in service."
    )
    message_template_halt: Annotated[str, AfterValidator(_template)] = Field(
        "Reboot rollout halted at node {node}: {reason}", description="Message sent when the rollout halts."
    )
    message_template_block: Annotated[str, AfterValidator(_template)] = Field(
        "Reboot of node {node} is blocked: {reason}", description="Message sent when a reboot is blocked."
    )

    # --- process -------------------------------------------------------------------------------
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file; unset = in-cluster service account, then $KUBECONFIG."
    )
    metrics_host: str = Field(
        "",
        description=(
            "Address the metrics and health server binds; empty: every address, IPv4 and IPv6 (kured)."
        ),
    )
    metrics_port: int = Field(8080, ge=1, le=65535, description="Port of the metrics and health server.")
    log_format: Literal["text", "json"] = Field("text", description="Log format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    kured_compat: bool = Field(
        False,
        description=(
            "Also publish kured's names during a migration: the kured_reboot_required gauge and, with "
            "annotate-nodes, the weave.works/kured-* node annotations."
        ),
    )

    @field_validator(
        "log_level",
        "log_format",
        "reboot_method",
        "blocking_pod_scope",
        "prometheus_alerts_source",
        mode="before",
    )
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    # Values a field's type accepts that cannot work, reported with the type errors.
    @field_validator("boot_timeout", "recovery_timeout", "reboot_sentinel_command_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a positive duration (0 would fail at once, not mean 'never')")
        return value

    @field_validator("reboot_sentinel", "boot_id_file", "prometheus_ca_file", "kubeconfig", mode="before")
    @classmethod
    def _non_empty_path(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():  # Path("") would be "." (the working directory)
            raise ValueError("expected a file path, not an empty value (unset the variable instead)")
        return value

    @field_validator("prometheus_bearer_token")
    @classmethod
    def _non_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("expected a non-empty token (unset the variable instead)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        # Only explicit values: `load_settings` merges env vars and flags itself so that the
        # environment is injectable in tests and flags win over env vars.
        return (init_settings,)

    # --- derived views ---------------------------------------------------------------------------
    @property
    def tz(self) -> tzinfo:
        return parse_time_zone(self.time_zone)

    @property
    def window(self) -> Window:
        return Window(days=self.reboot_days, start=self.start_time, end=self.end_time, tz=self.tz)

    def redacted(self) -> dict[str, Any]:
        """Effective configuration for display: JSON-friendly, secrets as `**********`."""
        data = self.model_dump(mode="json")
        for name, value in data.items():
            if name == "prometheus_url" and value:
                data[name] = redact_url(value)
        return data


SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
)


def redact_url(url: str) -> str:
    """Hide the password part of `scheme://user:password@host/...`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


# --- loading and reporting -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One bad option, reported as `REBOOTD_X (--x): got 'v': expected ...`."""

    field: str
    given: str
    expected: str
    variable: str = ""  # a variable that is no setting of ours (unknown REBOOTD_*, KURED_*)

    def render(self) -> str:
        if self.variable:
            return f"{self.variable}: {self.expected}"
        return f"{env_name(self.field)} ({flag_name(self.field)}): got {self.given}: {self.expected}"


class InvalidConfig(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(p.render() for p in problems))
        self.problems = tuple(problems)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source reading an injected mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], *, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=False, env_prefix=ENV_PREFIX)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


_TYPE_EXPECTATIONS = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false",
    "literal_error": None,  # pydantic's own text lists the choices
    "greater_than_equal": None,
    "less_than_equal": None,
    "extra_forbidden": "unknown option",
}


def _given(field: str, raw: Mapping[str, Any]) -> str:
    if field in SECRET_FIELDS or field == "notify_url":
        return "'**********'"
    value = raw.get(field, "")
    if isinstance(value, list | tuple):
        value = " ".join(map(str, value))
    text = str(value)
    if field == "prometheus_url":
        text = redact_url(text)
    return repr(text[:200])


# Where a value rebootd refuses meant something in kured: said with the error.
_KURED_MEANT = {
    ("drain_grace_period", "greater_than_equal"): (
        "kured and kubectl drain read any negative value as -1, the pod's own grace period"
    ),
}


def _problems_from(error: ValidationError, raw: Mapping[str, Any]) -> list[Problem]:
    problems: dict[str, Problem] = {}
    for err in error.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        if field in problems:
            continue
        expected = _TYPE_EXPECTATIONS.get(err["type"]) or str(err["msg"])
        expected = expected.removeprefix("Value error, ")
        if expected.startswith("Input should be"):
            expected = "expected " + expected.removeprefix("Input should be ").rstrip(".")
        if (field, err["type"]) in _KURED_MEANT:
            expected += f" ({_KURED_MEANT[field, err['type']]})"
        problems[field] = Problem(field=field, given=_given(field, raw), expected=expected)
    return list(problems.values())


def _contradictions(settings: Settings, raw: Mapping[str, Any]) -> list[Problem]:
    explicit = settings.model_fields_set
    found: list[Problem] = []

    def add(field: str, expected: str) -> None:
        found.append(Problem(field=field, given=_given(field, raw), expected=expected))

    if {"reboot_sentinel", "reboot_sentinel_command"} <= explicit and settings.reboot_sentinel_command:
        add(
            "reboot_sentinel_command",
            "give either a sentinel file or a sentinel command, not both (kured silently ignored the file)",
        )
    if settings.start_time == settings.end_time:
        add(
            "end_time",
            "expected an end time different from start-time (the window would be empty; kured's was "
            "that one second each day)",
        )
    if settings.lock_ttl == 0:
        add(
            "lock_ttl",
            "0 is kured's 'never expire'; rebootd's holders renew their record, so the TTL only expires "
            "a dead holder: leave it unset (5m) or give at least 3 x lock-renew-interval",
        )
    elif settings.lock_ttl < 3 * settings.lock_renew_interval:
        minimum = format_duration(3 * settings.lock_renew_interval)
        add("lock_ttl", f"expected at least 3 x lock-renew-interval ({minimum})")
    if settings.lock_renew_interval <= 0:
        add("lock_renew_interval", "expected a positive duration")
    if settings.period <= 0:
        add("period", "expected a positive duration")
    zone_limit, limit = settings.zone_concurrency, settings.concurrency
    if isinstance(zone_limit, int) and isinstance(limit, int) and zone_limit > limit:
        add("zone_concurrency", f"expected at most concurrency ({limit})")
    if settings.alert_filter_match_only and settings.alert_filter_regexp is None:
        add("alert_filter_match_only", "expected alert-filter-regexp to be set as well")
    if settings.reboot_method == "command" and not settings.reboot_command:
        add("reboot_command", "expected a command for reboot-method=command")
    if bool(settings.prometheus_username) != (settings.prometheus_password is not None):
        add("prometheus_username", "expected prometheus-username and prometheus-password together")
    if settings.prometheus_bearer_token is not None and settings.prometheus_password is not None:
        add("prometheus_bearer_token", "give either a bearer token or basic auth for Prometheus, not both")
    return found


# Variables of the project's own test harness, not settings.
_HARNESS_VARIABLES = frozenset({"REBOOTD_CHAOS_SEEDS", "REBOOTD_CHAOS_PARALLEL"})


def _unknown_variables(environ: Mapping[str, str]) -> list[Problem]:
    """Every `REBOOTD_*` variable that names no setting: an error, with a "did you mean"."""
    known = {env_name(name): name for name in Settings.model_fields}
    problems = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in _HARNESS_VARIABLES:
            continue
        rest = upper.removeprefix(ENV_PREFIX)
        if kured.SERVICE_LINK.fullmatch(rest):
            continue  # a Kubernetes service link of a Service named rebootd
        renamed = kured.RENAMED.get(rest.lower())
        close = difflib.get_close_matches(upper, list(known), n=1, cutoff=0.75)
        if renamed is not None:
            hint = f"kured's --{rest.lower().replace('_', '-')} is {env_name(renamed)} in rebootd"
        elif close:
            hint = f"did you mean {close[0]}?"
        else:
            hint = "`rebootd run --help` lists every variable"
        problems.append(Problem(field="", given="", expected=f"unknown variable; {hint}", variable=key))
    return problems


def _kured_variables(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str], list[Problem]]:
    """`KURED_<FLAG>` variables read as the matching rebootd settings (REBOOTD_* wins): the
    variables to add, one warning each (values never shown: they may be secrets), and errors."""
    given = kured.env_flag_values(environ)
    if not given:
        return {}, [], []
    translation = kured.translate(given)
    upper = {key.upper() for key in environ}
    added: dict[str, str] = {}
    warnings: list[str] = []
    for name in sorted(given):
        setting = kured.BY_NAME[name].setting
        variable = kured.KURED_PREFIX + name.upper().replace("-", "_")
        if setting is None or setting not in translation.values:
            notes = "; ".join(translation.notes.get(setting or "", [])) or "nothing to set"
            warnings.append(f"{variable}: {notes}")
            continue
        target = env_name(setting)
        if target in upper:
            warnings.append(f"{variable} ignored: {target} is set and wins")
            continue
        added[target] = translation.values[setting]
        notes = "; ".join(translation.notes.get(setting, []))
        warnings.append(f"{variable} read as {target}" + (f" ({notes})" if notes else ""))
    problems = [
        Problem(field="", given="", expected=error, variable="KURED_*") for error in translation.errors
    ]
    return added, warnings, problems


def _ignored_kured_variables(environ: Mapping[str, str]) -> list[Problem]:
    """`KURED_*` variables kured itself never read: an error, since rebootd reading them would
    change what the installation did."""
    problems = []
    for name in sorted(kured.ENV_IGNORED):
        variable = kured.KURED_PREFIX + name.upper().replace("-", "_")
        if variable in {key.upper() for key in environ}:
            problems.append(
                Problem(
                    field="",
                    given="",
                    expected=kured.env_ignored_error(name).split(": ", 1)[1],
                    variable=variable,
                )
            )
    return problems


def behaviour_warnings(settings: Settings) -> list[str]:
    """Where a setting now means something a kured user may not expect: said once at start."""
    found = []
    if settings.alert_filter_regexp is not None and settings.alert_filter_regexp.pattern == "":
        found.append(
            "REBOOTD_ALERT_FILTER_REGEXP is empty: as in kured it matches every alert name, so "
            + ("every alert blocks" if settings.alert_filter_match_only else "no alert blocks reboots")
            + " (unset it to have every alert block)"
        )
    if settings.force_reboot and settings.pdb_preflight:
        found.append(
            "REBOOTD_FORCE_REBOOT reboots past a failed drain, but the PDB preflight still keeps a node "
            "that a PodDisruptionBudget pins from taking a slot; REBOOTD_PDB_PREFLIGHT=false lets it go"
        )
    pre = sorted(pair.split("=", 1)[0] for pair in settings.pre_reboot_node_labels)
    post = sorted(pair.split("=", 1)[0] for pair in settings.post_reboot_node_labels)
    if pre != post:  # kured's validateNodeLabels warns the same
        found.append(
            "REBOOTD_PRE_REBOOT_NODE_LABELS and REBOOTD_POST_REBOOT_NODE_LABELS name different keys "
            f"({','.join(pre) or 'none'} / {','.join(post) or 'none'}): a pre-reboot label the "
            "post-reboot labels do not overwrite stays on the node after its reboot"
        )
    if not settings.reboot_days:
        found.append(
            "REBOOTD_REBOOT_DAYS is empty: no reboot will ever start (kured's way to disable reboots)"
        )
    return found


def _kured_flags(
    given: Mapping[str, Sequence[str]], *, explicit: Mapping[str, Any]
) -> tuple[dict[str, str], list[str], list[Problem]]:
    """kured's own flags on rebootd's command line (`--ds-name`, `--lock-annotation`, the Slack
    flags: those rebootd has under another name) read as the matching settings, one warning each;
    a rebootd flag given as well wins."""
    if not given:
        return {}, [], []
    translation = kured.translate(given)
    added: dict[str, str] = {}
    warnings: list[str] = []
    for name in sorted(given):
        setting = kured.BY_NAME[name].setting if name in kured.BY_NAME else None
        notes = "; ".join(translation.notes.get(setting or "", []))
        if setting is None or setting not in translation.values:
            warnings.append(f"--{name} (kured's): {notes or 'nothing to set'}")
        elif explicit.get(setting) is not None:
            warnings.append(f"--{name} (kured's) ignored: {flag_name(setting)} is given and wins")
        else:
            added[setting] = translation.values[setting]
            warnings.append(
                f"--{name} (kured's) read as {flag_name(setting)}" + (f" ({notes})" if notes else "")
            )
    problems = [Problem(field="", given="", expected=e, variable="kured flags") for e in translation.errors]
    return added, warnings, problems


def load_settings_and_warnings(
    *,
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
    require_node: bool = False,
    kured_flags: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Settings, list[str]]:
    """`load_settings`, plus the warnings to print once at start (KURED_* variables and kured's own
    flags read, kured meanings that differ). Raises InvalidConfig, naming unknown REBOOTD_*
    variables too."""
    added, warnings, problems = _kured_variables(environ)
    problems = _unknown_variables(environ) + _ignored_kured_variables(environ) + problems
    from_flags, flag_warnings, flag_problems = _kured_flags(kured_flags or {}, explicit=flags or {})
    warnings += flag_warnings
    problems += flag_problems
    flags = {**from_flags, **{k: v for k, v in (flags or {}).items() if v is not None}}
    try:
        settings = load_settings(environ={**environ, **added}, flags=flags, require_node=require_node)
    except InvalidConfig as exc:
        raise InvalidConfig([*problems, *exc.problems]) from None
    if problems:
        raise InvalidConfig(problems)
    return settings, warnings + behaviour_warnings(settings)


def load_settings(
    *, environ: Mapping[str, str], flags: Mapping[str, Any] | None = None, require_node: bool = False
) -> Settings:
    """Settings from env vars (`REBOOTD_*` in `environ`) overridden by `flags`; raises InvalidConfig."""
    env_values = _MappingEnvSource(Settings, environ=environ)()
    raw: dict[str, Any] = {**env_values, **{k: v for k, v in (flags or {}).items() if v is not None}}
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise InvalidConfig(_problems_from(exc, raw)) from None
    problems = _contradictions(settings, raw)
    if require_node and not settings.node_id.strip():
        problems.insert(0, Problem(field="node_id", given="''", expected="required: the name of this Node"))
    if problems:
        raise InvalidConfig(problems)
    return settings


def field_help() -> list[tuple[str, str, str, str]]:
    """(env var, flag, default, description) for every option, in declaration order."""
    defaults = Settings.model_construct().model_dump(mode="json")
    rows = []
    for name, info in Settings.model_fields.items():
        default = defaults.get(name)
        shown = "(unset)" if default in (None, "", []) else str(default)
        if isinstance(default, list):
            shown = ",".join(map(str, default)) or "(unset)"
        rows.append((env_name(name), flag_name(name), shown, info.description or ""))
    return rows
