"""The operator commands behave like kubectl's: `status` only reads, results go to stdout and log
lines to stderr (warning and above unless -v), `-o json|yaml|wide`, and the same program runs as
the kubectl plugin `kubectl rebootd` through the real kubectl. Against the emulator, whose request
counts and history prove what the commands sent and wrote.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from rebootd.emulator.cluster import KUBELET
from rebootd.emulator.emulator import Emulator
from tests.fixtures.tools import require_binary, running_in_ci
from tests.integration.test_daemon import rebootd_argv

RUN_TIMEOUT = 60.0


async def run(
    argv: list[str], *, emulator: Emulator, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "operator-kubeconfig")
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REBOOTD_")},
        "KUBECONFIG": str(kubeconfig),
        "REBOOTD_LOCK_NAMESPACE": "kube-system",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        *argv, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def verbs(emulator: Emulator) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (_client, verb), count in emulator.request_counts.items():
        counts[verb] += count
    return counts


async def test_status_without_a_lease_says_so_writes_nothing_and_exits_0(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_node(name="n1", zone="z1")
    history_before = len(emulator.history)
    verbs_before = verbs(emulator)

    code, out, err = await run([*rebootd_argv(), "status"], emulator=emulator, tmp_path=tmp_path)

    assert code == 0, err
    assert "no Lease yet" in out
    assert err == ""
    assert emulator.get_object(kind="Lease", namespace="kube-system", name="rebootd") is None
    # (the kubelets' heartbeat renewals go on meanwhile: writes, but not the command's)
    assert [r for r in emulator.history[history_before:] if r.event == "write" and r.client != KUBELET] == []
    sent = verbs(emulator) - verbs_before
    assert sent, "status sent no request at all?"
    assert set(sent) <= {"get", "list"}, f"status sent {dict(sent)}"


async def test_status_output_json_yaml_and_wide_show_the_same_report(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_node(name="n1", zone="z1")
    code, _, err = await run(
        [*rebootd_argv(), "pause", "--reason", "change freeze"], emulator=emulator, tmp_path=tmp_path
    )
    assert code == 0, err

    reports = {}
    for output in ("json", "yaml"):
        code, out, err = await run(
            [*rebootd_argv(), "status", "-o", output], emulator=emulator, tmp_path=tmp_path
        )
        assert code == 0, err
        reports[output] = json.loads(out) if output == "json" else yaml.safe_load(out)
    code, wide, err = await run(
        [*rebootd_argv(), "status", "-o", "wide"], emulator=emulator, tmp_path=tmp_path
    )

    assert code == 0, err
    assert reports["json"]["paused"]["reason"] == "change freeze"
    assert reports["json"]["lease_exists"] is True
    # The window's next opening is "now" at each run; everything else is the cluster's state.
    for report in reports.values():
        report["window"].pop("next_open")
    assert reports["json"] == reports["yaml"]
    assert "PAUSED by" in wide
    assert "change freeze" in wide


async def test_log_lines_go_to_stderr_and_only_at_warning_unless_verbose(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_node(name="n1", zone="z1")

    code, out, err = await run(
        [*rebootd_argv(), "pause", "--reason", "quiet"], emulator=emulator, tmp_path=tmp_path
    )
    assert code == 0, err
    assert out == "paused: quiet\n"
    assert err == ""  # creating the Lease and writing the pause are info events

    code, out, err = await run([*rebootd_argv(), "resume", "-v"], emulator=emulator, tmp_path=tmp_path)
    assert code == 0, err
    assert out.startswith("lifted the pause by ")
    assert "rebootd." not in out
    assert "[info" in err
    assert "rebootd.lock." in err


def kubectl_plugin_dir() -> Path:
    """The folder of the installed `kubectl-rebootd` console script (nox installs the package)."""
    script = Path(sys.executable).with_name("kubectl-rebootd")
    if not script.exists():
        message = f"{script} is not installed (pip install -e . installs the kubectl plugin)"
        if running_in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return script.parent


async def test_kubectl_rebootd_status_runs_the_plugin_through_the_real_kubectl(
    emulator: Emulator, tmp_path: Path
) -> None:
    kubectl = require_binary("kubectl", install_hint="install kubectl v1.32 on PATH")
    plugins = kubectl_plugin_dir()
    emulator.add_node(name="n1", zone="z1")
    env = {"PATH": os.pathsep.join([str(plugins), os.environ.get("PATH", "")])}

    code, listed, err = await run([kubectl, "plugin", "list"], emulator=emulator, tmp_path=tmp_path, env=env)
    assert str(plugins / "kubectl-rebootd") in listed, listed + err

    code, out, err = await run(
        [kubectl, "rebootd", "status", "-o", "json"], emulator=emulator, tmp_path=tmp_path, env=env
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["lock"] == "kube-system/rebootd"
    assert report["lease_exists"] is False

    code, _, err = await run(
        [kubectl, "rebootd", "unlock", "n1"], emulator=emulator, tmp_path=tmp_path, env=env
    )
    assert code == 1  # the documented exit status of a refused or failed command
    assert "holds no slot" in err
