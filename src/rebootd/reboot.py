"""Reboot methods: how this daemon asks its host to restart.

Rule: a `Rebooter` does one thing, `await reboot()`, and either the request was handed to the
host (the method returns; the node goes down some time later) or it raises `RebootFailed` with
enough detail to act on (exit status, stderr tail). It never sleeps before acting (any reboot
delay is the cycle's business) and never retries by itself: a failed reboot request is a cycle
decision (Warning Event, back off), not something to repeat blindly.

- `CommandRebooter` runs an argv (default `/bin/systemctl reboot`). With `nsenter=True` it runs it
  as kured does from a privileged pod with `hostPID: true`: `/usr/bin/nsenter -m/proc/1/ns/mnt --
  <argv>`, i.e. in the host's mount namespace, so the host's systemctl and its D-Bus socket are
  used. The command is bounded by `timeout`; on expiry its whole process group is killed. Its
  output goes to temporary files, not pipes: a descendant that keeps a pipe open (a detached
  helper) cannot make us wait after the command itself has exited.
- `SignalRebooter` sends a signal to a process (kured: SIGRTMIN+5 to PID 1, which systemd reads
  as "reboot"). The pid is a parameter so that tests signal a child of their own, never PID 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as signal_module
import tempfile
from collections.abc import Sequence
from typing import IO, Protocol

from rebootd.logs import get_logger

DEFAULT_COMMAND: tuple[str, ...] = ("/bin/systemctl", "reboot")
NSENTER: tuple[str, ...] = ("/usr/bin/nsenter", "-m/proc/1/ns/mnt", "--")
DEFAULT_COMMAND_TIMEOUT = 60.0
STDERR_TAIL_CHARS = 2000
KILL_GRACE = 2.0


class RebootFailed(Exception):
    """The host was not asked to reboot: the command failed or the signal could not be sent."""


class Rebooter(Protocol):
    """One way to reboot the host (kured's Rebooter)."""

    async def reboot(self) -> None:
        """Hand the reboot request to the host; raise RebootFailed when that did not happen."""
        ...


def compose_argv(*, argv: Sequence[str], nsenter: bool) -> tuple[str, ...]:
    """The argv actually executed: `argv`, wrapped in nsenter into PID 1's mount namespace when asked."""
    if not argv or not argv[0]:
        raise ValueError("the reboot command must not be empty")
    return (*NSENTER, *argv) if nsenter else tuple(argv)


def _tail(stream: IO[bytes], limit: int = STDERR_TAIL_CHARS) -> str:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - limit * 4))
    text = stream.read().decode("utf-8", errors="replace").strip()
    return text[-limit:]


class CommandRebooter:
    """Reboots by running a command (kured's `--reboot-command`, optionally through nsenter)."""

    def __init__(
        self,
        *,
        argv: Sequence[str] = DEFAULT_COMMAND,
        nsenter: bool,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"reboot command timeout must be positive, got {timeout}")
        self.argv = compose_argv(argv=argv, nsenter=nsenter)
        self.timeout = timeout
        self._log = get_logger(rebooter="command")

    def __repr__(self) -> str:
        return f"CommandRebooter(argv={list(self.argv)!r}, timeout={self.timeout})"

    async def reboot(self) -> None:
        self._log.info("rebootd.reboot.command_started", argv=list(self.argv))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # its own process group, so a timeout kills all of it
                )
            except OSError as exc:
                raise RebootFailed(f"cannot run reboot command {list(self.argv)}: {exc}") from exc
            try:
                code = await asyncio.wait_for(proc.wait(), timeout=self.timeout)
            except TimeoutError:
                await self._kill(proc)
                raise RebootFailed(
                    f"reboot command {list(self.argv)} timed out after {self.timeout:g}s "
                    f"(stderr: {_tail(err)!r})"
                ) from None
            finally:
                if proc.returncode is None:  # cancelled: do not leave the command running unowned
                    await asyncio.shield(self._kill(proc))
            stderr_tail = _tail(err)
            stdout_tail = _tail(out)
        if code != 0:
            raise RebootFailed(
                f"reboot command {list(self.argv)} exited with status {code} (stderr: {stderr_tail!r})"
            )
        self._log.info(
            "rebootd.reboot.command_done", argv=list(self.argv), stdout=stdout_tail, stderr=stderr_tail
        )

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal_module.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=KILL_GRACE)


class SignalRebooter:
    """Reboots by sending `signal` to `pid` (kured's `--reboot-method=signal`, SIGRTMIN+5 to PID 1)."""

    def __init__(self, *, signal: int, pid: int = 1) -> None:
        valid = signal_module.valid_signals()
        if signal not in {int(s) for s in valid}:
            raise ValueError(f"{signal} is not a valid signal number on this system")
        if pid <= 0:
            raise ValueError(f"the pid to signal must be positive, got {pid}")
        self.signal = signal
        self.pid = pid
        self._log = get_logger(rebooter="signal")

    def __repr__(self) -> str:
        return f"SignalRebooter(signal={self.signal}, pid={self.pid})"

    async def reboot(self) -> None:
        try:
            os.kill(self.pid, self.signal)
        except OSError as exc:
            raise RebootFailed(f"cannot send signal {self.signal} to pid {self.pid}: {exc}") from exc
        self._log.info("rebootd.reboot.signal_sent", signal=self.signal, pid=self.pid)


def default_reboot_signal() -> int:
    """SIGRTMIN+5: systemd's "reboot" signal, kured's default `--reboot-signal`."""
    return int(signal_module.SIGRTMIN) + 5
