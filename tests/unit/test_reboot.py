"""Reboot methods: the command really runs with the argv given (nsenter-wrapped as kured does),
failures raise RebootFailed with the stderr tail, and the signal method signals the pid it is
given (a child of the test, never PID 1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from rebootd.reboot import (
    DEFAULT_COMMAND,
    CommandRebooter,
    Rebooter,
    RebootFailed,
    SignalRebooter,
    compose_argv,
    default_reboot_signal,
)


async def test_command_rebooter_runs_the_argv_as_given(tmp_path: Path) -> None:
    marker = tmp_path / "rebooted with spaces"
    rebooter: Rebooter = CommandRebooter(argv=["touch", str(marker)], nsenter=False)

    await rebooter.reboot()

    assert marker.is_file()


def test_nsenter_wraps_the_command_into_pid1_mount_namespace_like_kured() -> None:
    assert compose_argv(argv=["ls", "-Fal"], nsenter=True) == (
        "/usr/bin/nsenter",
        "-m/proc/1/ns/mnt",
        "--",
        "ls",
        "-Fal",
    )
    assert CommandRebooter(nsenter=True).argv == (
        "/usr/bin/nsenter",
        "-m/proc/1/ns/mnt",
        "--",
        *DEFAULT_COMMAND,
    )
    assert CommandRebooter(nsenter=False).argv == ("/bin/systemctl", "reboot")


def test_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        CommandRebooter(argv=[], nsenter=True)


async def test_failing_command_raises_with_exit_status_and_stderr_tail() -> None:
    script = "echo stdout-$((40+2)); echo first-line >&2; echo last-line-of-stderr-$((6*7)) >&2; exit 3"
    rebooter = CommandRebooter(argv=["/bin/sh", "-c", script], nsenter=False)

    with pytest.raises(RebootFailed) as caught:
        await rebooter.reboot()

    message = str(caught.value)
    assert "exited with status 3" in message
    assert "last-line-of-stderr-42" in message
    assert "stdout-42" not in message


async def test_missing_binary_raises_reboot_failed(tmp_path: Path) -> None:
    rebooter = CommandRebooter(argv=[str(tmp_path / "no-such-reboot")], nsenter=False)

    with pytest.raises(RebootFailed, match="cannot run reboot command"):
        await rebooter.reboot()


async def test_hanging_command_is_killed_with_its_children_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # a background child keeps the output open and outlives the shell unless its group is killed
    script = f"sleep 30 & echo $! > {pid_file}; echo waiting >&2; wait"
    rebooter = CommandRebooter(argv=["/bin/sh", "-c", script], nsenter=False, timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(RebootFailed, match=r"timed out after 0\.5s .*waiting"):
        await rebooter.reboot()

    assert loop.time() - started < 3.0
    child = int(pid_file.read_text())
    for _ in range(100):
        if _proc_state(child) in ("gone", "Z"):
            break
        await asyncio.sleep(0.02)
    assert _proc_state(child) in ("gone", "Z"), "the command's child was killed with it"


async def test_command_exiting_while_a_detached_child_holds_its_output_does_not_hang(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pid_file}; exit 0"
    rebooter = CommandRebooter(argv=["/bin/sh", "-c", script], nsenter=False, timeout=10.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await rebooter.reboot()
        assert loop.time() - started < 2.0
    finally:
        signal_pid(int(pid_file.read_text()), signal.SIGKILL)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def test_signal_rebooter_sends_the_signal_to_the_given_pid() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(30)", stdin=asyncio.subprocess.DEVNULL
    )
    try:
        await SignalRebooter(signal=signal.SIGUSR1, pid=child.pid).reboot()
        code = await asyncio.wait_for(child.wait(), timeout=10.0)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert code == -signal.SIGUSR1


async def test_signal_rebooter_fails_for_a_missing_process() -> None:
    child = await asyncio.create_subprocess_exec("true")
    await child.wait()  # reaped: its pid is free (and not reused within this test)

    with pytest.raises(RebootFailed, match=f"pid {child.pid}"):
        await SignalRebooter(signal=signal.SIGUSR1, pid=child.pid).reboot()


def test_signal_rebooter_validates_signal_and_pid() -> None:
    assert default_reboot_signal() == signal.SIGRTMIN + 5
    with pytest.raises(ValueError, match="not a valid signal"):
        SignalRebooter(signal=10_000)
    with pytest.raises(ValueError, match="positive"):
        SignalRebooter(signal=signal.SIGUSR1, pid=0)
