"""The Helm chart (deploy/helm/rebootd), rendered by the real Helm v4, against the kustomize builds.

- With its default values the chart renders the same objects as `kubectl kustomize
  deploy/kustomize/base`; the reboot method `signal`, the monitoring values and
  `tolerateAllTaints` render the signal, prometheus-operator and tolerate-all-taints overlays.
  Compared object by object after three normalisations only: the `managed-by` label (Helm or
  kustomize), the ConfigMap's name (kustomize appends a content hash; the chart rolls the pods
  through a `checksum/config` annotation instead, which is dropped).
- kured-style values (configuration.*, extraArgs, extraEnvVars, tolerations, image, rbac,
  serviceAccount, ...) render what they promise, and the daemon's own configuration loader and
  flag parser accept what they render.
- `helm lint --strict` passes and every rendering validates against the Kubernetes 1.32 schemas.

Helm is built from the Go module proxy (tests/fixtures/helm.py); a missing one fails under CI=true.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebootd.cli import build_parser
from rebootd.settings import Settings, env_name, load_settings
from tests.fixtures import helm
from tests.fixtures.tools import require_binary
from tests.integration.test_manifests import (
    CUSTOM_KINDS,
    KUBERNETES_VERSION,
    PIP_HINT,
    build,
    daemon_container,
    effective_environment,
    only,
    require_module,
)

CHART = helm.ROOT / "deploy" / "helm" / "rebootd"
NAMESPACE = "kube-system"
Obj = dict[str, Any]

MONITORING = {"metrics": {"create": True}, "prometheusRule": {"create": True}}
SIGNAL = {"configuration": {"rebootMethod": "signal"}}
KURED_STYLE: Obj = {
    "configuration": {
        "rebootDays": ["mo", "tu", "we", "th", "fr"],
        "startTime": "9am",
        "endTime": "5pm",
        "timeZone": "America/Los_Angeles",
        "period": "5m",
        "concurrency": 2,
        "annotateNodes": True,
        "alertFiringOnly": False,
        "blockingPodSelector": ["app=db,tier=primary", "job=backup"],
        "preRebootNodeLabels": ["rebootd=rebooting"],
        "lockName": "reboots",
        "drainGracePeriod": -1,
    },
    "extraArgs": {"force-reboot": True, "lock-release-delay": "5m", "reboot-days": ["sa", "su"]},
    "extraEnvVars": [
        {
            "name": "REBOOTD_NOTIFY_URL",
            "valueFrom": {"secretKeyRef": {"name": "rebootd-notify", "key": "url"}},
        }
    ],
    "dsAnnotations": {
        "checkov.io/skip-secret-env": "CKV_K8S_35=REBOOTD_NOTIFY_URL is read from the environment like "
        "every other setting; the Secret is referenced, never copied into the manifest"
    },
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    "nodeSelector": {"kubernetes.io/os": "linux", "pool": "general"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "spot", "operator": "DoesNotExist"}]}]
            }
        }
    },
    "priorityClassName": "system-node-critical",
    "resources": {"requests": {"cpu": "20m", "memory": "80Mi"}, "limits": {"memory": "128Mi"}},
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "image": {
        "repository": "registry.example/rebootd",
        "digest": "sha256:" + "a" * 64,
        "pullSecrets": [{"name": "pull-secret"}],
    },
    "serviceAccount": {"annotations": {"example.com/role": "rebootd"}},
    "podMonitor": {"create": True},
    "prometheusRule": {"create": True, "labels": {"release": "prometheus"}},
}
VALUE_SETS: dict[str, Obj] = {
    "default": {},
    "signal": SIGNAL,
    "monitoring": MONITORING,
    "tolerate-all-taints": {"tolerateAllTaints": True},
    "kured-style": KURED_STYLE,
    "no-rbac-own-account": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}},
}


@functools.cache
def _render(values_json: str, helm_binary: str, tmp: str) -> str:
    values_file = Path(tmp) / f"values-{abs(hash(values_json))}.yaml"
    values_file.write_text(yaml.safe_dump(json.loads(values_json)))
    result = helm.run(
        helm_binary, "template", "rebootd", str(CHART), "--namespace", NAMESPACE, "--values", str(values_file)
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = helm.locate()
    tmp = str(tmp_path_factory.mktemp("helm-values"))

    def rendered(values: Obj) -> list[Obj]:
        text = _render(json.dumps(values, sort_keys=True), binary, tmp)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    return rendered


def _normalised(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    """Objects by (kind, name) with the managed-by label, the ConfigMap's hash suffix and the
    config checksum annotation taken out (the only differences Helm and kustomize may have)."""
    out = {}
    for original in objects:
        obj = copy.deepcopy(original)
        obj["metadata"].get("labels", {}).pop("app.kubernetes.io/managed-by", None)
        if obj["kind"] == "ConfigMap":
            obj["metadata"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", obj["metadata"]["name"])
        if obj["kind"] == "DaemonSet":
            template = obj["spec"]["template"]
            template["metadata"]["annotations"].pop("checksum/config", None)
            for container in template["spec"]["containers"]:
                for source in container.get("envFrom", []):
                    ref = source["configMapRef"]
                    ref["name"] = re.sub(r"-[a-z0-9]{10}$", "", ref["name"])
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def assert_same_objects(helm_objects: list[Obj], kustomize_objects: list[Obj]) -> None:
    rendered, built = _normalised(helm_objects), _normalised(kustomize_objects)
    assert sorted(rendered) == sorted(built)
    for key in sorted(built):
        if rendered[key] != built[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(built[key]).splitlines(),
                yaml.safe_dump(rendered[key]).splitlines(),
                "kustomize",
                "helm",
                lineterm="",
            )
            pytest.fail(f"{key[0]}/{key[1]} differs:\n" + "\n".join(diff))


@pytest.mark.parametrize(
    ("values", "overlay"),
    [
        ({}, "base"),
        (SIGNAL, "overlays/signal"),
        (MONITORING, "overlays/prometheus-operator"),
        ({"tolerateAllTaints": True}, "overlays/tolerate-all-taints"),
    ],
    ids=["default-is-base", "signal", "monitoring", "tolerate-all-taints"],
)
def test_chart_renders_the_same_objects_as_the_kustomize_build(
    render: Any, values: Obj, overlay: str
) -> None:
    assert_same_objects(render(values), build(overlay))


def test_helm_lint_strict_passes_with_default_signal_and_kured_style_values(tmp_path: Path) -> None:
    binary = helm.locate()
    for name in ("default", "signal", "kured-style"):
        values = tmp_path / f"{name}.yaml"
        values.write_text(yaml.safe_dump(VALUE_SETS[name]))
        result = helm.run(binary, "lint", "--strict", str(CHART), "--values", str(values))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendering_is_valid_against_kubernetes_1_32_schemas(render: Any, name: str) -> None:
    validator = require_module("kubernetes_validate")
    checked = 0
    for obj in render(VALUE_SETS[name]):
        if (obj["apiVersion"], obj["kind"]) in {*CUSTOM_KINDS, ("monitoring.coreos.com/v1", "PodMonitor")}:
            continue  # no schema in kubernetes-validate; see the monitoring tests
        try:
            validator.validate(obj, KUBERNETES_VERSION, strict=True)
        except validator.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        checked += 1
    assert checked >= 4


def test_kured_style_values_render_settings_flags_and_placement(render: Any) -> None:
    objects = render(KURED_STYLE)
    environ = effective_environment(objects)
    container = daemon_container(objects)
    pod = only(objects, "DaemonSet")["spec"]["template"]
    args = container["args"]

    assert environ["REBOOTD_REBOOT_DAYS"] == "mo,tu,we,th,fr"
    assert environ["REBOOTD_BLOCKING_POD_SELECTOR"] == "app=db,tier=primary;job=backup"
    assert environ["REBOOTD_CONCURRENCY"] == "2"
    assert environ["REBOOTD_ALERT_FIRING_ONLY"] == "false"  # false is written, null is left out
    assert "REBOOTD_PROMETHEUS_URL" not in environ
    assert args == ["--force-reboot=true", "--lock-release-delay=5m", "--reboot-days=sa", "--reboot-days=su"]
    # What the daemon makes of it: its own loader, and its own parser for the flags (a flag wins).
    settings = load_settings(environ=environ, require_node=True)
    assert settings.reboot_days == frozenset(range(5))
    assert (settings.start_time.isoformat(), settings.end_time.isoformat()) == ("09:00:00", "17:00:00")
    assert settings.concurrency == 2
    assert settings.lock_name == "reboots"
    parsed = build_parser().parse_args(container["command"][1:] + args)
    assert parsed.force_reboot == "true"
    assert parsed.reboot_days == ["sa", "su"]
    env = {v["name"]: v for v in container["env"]}
    assert env["REBOOTD_NOTIFY_URL"]["valueFrom"]["secretKeyRef"] == {"name": "rebootd-notify", "key": "url"}
    # Placement, scheduling and the image, as given.
    assert pod["spec"]["tolerations"] == KURED_STYLE["tolerations"]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "general"}
    assert pod["spec"]["affinity"] == KURED_STYLE["affinity"]
    assert pod["spec"]["priorityClassName"] == "system-node-critical"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "pull-secret"}]
    assert container["image"] == "registry.example/rebootd@sha256:" + "a" * 64
    # Helm merges a values map into the default one: the default CPU limit stays (null removes it).
    assert container["resources"] == {
        "requests": {"cpu": "20m", "memory": "80Mi"},
        "limits": {"cpu": "1", "memory": "128Mi"},
    }
    assert pod["metadata"]["annotations"]["example.com/team"] == "platform"
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert only(objects, "ServiceAccount")["metadata"]["annotations"] == {"example.com/role": "rebootd"}
    # The Role follows the Lease's name.
    role = only(objects, "Role", "rebootd")
    assert role["rules"][0]["resourceNames"] == ["reboots"]


def test_a_pinned_digest_needs_no_digest_suppression(render: Any) -> None:
    default = only(render({}), "DaemonSet")["metadata"]["annotations"]
    pinned = only(render(KURED_STYLE), "DaemonSet")["metadata"]["annotations"]

    assert "checkov.io/skip-digest" in default
    assert "checkov.io/skip-digest" not in pinned


def test_rbac_and_service_account_can_be_left_to_the_cluster_owner(render: Any) -> None:
    objects = render(VALUE_SETS["no-rbac-own-account"])
    kinds = {o["kind"] for o in objects}

    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert only(objects, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_pod_monitor_and_prometheus_rule_select_the_daemon_pods(render: Any) -> None:
    objects = render(KURED_STYLE)
    monitor = only(objects, "PodMonitor")
    rule = only(objects, "PrometheusRule")
    pod_labels = only(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]

    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels[monitor["spec"]["jobLabel"]] == "rebootd"  # the alerts' job="rebootd"
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    kustomize_rule = only(build("overlays/prometheus-operator"), "PrometheusRule")
    assert rule["spec"] == kustomize_rule["spec"]


@pytest.mark.parametrize(
    ("configuration", "named"),
    [
        ({"rebootMethod": "kexec"}, "rebootMethod"),
        ({"slackHookUrl": "https://hooks.example/x"}, "slackHookUrl"),  # kured's, no rebootd equivalent
        ({"rebootDay": ["mo"]}, "rebootDay"),  # a typo
    ],
    ids=["unknown-method", "kured-only-key", "typo"],
)
def test_a_value_the_chart_cannot_honour_fails_the_rendering_naming_it(
    tmp_path: Path, configuration: Obj, named: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"configuration": configuration}))
    result = helm.run(helm.locate(), "template", "rebootd", str(CHART), "--values", str(values))

    assert result.returncode != 0
    assert named in result.stderr


def test_values_schema_knows_exactly_the_documented_configuration_keys() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    configuration = schema["properties"]["configuration"]
    assert set(configuration["properties"]) == set(values["configuration"])
    assert configuration["additionalProperties"] is False


# Settings the chart sets itself (downward API) or that must come from a Secret (extraEnvVars).
NOT_IN_VALUES = {
    "node_id",
    "pod_uid",
    "lock_namespace",
    "kubeconfig",
    "boot_id_file",
    "prometheus_bearer_token",
    "prometheus_password",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def test_values_document_every_setting_under_its_kured_style_name() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = set(values["configuration"])
    expected = {_camel(name) for name in Settings.model_fields if name not in NOT_IN_VALUES}

    assert documented == expected
    # The chart's rule (camelCase to upper snake case, as sprig's snakecase) names real settings.
    env_names = {"REBOOTD_" + re.sub(r"([A-Z])", r"_\1", key).upper() for key in documented}
    assert env_names <= {env_name(name) for name in Settings.model_fields}


def test_checkov_finds_nothing_unexplained_in_any_rendering(render: Any, tmp_path: Path) -> None:
    """The security scan of every rendering: no failed check; each suppression carries its reason
    (the reboot method's own, and dsAnnotations' for a Secret given through extraEnvVars)."""
    checkov = require_binary("checkov", install_hint=PIP_HINT)
    for name, values in VALUE_SETS.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(render(values)))
    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(tmp_path),
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
    report = json.loads(result.stdout)

    failed = [(c["check_id"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert result.returncode == 0, result.stderr[-3000:]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 90 * len(VALUE_SETS) // 2
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]


@pytest.mark.parametrize(
    ("sentinel", "folder"), [("/run/reboot-needed", "/run"), (None, "/var/run")], ids=["elsewhere", "unset"]
)
def test_the_sentinel_on_the_host_is_mounted_and_read_under_host(
    render: Any, sentinel: str | None, folder: str
) -> None:
    objects = render({"configuration": {"rebootSentinel": sentinel}})
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    mount = {m["name"]: m for m in daemon_container(objects)["volumeMounts"]}["host-var-run"]
    volume = {v["name"]: v for v in pod["volumes"]}["host-var-run"]
    settings = load_settings(environ=effective_environment(objects), require_node=True)

    assert volume["hostPath"] == {"path": folder, "type": "Directory"}
    assert mount["mountPath"] == f"/host{folder}"
    assert mount["readOnly"] is True
    assert settings.reboot_sentinel == Path(f"/host{sentinel or '/var/run/reboot-required'}")
