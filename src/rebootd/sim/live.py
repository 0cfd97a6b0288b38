"""Progress of a simulated rollout while it runs: a live view on a terminal, plain lines otherwise.

Rule: a `Snapshot` is computed from the emulator's state (pure function `snapshot_of`); the
views only render snapshots. The live view redraws its block in place with two ANSI sequences
(cursor to the start of the previous block, clear below); it is a few lines, so it does not pull
in a terminal UI library as a runtime dependency. The plain view prints one line per change of a
node's phase, for logs and pipes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO

DONE = "done"
WAITING = "waiting"
IDLE = "idle"
DOWN = "down"


@dataclass(frozen=True)
class Snapshot:
    elapsed: float
    phases: Mapping[str, str]  # node -> phase as seen from the API (holder phase, down, done, ...)
    holders: Sequence[str]
    done: int
    needed: int
    halted: str | None


def snapshot_of(
    *,
    elapsed: float,
    nodes: Sequence[str],
    needed: Sequence[str],
    holder_phases: Mapping[str, str],
    rebooted: Mapping[str, int],
    down: set[str],
    halted: str | None,
) -> Snapshot:
    """Each node's phase from the API's point of view: a holder's phase from the Lease ("down"
    while its node is not Ready), "done" once rebooted, "waiting" if it needs a reboot, else idle."""
    wanted = set(needed)
    phases = {}
    for node in nodes:
        if node in holder_phases:
            phases[node] = DOWN if node in down else holder_phases[node]
        elif rebooted.get(node, 0) > 0:
            phases[node] = DOWN if node in down else DONE
        elif node in wanted:
            phases[node] = WAITING
        else:
            phases[node] = IDLE
    done = sum(1 for n in needed if rebooted.get(n, 0) > 0 and n not in holder_phases)
    return Snapshot(
        elapsed=elapsed,
        phases=phases,
        holders=sorted(holder_phases),
        done=done,
        needed=len(needed),
        halted=halted,
    )


class Progress(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def update(self, snapshot: Snapshot) -> None:
        del snapshot

    def finish(self) -> None:
        return None


def _holders(snapshot: Snapshot) -> str:
    return ", ".join(f"{n} ({snapshot.phases.get(n, '?')})" for n in snapshot.holders) or "-"


class LineProgress:
    """One line per change of a node's phase (and a line when the rollout halts)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: dict[str, str] = {}
        self._halted = False

    def update(self, snapshot: Snapshot) -> None:
        for node, phase in snapshot.phases.items():
            if self._last.get(node) == phase:
                continue
            first = node not in self._last
            self._last[node] = phase
            if first and phase in (WAITING, IDLE):
                continue
            self._stream.write(
                f"[{snapshot.elapsed:7.2f}s] {node} {phase}  "
                f"(done {snapshot.done}/{snapshot.needed}; holders: {', '.join(snapshot.holders) or '-'})\n"
            )
        if snapshot.halted and not self._halted:
            self._halted = True
            self._stream.write(f"[{snapshot.elapsed:7.2f}s] HALTED {snapshot.halted}\n")
        self._stream.flush()

    def finish(self) -> None:
        self._stream.flush()


class LiveView:
    """A block redrawn in place: done/total, holders, and every node's phase in columns."""

    def __init__(self, stream: TextIO, *, width: int = 100) -> None:
        self._stream = stream
        self._width = width
        self._drawn = 0

    def render(self, snapshot: Snapshot) -> list[str]:
        lines = [
            f"rebootd simulate  {snapshot.elapsed:6.1f}s  done {snapshot.done}/{snapshot.needed}  "
            f"holders: {_holders(snapshot)}"
        ]
        if snapshot.halted:
            lines.append(f"HALTED {snapshot.halted}"[: self._width])
        cells = [f"{node} {phase}" for node, phase in snapshot.phases.items()]
        cell = max((len(c) for c in cells), default=10) + 2
        per_line = max(1, self._width // cell)
        for start in range(0, len(cells), per_line):
            lines.append("".join(c.ljust(cell) for c in cells[start : start + per_line]).rstrip())
        return lines

    def update(self, snapshot: Snapshot) -> None:
        lines = self.render(snapshot)
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the block's start, clear below
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()
        self._drawn = len(lines)

    def finish(self) -> None:
        self._stream.write("\n")
        self._stream.flush()
