"""The reboot sentinels: real files and real processes (sh, sleep, true, false), scaled-down timeouts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rebootd.sentinel import (
    STDERR_TAIL_BYTES,
    CommandSentinel,
    FileSentinel,
    SentinelError,
    make_checker,
)


def process_state(pid: int) -> str | None:
    """The one-letter state of `pid` from /proc (Z = zombie), or None when it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0]


def assert_reaped(pid: int) -> None:
    """`pid` was our child: it must be gone, not a zombie waiting for us."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert process_state(pid) is None


def read_pid(pidfile: Path) -> int | None:
    """The pid a test command wrote to `pidfile`, or None while it has not written it yet."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def wait_for_pid(pidfile: Path) -> int:
    for _ in range(200):  # up to 2 s
        pid = read_pid(pidfile)
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pidfile} was never written")


# --- FileSentinel -----------------------------------------------------------------------------


async def test_file_sentinel_requires_reboot_while_the_file_exists(tmp_path: Path) -> None:
    sentinel = tmp_path / "reboot-required"
    checker = FileSentinel(path=sentinel)
    assert await checker.reboot_required() is False
    sentinel.touch()
    assert await checker.reboot_required() is True
    sentinel.unlink()
    assert await checker.reboot_required() is False


async def test_file_sentinel_under_a_regular_file_is_not_required(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a directory")
    assert await FileSentinel(path=tmp_path / "run" / "reboot-required").reboot_required() is False


async def test_file_sentinel_that_cannot_be_checked_raises(tmp_path: Path) -> None:
    loop = tmp_path / "reboot-required"
    loop.symlink_to(loop)
    with pytest.raises(SentinelError, match=r"cannot check sentinel file .*reboot-required"):
        await FileSentinel(path=loop).reboot_required()


# --- CommandSentinel: exit status -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "required"),
    [
        (["true"], True),
        (["false"], False),
        (["sh", "-c", "exit 3"], False),
        (["sh", "-c", "echo noise; echo more noise >&2; exit 0"], True),
    ],
)
async def test_command_sentinel_requires_reboot_on_exit_status_zero(argv: list[str], required: bool) -> None:
    assert await CommandSentinel(argv=argv, timeout=5).reboot_required() is required


async def test_command_writing_a_mebibyte_to_stderr_does_not_stall() -> None:
    argv = ["sh", "-c", "head -c 1048576 /dev/zero >&2; exit 0"]
    assert await CommandSentinel(argv=argv, timeout=5).reboot_required() is True


async def test_command_killed_by_a_signal_is_an_error_not_an_answer() -> None:
    checker = CommandSentinel(argv=["sh", "-c", "echo dying >&2; kill -KILL $$"], timeout=5)
    with pytest.raises(SentinelError, match="killed by SIGKILL") as info:
        await checker.reboot_required()
    assert info.value.stderr_tail == "dying\n"


# --- CommandSentinel: failures ----------------------------------------------------------------


async def test_command_past_its_timeout_is_killed_reaped_and_raises_quickly(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"echo started >&2; echo $$ > {pidfile}; exec sleep 30"]
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(SentinelError, match=r"did not finish within 0\.2s and was killed") as info:
        await CommandSentinel(argv=argv, timeout=0.2).reboot_required()
    elapsed = loop.time() - began
    assert 0.2 <= elapsed < 1.0
    assert info.value.stderr_tail == "started\n"
    pid = read_pid(pidfile)
    assert pid is not None
    assert_reaped(pid)


async def test_timeout_kills_what_the_command_started_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # The background sleep holds the stderr pipe open; only killing the group ends it.
    argv = ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(SentinelError, match="was killed"):
        await CommandSentinel(argv=argv, timeout=0.2).reboot_required()
    assert loop.time() - began < 1.0
    # The grandchild is not ours to reap (init is its parent now), but it must be dead.
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    assert process_state(grandchild) in (None, "Z", "X")


async def test_timeout_error_keeps_only_the_last_kibibyte_of_stderr() -> None:
    argv = ["sh", "-c", "printf '%03000d' 0 >&2; printf END >&2; exec sleep 30"]
    with pytest.raises(SentinelError) as info:
        await CommandSentinel(argv=argv, timeout=0.2).reboot_required()
    tail = info.value.stderr_tail
    assert len(tail) == STDERR_TAIL_BYTES
    assert tail.endswith("END")
    assert tail[:-3] == "0" * (STDERR_TAIL_BYTES - 3)
    assert "END" in str(info.value)


async def test_cancelled_check_kills_and_reaps_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]
    task = asyncio.create_task(CommandSentinel(argv=argv, timeout=30).reboot_required())
    pid = await wait_for_pid(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_reaped(pid)


async def test_missing_binary_raises_naming_it() -> None:
    checker = CommandSentinel(argv=["rebootd-test-no-such-binary", "--check"], timeout=1)
    with pytest.raises(SentinelError, match="not found: 'rebootd-test-no-such-binary'"):
        await checker.reboot_required()


async def test_missing_absolute_path_raises_naming_it(tmp_path: Path) -> None:
    program = str(tmp_path / "bin" / "needs-restarting")
    with pytest.raises(SentinelError, match="not found") as info:
        await CommandSentinel(argv=[program], timeout=1).reboot_required()
    assert program in str(info.value)


async def test_non_executable_command_raises_permission_error(tmp_path: Path) -> None:
    script = tmp_path / "check"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(SentinelError, match="is not executable"):
        await CommandSentinel(argv=[str(script)], timeout=1).reboot_required()


@pytest.mark.parametrize(("argv", "timeout"), [([], 1.0), ([""], 1.0), (["true"], 0.0), (["true"], -1.0)])
def test_command_sentinel_refuses_empty_commands_and_timeouts(argv: list[str], timeout: float) -> None:
    with pytest.raises(ValueError, match=r"program name|must be positive"):
        CommandSentinel(argv=argv, timeout=timeout)


# --- make_checker -----------------------------------------------------------------------------


async def test_make_checker_prefers_the_command_and_ignores_the_file(tmp_path: Path) -> None:
    sentinel = tmp_path / "reboot-required"
    sentinel.touch()
    checker = make_checker(sentinel_file=sentinel, sentinel_command=["false"], timeout=5)
    assert isinstance(checker, CommandSentinel)
    assert checker.argv == ("false",)
    assert await checker.reboot_required() is False


@pytest.mark.parametrize("command", [None, []])
async def test_make_checker_without_a_command_watches_the_file(
    tmp_path: Path, command: list[str] | None
) -> None:
    sentinel = tmp_path / "reboot-required"
    sentinel.touch()
    checker = make_checker(sentinel_file=sentinel, sentinel_command=command, timeout=5)
    assert checker == FileSentinel(path=sentinel)
    assert await checker.reboot_required() is True
