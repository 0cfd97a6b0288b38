"""Is a reboot required? The sentinel checkers: a file that exists, or a command that exits 0.

Rule: a checker answers True/False or raises `SentinelError`; it never crashes the daemon, never
blocks the event loop for longer than a stat, and never leaves a process behind. One small
interface (kured's Checker), two pure I/O adapters; what to do with the answer is cycle.py's.
A leaf module: it imports nothing of rebootd.

The command runs without a shell (`create_subprocess_exec`), in a session and process group of
its own, so that on timeout or cancellation the whole group (the command and anything it started)
is killed with SIGKILL and the command reaped before we return. Its stdout is discarded; its
stderr is read through a pipe only to keep the last 1 KiB for the error message (a pipe, not
/dev/null, is the only way to keep a bounded tail without writing a file of unbounded size).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["STDERR_TAIL_BYTES", "Checker", "CommandSentinel", "FileSentinel", "SentinelError", "make_checker"]

STDERR_TAIL_BYTES = 1024
# After SIGKILL a process dies at once unless it is stuck in the kernel (D state); wait this long
# for it (and for its stderr to close) before giving up on reaping it here. asyncio's child
# watcher still reaps it whenever it does exit.
_REAP_TIMEOUT = 2.0
_READ_CHUNK = 4096


class SentinelError(Exception):
    """The sentinel could not be checked; the daemon logs it, counts a failure and tries again."""

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        super().__init__(f"{message}; stderr: {stderr_tail!r}" if stderr_tail else message)
        self.stderr_tail = stderr_tail


class Checker(Protocol):
    """kured's Checker: one question, asked every period."""

    async def reboot_required(self) -> bool:
        """True when this node needs a reboot; raises SentinelError when that cannot be told."""
        ...


@dataclass(frozen=True, kw_only=True)
class FileSentinel:
    """A reboot is required while `path` exists (kured: `/var/run/reboot-required`).

    The check is one `stat` call made inline on the event loop: the sentinel lives on a local
    filesystem (the host's /var/run, mounted into the pod), where a stat is a single syscall that
    returns in microseconds; handing it to a thread would cost more than it could save. (On a
    network filesystem a stat can hang: use a command sentinel, which has a timeout, there.)
    A path that does not exist, or whose parent is not a directory, means "not required"; any
    other failure (permission denied, symlink loop, I/O error) is a SentinelError.
    """

    path: Path

    async def reboot_required(self) -> bool:
        try:
            self.path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise SentinelError(f"cannot check sentinel file {self.path}: {exc.strerror or exc}") from exc
        return True


@dataclass(frozen=True, kw_only=True)
class CommandSentinel:
    """A reboot is required when `argv` exits with status 0 (kured's `--reboot-sentinel-command`).

    Exit status 0 -> required; any other exit status -> not required. Killed by a signal we did not
    send, not finished within `timeout` seconds, not found or not executable -> SentinelError.
    """

    argv: Sequence[str]
    timeout: float

    def __post_init__(self) -> None:
        argv = tuple(self.argv)
        if not argv or not argv[0]:
            raise ValueError("the sentinel command needs at least a program name")
        if not self.timeout > 0:
            raise ValueError(f"the sentinel command timeout must be positive, got {self.timeout}")
        object.__setattr__(self, "argv", argv)

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)

    async def reboot_required(self) -> bool:
        process = await self._start()
        stderr = process.stderr
        if stderr is None:  # cannot happen with stderr=PIPE; keeps the types honest
            raise SentinelError(f"sentinel command {self.command_line!r} started without a stderr pipe")
        tail = bytearray()
        returncode: int | None = None
        try:
            async with asyncio.timeout(self.timeout):
                await _keep_tail(stderr, tail)
                returncode = await process.wait()
        except TimeoutError:
            pass
        finally:
            if returncode is None:  # timed out, or the caller cancelled us: stop the whole group
                await _stop(process, stderr, tail)
        stderr_tail = tail.decode(errors="replace")
        if returncode is None:
            raise SentinelError(
                f"sentinel command {self.command_line!r} did not finish within {self.timeout:g}s "
                "and was killed",
                stderr_tail=stderr_tail,
            )
        if returncode < 0:
            name = _signal_name(-returncode)
            raise SentinelError(
                f"sentinel command {self.command_line!r} was killed by {name}", stderr_tail=stderr_tail
            )
        return returncode == 0

    async def _start(self) -> asyncio.subprocess.Process:
        program = self.argv[0]
        try:
            return await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise SentinelError(f"sentinel command not found: {program!r}") from exc
        except PermissionError as exc:
            raise SentinelError(f"sentinel command {program!r} is not executable: {exc.strerror}") from exc
        except OSError as exc:
            raise SentinelError(f"sentinel command {program!r} could not be started: {exc}") from exc


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Read `stream` to its end, keeping only its last STDERR_TAIL_BYTES in `tail`."""
    while chunk := await stream.read(_READ_CHUNK):
        tail += chunk
        del tail[:-STDERR_TAIL_BYTES]


async def _stop(process: asyncio.subprocess.Process, stderr: asyncio.StreamReader, tail: bytearray) -> None:
    """SIGKILL the command's process group, then reap it, reading the rest of its stderr.

    The group id is the command's pid (start_new_session); signalling it is safe while the leader
    is unreaped or any member lives, which is exactly when there is something to kill.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_REAP_TIMEOUT):
            await _keep_tail(stderr, tail)
            await process.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def make_checker(*, sentinel_file: Path, sentinel_command: Sequence[str] | None, timeout: float) -> Checker:
    """The command sentinel when a command is configured (the file is then ignored, as in kured),
    else the file sentinel."""
    if sentinel_command:
        return CommandSentinel(argv=sentinel_command, timeout=timeout)
    return FileSentinel(path=sentinel_file)
