"""Every installation the project ships is accepted by a real kube-apiserver: each kustomize build
and each Helm rendering is applied with `kubectl apply --dry-run=server` (validation, defaulting
and admission run; nothing is stored). The Prometheus Operator's kinds are left out: their CRDs
are not installed on the test control plane (the manifests tests check them by hand)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebootd.controlplane import ControlPlane
from tests.fixtures import helm
from tests.fixtures.tools import require_binary
from tests.integration.test_manifests import BUILDS, build_text

CHART = helm.ROOT / "deploy" / "helm" / "rebootd"
OPERATOR_GROUP = "monitoring.coreos.com/"
HELM_VALUES: dict[str, dict[str, Any]] = {
    "default": {},
    "signal": {"configuration": {"rebootMethod": "signal"}},
    "kured-style": {
        "configuration": {"rebootDays": ["mo", "fr"], "concurrency": 2, "lockName": "reboots"},
        "extraArgs": {"force-reboot": True},
        "tolerateAllTaints": True,
        "priorityClassName": "system-node-critical",
        "image": {"digest": "sha256:" + "b" * 64, "pullSecrets": [{"name": "pull"}]},
    },
}


def _without_operator_kinds(text: str) -> str:
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    return yaml.safe_dump_all([o for o in objects if not o["apiVersion"].startswith(OPERATOR_GROUP)])


def _dry_run(plane: ControlPlane, tmp_path: Path, manifest: str) -> subprocess.CompletedProcess[str]:
    kubectl = require_binary("kubectl", install_hint="install kubectl on PATH")
    config = (f"--kubeconfig={plane.kubeconfig}", f"--cache-dir={tmp_path / 'kube-cache'}")
    return subprocess.run(
        [kubectl, *config, "apply", "--dry-run=server", "-f", "-"],
        input=_without_operator_kinds(manifest),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.controlplane
@pytest.mark.parametrize("name", BUILDS)
def test_kustomize_build_is_accepted_by_the_real_apiserver(
    control_plane: ControlPlane, tmp_path: Path, name: str
) -> None:
    result = _dry_run(control_plane, tmp_path, build_text(name))

    assert result.returncode == 0, result.stderr
    assert "daemonset.apps/rebootd created (server dry run)" in result.stdout


@pytest.mark.controlplane
@pytest.mark.parametrize("name", sorted(HELM_VALUES))
def test_helm_rendering_is_accepted_by_the_real_apiserver(
    control_plane: ControlPlane, tmp_path: Path, name: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(HELM_VALUES[name]))
    rendered = helm.run(
        helm.locate(),
        "template",
        "rebootd",
        str(CHART),
        "--namespace",
        "kube-system",
        "--values",
        str(values),
    )
    assert rendered.returncode == 0, rendered.stderr

    result = _dry_run(control_plane, tmp_path, rendered.stdout)

    assert result.returncode == 0, result.stderr
    assert "daemonset.apps/rebootd created (server dry run)" in result.stdout
    assert "configmap/rebootd-config created (server dry run)" in result.stdout
