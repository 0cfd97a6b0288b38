"""`rebootd migrate`: a kured installation read as the rebootd configuration that does the same,
as a kustomize overlay or as Helm values.

Rule: every kured flag found is translated by `kured.translate` (the same translation the
`KURED_*` variables get), each setting whose meaning changes carries a comment saying how, and a
flag that cannot be translated is an error (exit 1, nothing printed to stdout). Inputs: a kured
DaemonSet (its container's command, args and `KURED_*` env, read as kured reads them: a variable
overrides its flag, or appends to a list flag given on the command line; multi-document YAML as
`kubectl get -o yaml` or kured's release manifest gives it, or the live object) or the kured Helm
chart's values, rendered as kubereboot/charts' daemonset.yaml renders them (a falsy value, "" / 0
/ false / [], renders no flag; `useRebootSentinelHostPath`, true by default, mounts the sentinel's
directory at /sentinel and drops `rebootSentinelCommand`; an `extraArgs` entry with a falsy value
renders a bare flag; keys the template does not know render nothing). Pure: the caller reads the
file or the live object.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rebootd import kured
from rebootd.settings import InvalidConfig, load_settings

BOOL_FLAGS = frozenset({"alert-filter-match-only", "alert-firing-only", "annotate-nodes", "force-reboot"})
INT_FLAGS = frozenset(
    {"concurrency", "drain-grace-period", "metrics-port", "reboot-signal", "skip-wait-for-delete-timeout"}
)
# pflag string slices: a repeated flag, or a KURED_* variable after a flag, appends.
SLICE_FLAGS = frozenset({"reboot-days", "pre-reboot-node-labels", "post-reboot-node-labels"})
SECRET_SETTINGS = frozenset({"notify_url"})
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# The `configuration:` keys kured's chart (kubereboot/charts, charts/kured) renders as flags.
CHART_KEYS = frozenset(
    {
        "metricsHost", "metricsPort", "lockTtl", "lockReleaseDelay", "alertFilterRegexp", "alertFiringOnly",
        "alertFilterMatchOnly", "blockingPodSelector", "endTime", "lockAnnotation", "period", "forceReboot",
        "drainGracePeriod", "drainPodSelector", "drainDelay", "drainTimeout", "skipWaitForDeleteTimeout",
        "prometheusUrl", "rebootDays", "preRebootNodeLabels", "postRebootNodeLabels", "rebootSentinel",
        "rebootSentinelCommand", "rebootCommand", "rebootDelay", "rebootMethod", "rebootSignal",
        "slackChannel", "slackHookUrl", "slackUsername", "notifyUrl", "messageTemplateDrain",
        "messageTemplateReboot", "messageTemplateUncordon", "startTime", "timeZone", "annotateNodes",
        "preferNoScheduleTaint", "logFormat", "concurrency",
    }
)  # fmt: skip
CHART_DEFAULT_SENTINEL = "/var/run/reboot-required"
# Chart values about kured's own Pod and objects that a migration does not carry over (said when set
# to something other than the chart's default).
NOT_CARRIED = ("service", "metrics", "volumes", "volumeMounts", "initContainers", "hostNetwork")
CHART_DEFAULTS: Mapping[str, Any] = {
    "service": {"create": False, "port": 8080, "annotations": {}, "name": "", "type": "ClusterIP"},
    "metrics": {"create": False, "namespace": "", "labels": {}, "interval": "60s", "scrapeTimeout": ""},
}
# Chart values about the Pod, not kured's flags, that rebootd's chart takes the same way.
PASSTHROUGH_VALUES = (
    "tolerations", "nodeSelector", "affinity", "priorityClassName", "podAnnotations", "podLabels",
    "resources", "dsAnnotations", "updateStrategy", "maxUnavailable",
)  # fmt: skip


class MigrateError(ValueError):
    """The input is no kured installation, or a flag cannot be translated (the text says which)."""


@dataclass
class KuredInstall:
    """kured flags (name -> values in order) and `KURED_*` variables taken from a Secret."""

    flags: dict[str, list[str]] = field(default_factory=dict)
    secret_env: dict[str, dict[str, Any]] = field(default_factory=dict)  # flag -> valueFrom
    source: str = ""
    notes: list[str] = field(default_factory=list)  # about the installation as a whole
    errors: list[str] = field(default_factory=list)
    passthrough: dict[str, Any] = field(default_factory=dict)  # Helm values about the Pod
    extra_env: list[dict[str, Any]] = field(default_factory=list)  # non-KURED_* variables kept
    mounted_sentinel_dir: str = ""  # the host directory kured's chart mounted at /sentinel


def parse_argv(argv: list[str], into: dict[str, list[str]]) -> None:
    """pflag's reading of a command line: `--x=v`, `--x v`, and a bare bool `--x`."""
    i = 0
    while i < len(argv):
        item = str(argv[i])
        i += 1
        if not item.startswith("--"):
            continue
        name, sep, value = item[2:].partition("=")
        if not sep:
            if name in BOOL_FLAGS or i >= len(argv) or str(argv[i]).startswith("--"):
                value = "true"
            else:
                value = str(argv[i])
                i += 1
        into.setdefault(name, []).append(value)


def _container(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = ((doc.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    for container in containers:
        words = [container.get("name", ""), container.get("image", ""), *(container.get("command") or [])]
        if any("kured" in str(word) for word in words):
            return dict(container)
    raise MigrateError("the DaemonSet has no kured container (none named kured or running kured)")


def from_daemonset(doc: Mapping[str, Any]) -> KuredInstall:
    """The kured flags of a DaemonSet: its kured container's command + args, then `KURED_*` env."""
    container = _container(doc)
    install = KuredInstall(source=f"DaemonSet {(doc.get('metadata') or {}).get('name', '?')}")
    parse_argv([*(container.get("command") or []), *(container.get("args") or [])], install.flags)
    for env in container.get("env") or []:
        _env_entry(env, install)
    pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    volumes = {str(v.get("name")): v for v in pod.get("volumes") or [] if isinstance(v, dict)}
    for mount in container.get("volumeMounts") or []:
        if str(mount.get("mountPath", "")).rstrip("/") == "/sentinel":
            host = (volumes.get(str(mount.get("name"))) or {}).get("hostPath") or {}
            install.mounted_sentinel_dir = str(host.get("path") or "")
    for key in ("tolerations", "nodeSelector", "affinity", "priorityClassName"):
        if pod.get(key):
            install.passthrough[key] = pod[key]
    if container.get("resources"):
        install.passthrough["resources"] = container["resources"]
    return install


def _env_entry(env: Mapping[str, Any], install: KuredInstall) -> None:
    name = str(env.get("name", ""))
    flag = name.removeprefix(kured.KURED_PREFIX).lower().replace("_", "-")
    if not name.startswith(kured.KURED_PREFIX):
        if name:
            install.extra_env.append(dict(env))
        return
    if flag not in kured.BY_NAME:
        install.notes.append(f"{name}: names no kured flag; kured ignored it")
        return
    if flag == "node-id":
        return  # rebootd's manifests set REBOOTD_NODE_ID from spec.nodeName themselves
    if flag in kured.ENV_IGNORED:
        install.errors.append(kured.env_ignored_error(flag))
        return
    if "valueFrom" in env:
        install.secret_env[flag] = dict(env["valueFrom"])
        return
    value = str(env.get("value", ""))
    if flag in SLICE_FLAGS and flag in install.flags:
        install.flags[flag].append(value)  # pflag: a slice given on the command line is appended to
    else:
        install.flags[flag] = [value]  # kured: the variable overrides the flag


def _falsy(value: object) -> bool:
    """Go templates' `if`: false, 0, nil and empty strings, lists and maps render nothing."""
    return (
        value is None or value is False or value == 0 or (isinstance(value, str | list | dict) and not value)
    )


def chart_flag(key: str) -> str:
    """kured's chart key (camelCase) as its flag name: lockTtl -> lock-ttl."""
    return _CAMEL.sub("-", key).lower()


def from_helm_values(values: Mapping[str, Any]) -> KuredInstall:
    """The flags kured's Helm chart renders from these values (see the module's rule)."""
    install = KuredInstall(source="Helm values")
    config = dict(values.get("configuration") or {})
    host_path = config.pop("useRebootSentinelHostPath", True)
    for key, value in config.items():
        if key not in CHART_KEYS:
            close = difflib.get_close_matches(str(key), sorted(CHART_KEYS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            install.notes.append(f"configuration.{key}: kured's chart renders no flag for it{hint}; ignored")
            continue
        if _falsy(value) or key in {"rebootSentinel", "rebootSentinelCommand"}:
            continue  # the chart renders no flag: kured's default
        if key == "forceReboot":  # rendered as a bare --force-reboot whatever the (truthy) value
            if value != True:  # noqa: E712 - "false" (a string) is truthy to Go templates too
                install.notes.append(
                    f"configuration.forceReboot: {value!r} renders a bare --force-reboot in kured's chart, "
                    "which means true"
                )
            install.flags["force-reboot"] = ["true"]
            continue
        items = value if isinstance(value, list) else [value]
        install.flags.setdefault(chart_flag(key), []).extend(_go_text(item) for item in items)
    sentinel = config.get("rebootSentinel", CHART_DEFAULT_SENTINEL)
    command = config.get("rebootSentinelCommand")
    if not _falsy(sentinel):
        sentinel = str(sentinel)
        if not _falsy(host_path):
            directory, _, base = sentinel.rpartition("/")
            install.flags["reboot-sentinel"] = [f"/sentinel/{base}"]
            install.mounted_sentinel_dir = directory or "/"
        else:
            install.flags["reboot-sentinel"] = [sentinel]
    if not _falsy(command):
        if _falsy(host_path):
            install.flags["reboot-sentinel-command"] = [_go_text(command)]
        else:
            install.notes.append(
                "configuration.rebootSentinelCommand: kured's chart renders it only with "
                "useRebootSentinelHostPath: false, so kured checked the sentinel file; so does rebootd"
            )
    for key, value in (values.get("extraArgs") or {}).items():
        flag = str(key)
        if _falsy(value):  # the chart renders a bare `--flag`
            if flag in BOOL_FLAGS:
                install.flags.setdefault(flag, []).append("true")
                if value is False:
                    install.notes.append(
                        f"extraArgs.{flag}: false renders a bare --{flag} in kured's chart, which means true"
                    )
            else:
                install.errors.append(
                    f"extraArgs.{flag}: an empty value renders a bare --{flag} in kured's chart, which "
                    "takes the next argument as its value; give it a value"
                )
            continue
        install.flags.setdefault(flag, []).append(_go_text(value))
    for env in values.get("extraEnvVars") or []:
        _env_entry(env, install)
    for key in PASSTHROUGH_VALUES:
        if key in values and not _falsy(values[key]):
            install.passthrough[key] = values[key]
    for key in NOT_CARRIED:
        if key in values and not _falsy(values[key]) and values[key] != CHART_DEFAULTS.get(key):
            install.notes.append(f"{key}: not carried over (rebootd's chart and base have their own)")
    return install


def _go_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_install(text: str) -> KuredInstall:
    """A kured DaemonSet manifest (the first kured DaemonSet among the documents) or Helm values."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise MigrateError(f"not YAML: {exc}") from None
    for doc in docs:
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        for item in items or []:
            if isinstance(item, dict) and item.get("kind") == "DaemonSet":
                try:
                    return from_daemonset(item)
                except MigrateError:
                    continue
    for doc in docs:
        if {"configuration", "extraArgs", "extraEnvVars"} & set(doc):
            return from_helm_values(doc)
    raise MigrateError(
        "found neither a kured DaemonSet nor kured Helm values (configuration:, extraArgs:, extraEnvVars:)"
    )


def _quote(text: str) -> str:
    return yaml.safe_dump(text, default_style='"', width=10_000).strip().removesuffix("...").strip()


# Settings whose KURED_* variable may come from a Secret or ConfigMap as is: kept as a reference.
_PLAIN_REFERENCES = frozenset(
    f.name
    for f in kured.FLAGS
    if f.setting == f.name.replace("-", "_") and f.name not in kured.DURATION_FLAGS
)


def _empty_quotes(install: KuredInstall) -> dict[str, list[str]]:
    """A YAML list item `--x=""` hands kured the two quote characters (kured's own manifest shows
    such lines, commented out): read as the empty value they stand for, with a note."""
    flags: dict[str, list[str]] = {}
    for name, values in install.flags.items():
        kept = []
        for value in values:
            if value in {'""', "''"}:
                install.notes.append(
                    f"--{name}={value}: kured read the two quote characters themselves (a YAML list "
                    "does not remove them); rebootd reads the empty value they stand for"
                )
                value = ""
            kept.append(value)
        flags[name] = kept
    return flags


def _sentinel(translation: kured.Translation, install: KuredInstall) -> None:
    """kured's manifests mount a host directory at /sentinel; rebootd's mount the host's /var/run
    at /host/var/run."""
    sentinel = translation.values.get("reboot_sentinel")
    if sentinel is None:
        return
    host = sentinel
    if sentinel.startswith("/sentinel/"):
        host = (
            (install.mounted_sentinel_dir or "/var/run").rstrip("/")
            + "/"
            + sentinel.removeprefix("/sentinel/")
        )
    for prefix in ("/var/run/", "/run/"):
        if host.startswith(prefix):
            translation.values["reboot_sentinel"] = "/host/var/run/" + host.removeprefix(prefix)
            translation.note(
                "reboot_sentinel",
                f"kured read {sentinel} (the host's {host}); "
                "rebootd mounts the host's /var/run at /host/var/run",
            )
            return
    translation.errors.append(
        f"--reboot-sentinel={sentinel}: kured read the host's {host}; rebootd's DaemonSet mounts only the "
        "host's /var/run (at /host/var/run): move the sentinel there or add a hostPath volume and set "
        "REBOOTD_REBOOT_SENTINEL yourself"
    )


def translate_install(install: KuredInstall) -> kured.Translation:
    """The rebootd settings of a kured installation, every note and every error; the settings are
    loaded as `rebootd config` would load them, so a value rebootd refuses is an error here."""
    translation = kured.translate(_empty_quotes(install))
    _sentinel(translation, install)
    for flag in sorted(install.secret_env):
        variable = kured.KURED_PREFIX + flag.upper().replace("-", "_")
        setting = kured.BY_NAME[flag].setting
        if flag in {"notify-url", "slack-hook-url"}:
            continue  # rendered as REBOOTD_NOTIFY_URL from the same reference
        if flag not in _PLAIN_REFERENCES or setting is None:
            translation.errors.append(
                f"{variable} comes from {_describe_ref(install.secret_env[flag])}: its value needs "
                "translating, which migrate cannot do without reading it; "
                f"set {settings_env(setting)} yourself"
            )
    translation.errors[:0] = install.errors
    # kured's monitoring contract (the kured_reboot_required gauge; with annotate-nodes kured's
    # annotations) keeps existing alerts and dashboards working through the migration.
    translation.values.setdefault("kured_compat", "true")
    translation.note(
        "kured_compat",
        "kured's kured_reboot_required metric"
        + (" and weave.works/kured-* node annotations" if "annotate-nodes" in install.flags else "")
        + " beside rebootd's, so kured's alerts and dashboards keep working; drop once they use rebootd's",
    )
    if not translation.errors:
        environ = {settings_env(k): v for k, v in translation.values.items()}
        try:
            load_settings(environ=environ)
        except InvalidConfig as exc:
            translation.errors += [problem.render() for problem in exc.problems]
    return translation


def settings_env(setting: str | None) -> str:
    return "REBOOTD_" + (setting or "?").upper()


def _describe_ref(ref: Mapping[str, Any]) -> str:
    for kind, text in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if kind in ref:
            return f"{text} {ref[kind].get('name')} key {ref[kind].get('key')}"
    return "a reference (valueFrom)"


def _references(install: KuredInstall, translation: kured.Translation) -> list[dict[str, Any]]:
    """REBOOTD_* variables taken from the same Secret or ConfigMap references kured's were."""
    found = []
    for flag in sorted(install.secret_env):
        setting = kured.BY_NAME[flag].setting
        if flag in {"notify-url", "slack-hook-url"}:
            if flag == "slack-hook-url" and "notify-url" in install.secret_env:
                continue
            if "notify_url" in translation.values:
                continue  # a plain URL from the command line wins in kured too
        elif flag not in _PLAIN_REFERENCES:
            continue
        found.append({"name": settings_env(setting), "valueFrom": install.secret_env[flag]})
    return found


def render_overlay(install: KuredInstall) -> str:
    """The kustomization.yaml of an overlay on rebootd's base; raises MigrateError."""
    translation = translate_install(install)
    if translation.errors:
        raise MigrateError("cannot translate: " + "; ".join(translation.errors))
    header = [
        f"# rebootd overlay translated by `rebootd migrate` from kured's {install.source}.",
        "# Put this file in a directory next to rebootd's deploy/kustomize (adjust `resources`);",
        "# delete kured's DaemonSet first: the two do not share a lock.",
        *(f"# {note}" for note in install.notes),
    ]
    lines = [
        *header,
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "",
        "resources:",
        "  - ../../base",
        "",
        "configMapGenerator:",
        "  - name: rebootd-config",
        "    behavior: merge",
        "    literals:",
        *(f"      # {d}" for d in DEFAULT_NOTES),
    ]
    plain = {k: v for k, v in translation.values.items() if k not in SECRET_SETTINGS}
    literals = 0
    for setting in sorted(set(plain) | (set(translation.notes) - SECRET_SETTINGS)):
        for note in translation.notes.get(setting, []):
            lines.append(f"      # {note}")
        if setting in plain:
            literals += 1
            lines.append(f"      - {_quote(f'{settings_env(setting)}={plain[setting]}')}")
    if not literals:
        lines.append("      []  # kured's defaults throughout")
    env = _references(install, translation)
    if "notify_url" in translation.values:
        lines += ["", "secretGenerator:"]
        lines += [f"  # {note}" for note in translation.notes.get("notify_url", [])]
        lines += [
            "  # Keep this Secret out of Git: create it with kubectl instead and drop this generator.",
            "  - name: rebootd-notify",
            "    literals:",
            f"      - {_quote('url=' + translation.values['notify_url'])}",
        ]
        env.insert(
            0,
            {
                "name": "REBOOTD_NOTIFY_URL",
                "valueFrom": {"secretKeyRef": {"name": "rebootd-notify", "key": "url"}},
            },
        )
    if env:
        lines += ["", "patches:", "  - target: {kind: DaemonSet, name: rebootd}", "    patch: |-"]
        for entry in env:
            if entry["name"] == "REBOOTD_NOTIFY_URL" and "notify_url" not in translation.values:
                lines.append("      # the reference kured read; its value must be an apprise URL now")
            op = [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": entry}]
            lines += [f"      {text}" for text in yaml.safe_dump(op, sort_keys=False).splitlines()]
    return "\n".join(line for line in lines if line != "") + "\n"


DEFAULT_NOTES = (
    "kured's default --period is 1h, rebootd's 1m (a stat call; REBOOTD_PERIOD=1h keeps kured's)",
    "kured's default --drain-timeout is 0 (forever), rebootd's 15m (REBOOTD_DRAIN_TIMEOUT=0 keeps kured's)",
)
_LIST_SEPARATORS = {"reboot_days": ",", "blocking_pod_selector": ";", "pre_reboot_node_labels": ",",
                    "post_reboot_node_labels": ","}  # fmt: skip


def chart_key(setting: str) -> str | None:
    """The `configuration:` key of kured's chart for a setting kured has under its own name
    (reboot_days -> rebootDays), else None."""
    flag = setting.replace("_", "-")
    if flag not in kured.BY_NAME or kured.BY_NAME[flag].setting != setting:
        return None
    first, *rest = flag.split("-")
    return first + "".join(word.capitalize() for word in rest)


def _chart_value(setting: str, value: str) -> Any:
    flag = setting.replace("_", "-")
    if setting in _LIST_SEPARATORS:
        return [item.strip() for item in value.split(_LIST_SEPARATORS[setting]) if item.strip()]
    if flag in BOOL_FLAGS:
        return value.strip().lower() in {"true", "1", "t", "yes"}
    if flag in INT_FLAGS:
        return int(value)
    return value


def _yaml_value(value: Any) -> str:
    """JSON, which YAML reads the same way: every string quoted (06:00 stays a string)."""
    return json.dumps(value, ensure_ascii=False)


def render_helm_values(install: KuredInstall) -> str:
    """Helm values for rebootd's chart: `configuration.<kured chart key>` for every setting kured
    has under its own name, `extraEnvVars` (REBOOTD_*) for the rest and for Secret references, and
    the Pod's scheduling values as they were; raises MigrateError."""
    translation = translate_install(install)
    if translation.errors:
        raise MigrateError("cannot translate: " + "; ".join(translation.errors))
    lines = [
        f"# rebootd Helm values translated by `rebootd migrate` from kured's {install.source}.",
        "# Uninstall kured first: the two do not share a lock.",
        *(f"# {note}" for note in install.notes),
        "configuration:",
        *(f"  # {d}" for d in DEFAULT_NOTES),
    ]
    env: list[dict[str, Any]] = []
    keys = 0
    for setting in sorted(set(translation.values) | set(translation.notes)):
        notes = translation.notes.get(setting, [])
        key = chart_key(setting)
        if setting == "lock_namespace":
            namespace = translation.values.get(setting)
            notes = [*notes, f"install the chart into namespace {namespace} (helm -n): the Lease lives there"]
            lines += [f"  # {note}" for note in notes]
            continue
        lines += [f"  # {note}" for note in notes]
        if setting not in translation.values:
            continue
        value = translation.values[setting]
        if key is None:
            env.append({"name": settings_env(setting), "value": value})
            lines.append(f"  # {settings_env(setting)}: see extraEnvVars")
            continue
        keys += 1
        lines.append(f"  {key}: {_yaml_value(_chart_value(setting, value))}")
    if not keys:
        lines.append("  {}")
    env += _references(install, translation)
    env += install.extra_env
    if env:
        lines.append("extraEnvVars:")
        lines += [f"  {text}" for text in yaml.safe_dump(env, sort_keys=False, width=10_000).splitlines()]
    for name, value in install.passthrough.items():
        lines.append(f"{name}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"
