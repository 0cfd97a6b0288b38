"""`rebootd migrate --from-cluster` against the emulator: the live kured DaemonSet (created with the
real kubectl from a manifest in the shape of kured's release) translates exactly as the manifest
file does, in both outputs; the read is one GET and writes nothing; a node holding kured's lock
is warned about; a missing DaemonSet is an error naming it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import yaml

from rebootd.emulator.emulator import Emulator
from tests.fixtures.emulator import Kubectl
from tests.integration.test_daemon import rebootd_argv

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kured" / "kured-ds.yaml"
WRITES = {"create", "update", "patch", "delete", "evict"}


async def migrate(*args: str, extra_env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REBOOTD_", "KURED_", "KUBECONFIG"))}
    env.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        *rebootd_argv(),
        "migrate",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def without_source_line(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "translated by `rebootd migrate`" not in line)


async def test_the_live_kured_daemonset_translates_as_its_manifest_does_and_nothing_is_written(
    emulator: Emulator, kubectl: Kubectl, tmp_path: Path
) -> None:
    emulator.add_namespace(name="kube-system")
    await kubectl("create", "-f", str(FIXTURE))
    lock = json.dumps(
        {"nodeID": "node-7", "metadata": {"unschedulable": False}, "created": "2026-01-01T00:00:00Z"}
    )
    await kubectl(
        "annotate", "-n", "kube-system", "daemonset", "kured-pool-a", f"example.com/pool-a-lock={lock}"
    )
    operator = emulator.write_kubeconfig(tmp_path / "operator-kubeconfig")
    before = len(emulator.history)
    for output in ("kustomize", "helm"):
        code, live, err = await migrate(
            "--from-cluster", "--namespace", "kube-system", "--name", "kured-pool-a",
            "--kubeconfig", str(operator), "--output", output,
        )  # fmt: skip
        assert code == 0, err
        assert "live DaemonSet kube-system/kured-pool-a" in live
        assert "held by node node-7" in err, err
        code, from_file, err = await migrate(str(FIXTURE), "--output", output)
        assert code == 0, err
        assert without_source_line(live) == without_source_line(from_file)
        assert yaml.safe_load(live)
    writes = [r for r in emulator.history[before:] if r.verb in WRITES]
    assert writes == [], "migrate only reads"


async def test_a_missing_daemonset_is_an_error_naming_it(emulator: Emulator, tmp_path: Path) -> None:
    """(The kubeconfig comes from REBOOTD_KUBECONFIG here, as for the operator commands.)"""
    operator = emulator.write_kubeconfig(tmp_path / "operator-kubeconfig")
    code, out, err = await migrate(
        "--from-cluster", "--namespace", "kube-system", "--name", "kured",
        extra_env={"REBOOTD_KUBECONFIG": str(operator)},
    )  # fmt: skip
    assert code == 1
    assert out == ""
    assert "no DaemonSet kube-system/kured" in err


async def test_a_file_and_from_cluster_together_is_a_usage_error() -> None:
    code, out, err = await migrate(str(FIXTURE), "--from-cluster")
    assert code == 2
    assert out == ""
    assert "not both" in err
