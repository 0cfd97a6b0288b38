"""Every manifest built from deploy/kustomize (the base and each overlay) is accepted by the real
kube-apiserver: `kubectl apply --dry-run=server` (admission, defaulting, validation against the
served OpenAPI schemas, CRD schemas included) and then applied for real, each object then read
back from the server.

The prometheus-operator overlay's ServiceMonitor and PrometheusRule need the Prometheus Operator's
CRDs: they are installed first from the operator's published files (crds/README.md says which
release and checks their SHA-256), and a server-side dry run of the overlay before they are
installed is refused for want of those kinds, which shows that the check reaches the CRD schemas.

Everything applied here lives in kube-system (or is cluster-scoped) and is deleted at the end of
the module, so the session's other tests see no rebootd objects they did not create.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebootd.controlplane import ControlPlane
from tests.fixtures.controlplane import run_kubectl

ROOT = Path(__file__).resolve().parents[3]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
CRDS = Path(__file__).with_name("crds")
CRD_SHA256 = {
    "monitoring.coreos.com_servicemonitors.yaml": (
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32"
    ),
    "monitoring.coreos.com_prometheusrules.yaml": (
        "78be98554b9c8506ab2b4f4feb91c5f3a56e536a0a510f3a8e876a459970d56d"
    ),
}
BUILDS = ("base", *sorted(f"overlays/{p.name}" for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir()))
NEEDS_CRDS = "overlays/prometheus-operator"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args[3:]} failed:\n{result.stderr}"
    return result.stdout


def built(plane: ControlPlane, tmp_path: Path, build: str) -> tuple[str, list[dict[str, Any]]]:
    text = ok(run_kubectl(plane, tmp_path, "kustomize", str(KUSTOMIZE / build)))
    return text, [doc for doc in yaml.safe_load_all(text) if doc]


def install_crds(plane: ControlPlane, tmp_path: Path) -> None:
    for name, digest in CRD_SHA256.items():
        assert hashlib.sha256((CRDS / name).read_bytes()).hexdigest() == digest, f"{name} was changed"
        ok(run_kubectl(plane, tmp_path, "apply", "--server-side", "-f", str(CRDS / name)))
    names = [f"crd/{name.split('_')[1].removesuffix('.yaml')}.monitoring.coreos.com" for name in CRD_SHA256]
    ok(run_kubectl(plane, tmp_path, "wait", "--for=condition=Established", "--timeout=60s", *names))


@pytest.fixture(scope="module")
def cleanup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubectl cache directory; on the way out every object of every build is deleted."""
    work = tmp_path_factory.mktemp("manifests")
    yield work
    for build in BUILDS:
        run_kubectl(
            control_plane, work, "delete", "-k", str(KUSTOMIZE / build), "--ignore-not-found", "--wait=false"
        )


def test_the_overlay_with_operator_objects_is_refused_by_the_server_without_the_operator_crds(
    control_plane: ControlPlane, cleanup: Path
) -> None:
    text, _ = built(control_plane, cleanup, NEEDS_CRDS)
    crds = run_kubectl(control_plane, cleanup, "get", "crd", "-o", "name")
    if "servicemonitors.monitoring.coreos.com" in ok(crds):
        pytest.fail("the CRDs were installed before this test: it must run first in the module")
    refused = run_kubectl(control_plane, cleanup, "apply", "--dry-run=server", "-f", "-", stdin=text)
    assert refused.returncode != 0
    assert 'no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1"' in refused.stderr


@pytest.mark.parametrize("build", BUILDS)
def test_each_kustomize_build_passes_a_server_side_dry_run_and_is_then_applied(
    control_plane: ControlPlane, cleanup: Path, build: str
) -> None:
    if build == NEEDS_CRDS:
        install_crds(control_plane, cleanup)
    text, objects = built(control_plane, cleanup, build)
    dry = ok(run_kubectl(control_plane, cleanup, "apply", "--dry-run=server", "-f", "-", stdin=text))
    assert dry.count("(server dry run)") == len(objects), dry
    applied = ok(run_kubectl(control_plane, cleanup, "apply", "-f", "-", stdin=text))
    assert len(applied.splitlines()) == len(objects), applied
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        namespace = obj["metadata"].get("namespace")
        where = ["-n", namespace] if namespace else []
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        resource = f"{kind.lower()}.{group}" if group else kind.lower()
        read = yaml.safe_load(
            ok(run_kubectl(control_plane, cleanup, "get", resource, name, *where, "-o", "yaml"))
        )
        assert read["metadata"]["uid"], (kind, name)
        if "spec" in obj and kind != "DaemonSet":  # the DaemonSet's spec gains defaults
            for key, value in obj["spec"].items():
                if not isinstance(value, dict | list):
                    assert read["spec"][key] == value, (kind, name, key)
        if kind == "PrometheusRule":  # every alert of the overlay is stored
            assert alerts(read) == alerts(obj) != []


def alerts(rule: dict[str, Any]) -> list[str]:
    return [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
