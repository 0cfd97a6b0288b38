"""Reading a process's memory and CPU time from /proc (Linux), as the kubelet's cgroup would see
the daemon's own share.

Rule: parsing is pure (`parse_status`, `parse_cpu_seconds`); the readers return None once the
process is gone instead of raising, so a sampler can race a process exit.
"""

from __future__ import annotations

import os
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024


def parse_status(text: str) -> dict[str, int]:
    """The `kB` fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...) in bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0]) * KIB
    return out


def parse_cpu_seconds(stat: str, *, ticks_per_second: int) -> float:
    """utime + stime of /proc/PID/stat in seconds. The command name (field 2) may contain spaces
    and parentheses, so fields are counted after its closing parenthesis."""
    after = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after[11]), int(after[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / ticks_per_second


def memory(pid: int) -> dict[str, int] | None:
    try:
        return parse_status(Path(f"/proc/{pid}/status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_cpu_seconds(stat, ticks_per_second=os.sysconf("SC_CLK_TCK"))


def mib(value: int | None) -> float | None:
    return None if value is None else value / MIB
