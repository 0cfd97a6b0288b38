"""`rebootd emulator` as a process: seeded cluster, URL on stdout, kubeconfig, clean exit on signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from rebootd.sim.cli import parse_args
from tests.fixtures.emulator import Kubectl
from tests.fixtures.tools import require_binary

SRC = str(Path(__file__).resolve().parents[3] / "src")


async def start_command(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
    code = (
        "import sys; from rebootd.sim.cli import emulator_command; sys.exit(emulator_command(sys.argv[1:]))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, "the emulator command exited before printing its URL"
            if line.startswith("http://"):
                return process, line.strip()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_emulator_command_serves_a_seeded_cluster_until_signalled(tmp_path: Path, signum: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process, url = await start_command(
        "--nodes", "4", "--zones", "2", "--seed", "7", "--kubeconfig", str(kubeconfig)
    )
    try:
        assert url.startswith("http://127.0.0.1:")
        kubectl = Kubectl(
            binary=require_binary("kubectl", install_hint="install kubectl v1.32 on PATH"),
            kubeconfig=kubeconfig,
            cache_dir=tmp_path / "kube-cache",
        )
        nodes = (
            await kubectl("get", "nodes", "-L", "topology.kubernetes.io/zone", "--no-headers")
        ).splitlines()
        assert [line.split()[0] for line in nodes] == ["node-000", "node-001", "node-002", "node-003"]
        assert {line.split()[-1] for line in nodes} == {"zone-a", "zone-b"}
        pdbs = await kubectl("get", "pdb", "-A", "--no-headers", "-o", "custom-columns=NAME:.metadata.name")
        assert pdbs.split() == ["api", "db", "web"]
        ds = await kubectl("get", "daemonsets", "-n", "kube-system", "-o", "name")
        assert ds.strip() == "daemonset.apps/node-agent"
        namespaces = await kubectl("get", "namespaces", "-o", "name")
        assert {"namespace/default", "namespace/kube-system"} <= set(namespaces.split())
        assert "db-0" in await kubectl("get", "pods", "-o", "name")
    finally:
        process.send_signal(signum)
        returncode = await asyncio.wait_for(process.wait(), timeout=10)
    assert returncode == 0


def test_emulator_command_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--nodes", "0"])
    assert info.value.code == 2
    assert "rebootd emulator" in capsys.readouterr().err
