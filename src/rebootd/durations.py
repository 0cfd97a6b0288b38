"""Durations as operators write them: Go style (`90s`, `1h30m`, `500ms`) or bare seconds.

Rule: parse strictly (a typo is an error, never a silent zero) and format back to the shortest
Go-style string, so `rebootd config` prints what an operator would have written. Hand-written: the
grammar is Go's `time.ParseDuration` (kured's flags use it), which no Python library parses
exactly. A leaf module: it imports nothing of rebootd.
"""

from __future__ import annotations

import math
import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_BARE = re.compile(r"\d+(?:\.\d+)?")

EXPECTED = "a duration such as 90s, 1h30m, 500ms, or a number of seconds"


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError naming the expected form. Negative values are refused."""
    raw = text.strip()
    if not raw:
        raise ValueError(f"expected {EXPECTED}")
    if _BARE.fullmatch(raw):
        return float(raw)
    pos = 0
    total = 0.0
    while pos < len(raw):
        match = _TERM.match(raw, pos)
        if match is None:
            raise ValueError(f"expected {EXPECTED}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not math.isfinite(total):
        raise ValueError(f"expected {EXPECTED} (value too large)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling: 0s, 500ms, 90s -> 1m30s, 5400 -> 1h30m."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}us"
    whole = int(seconds)
    frac = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or frac:
        parts.append(f"{secs + frac:g}s")
    return "".join(parts)
