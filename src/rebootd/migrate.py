"""`rebootd migrate`: a kured installation read as the rebootd kustomize overlay that does the same.

Rule: every kured flag found is translated by `kured.translate` (the same translation the
`KURED_*` variables get), each setting whose meaning changes carries a comment saying how, and a
flag that cannot be translated is an error (exit 1, nothing printed to stdout). Inputs: a kured
DaemonSet manifest (its container's command, args and `KURED_*` env; multi-document YAML as
`kubectl get -o yaml` or kured's release manifest gives it) or the kured Helm chart's values
(`configuration`, `extraArgs`, `extraEnvVars`; a value the chart would not render, "" / 0 /
false / [], keeps kured's default). Pure: the caller reads the file or the live object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rebootd import kured

BOOL_FLAGS = frozenset({"alert-filter-match-only", "alert-firing-only", "annotate-nodes", "force-reboot"})
SECRET_SETTINGS = frozenset({"notify_url"})
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class MigrateError(ValueError):
    """The input is no kured installation, or a flag cannot be translated (the text says which)."""


@dataclass
class KuredInstall:
    """kured flags (name -> values in order) and `KURED_*` variables taken from a Secret."""

    flags: dict[str, list[str]] = field(default_factory=dict)
    secret_env: dict[str, dict[str, Any]] = field(default_factory=dict)  # flag -> valueFrom
    source: str = ""


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
    return install


def _env_entry(env: Mapping[str, Any], install: KuredInstall) -> None:
    name = str(env.get("name", ""))
    flag = name.removeprefix(kured.KURED_PREFIX).lower().replace("_", "-")
    if not name.startswith(kured.KURED_PREFIX) or flag not in kured.BY_NAME:
        return
    if flag == "node-id":
        return  # rebootd's manifests set REBOOTD_NODE_ID from spec.nodeName themselves
    if "valueFrom" in env:
        install.secret_env[flag] = dict(env["valueFrom"])
        return
    install.flags[flag] = [str(env.get("value", ""))]  # kured: the variable overrides the flag


def from_helm_values(values: Mapping[str, Any]) -> KuredInstall:
    """The flags kured's Helm chart renders from these values."""
    install = KuredInstall(source="Helm values")
    for key, value in (values.get("configuration") or {}).items():
        flag = _CAMEL.sub("-", str(key)).lower()
        if value in ("", 0, False, None, []) and flag != "concurrency":
            continue  # the chart renders no flag: kured's default
        items = value if isinstance(value, list) else [value]
        install.flags.setdefault(flag, []).extend(_go_text(item) for item in items)
    for key, value in (values.get("extraArgs") or {}).items():
        install.flags.setdefault(str(key), []).append(_go_text(value))
    for env in values.get("extraEnvVars") or []:
        _env_entry(env, install)
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
        if "configuration" in doc or "extraArgs" in doc:
            return from_helm_values(doc)
    raise MigrateError("found neither a kured DaemonSet nor kured Helm values (configuration:, extraArgs:)")


def _quote(text: str) -> str:
    return yaml.safe_dump(text, default_style='"', width=10_000).strip().removesuffix("...").strip()


def render_overlay(install: KuredInstall) -> str:
    """The kustomization.yaml of an overlay on rebootd's base; raises MigrateError."""
    translation = kured.translate(install.flags)
    sentinel = translation.values.get("reboot_sentinel")
    if sentinel is not None:
        for prefix in ("/sentinel/", "/var/run/"):  # kured's manifest mounts the host's /var/run at /sentinel
            if sentinel.startswith(prefix):
                translation.values["reboot_sentinel"] = "/host/var/run/" + sentinel.removeprefix(prefix)
                translation.note(
                    "reboot_sentinel",
                    f"kured read {sentinel}; rebootd's base mounts /var/run at /host/var/run",
                )
    for flag in install.secret_env:
        setting = kured.BY_NAME[flag].setting
        if setting not in {"notify_url", None}:
            translation.errors.append(
                f"KURED_{flag.upper().replace('-', '_')} comes from a Secret: set it yourself"
            )
    if translation.errors:
        raise MigrateError("cannot translate: " + "; ".join(translation.errors))
    lines = [
        f"# rebootd overlay translated by `rebootd migrate` from kured's {install.source}.",
        "# Put this file in a directory next to rebootd's deploy/kustomize (adjust `resources`);",
        "# delete kured's DaemonSet first: the two do not share a lock.",
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
    ]
    plain = {k: v for k, v in translation.values.items() if k not in SECRET_SETTINGS}
    for setting in sorted(set(plain) | (set(translation.notes) - SECRET_SETTINGS)):
        for note in translation.notes.get(setting, []):
            lines.append(f"      # {note}")
        if setting in plain:
            lines.append(f"      - {_quote(f'REBOOTD_{setting.upper()}={plain[setting]}')}")
    if len(lines) and lines[-1] == "    literals:":
        lines.append("      []  # kured's defaults throughout")
    defaults = [
        "kured's default --period is 1h, rebootd's 1m (a stat call; REBOOTD_PERIOD=1h keeps kured's)",
        "kured's default --drain-timeout is 0 (forever), rebootd's 15m "
        "(REBOOTD_DRAIN_TIMEOUT=0 keeps kured's)",
    ]
    lines[lines.index("    literals:") + 1 : lines.index("    literals:") + 1] = [
        f"      # {d}" for d in defaults
    ]
    if "notify_url" in translation.values or install.secret_env:
        lines += ["", "secretGenerator:" if "notify_url" in translation.values else ""]
        for note in translation.notes.get("notify_url", []):
            lines.append(f"  # {note}")
        if "notify_url" in translation.values:
            lines += [
                "  # Keep this Secret out of Git: create it with kubectl instead and drop this generator.",
                "  - name: rebootd-notify",
                "    literals:",
                f"      - {_quote('url=' + translation.values['notify_url'])}",
            ]
        lines += [
            "",
            "patches:",
            "  - target: {kind: DaemonSet, name: rebootd}",
            "    patch: |-",
            "      - op: add",
            "        path: /spec/template/spec/containers/0/env/-",
            "        value:",
            "          name: REBOOTD_NOTIFY_URL",
            "          valueFrom:",
        ]
        ref = install.secret_env.get("notify-url") or install.secret_env.get("slack-hook-url")
        if ref is not None and "notify_url" not in translation.values:
            lines.append("            # the Secret kured read; its value must be an apprise URL now")
            for text in yaml.safe_dump(ref, sort_keys=True).splitlines():
                lines.append(f"            {text}")
        else:
            lines += ["            secretKeyRef: {name: rebootd-notify, key: url}"]
    return "\n".join(line for line in lines if line != "") + "\n"
