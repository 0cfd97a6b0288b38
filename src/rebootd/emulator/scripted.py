"""Scripted faults of the named scenarios: which daemon write to hold or to lose, by what it does.

Rule: a named scenario must reproduce the same interleaving on every run, so a scripted fault
names the write it hits by its effect, never by timing: "the n-th cordon" is the n-th write by a
daemon client (`is_daemon`) that turns a Node's `spec.unschedulable` from false to true; "the
n-th mark" the n-th that puts the holder mark (`rebootd.lock.NODE_MARK_ANNOTATION`) on a Node
that had none. Holding
runs an action (an operator's command) between the daemon's decision and the server applying it,
exactly the window a real race needs; losing applies the write and then loses its answer (a reset
or a 504). Each rule fires once. Nothing here draws random numbers; the seeded, rate-based faults
are in `rebootd.emulator.faults`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from rebootd.emulator.errors import JsonObj
from rebootd.emulator.faults import FaultKind
from rebootd.logs import get_logger
from rebootd.marks import NODE_MARK_ANNOTATION

__all__ = ["NodeWriteRule", "ScriptedWrites", "is_cordon", "is_mark"]

What = Literal["cordon", "mark"]

Hold = Callable[[str], Awaitable[None]]


def _unschedulable(node: JsonObj | None) -> bool:
    return bool(((node or {}).get("spec") or {}).get("unschedulable"))


def is_cordon(*, before: JsonObj | None, after: JsonObj | None) -> bool:
    """A write that turns an existing schedulable Node unschedulable."""
    return before is not None and after is not None and not _unschedulable(before) and _unschedulable(after)


def _mark(node: JsonObj | None) -> str:
    return str(
        (((node or {}).get("metadata") or {}).get("annotations") or {}).get(NODE_MARK_ANNOTATION) or ""
    )


def is_mark(*, before: JsonObj | None, after: JsonObj | None) -> bool:
    """A write that puts the holder mark on an existing Node that had none."""
    return before is not None and after is not None and not _mark(before) and bool(_mark(after))


def _matches(what: What, *, before: JsonObj | None, after: JsonObj | None) -> bool:
    return is_cordon(before=before, after=after) if what == "cordon" else is_mark(before=before, after=after)


@dataclass
class NodeWriteRule:
    """Hit the `nth` daemon write of kind `what` (1 = the first): `hold` is awaited with the
    node's name before the server applies it; `lose` loses its answer once applied. Fires once."""

    what: What = "cordon"
    nth: int = 1
    lose: FaultKind | None = None
    hold: Hold | None = None
    then: Callable[[str], None] | None = None  # right after it is applied, before its answer
    fired: bool = False
    held: tuple[str, str] | None = None  # (client, node) of the write it held


class ScriptedWrites:
    """The emulator's write hook (`rebootd.emulator.apiserver.WriteHook`) for node-write rules."""

    def __init__(
        self,
        *,
        is_daemon: Callable[[str], bool],
        rules: list[NodeWriteRule],
        note: Callable[[str], None] | None = None,
    ) -> None:
        for rule in rules:
            if rule.nth < 1:
                raise ValueError(f"a node-write rule's nth must be >= 1, got {rule.nth}")
        self._is_daemon = is_daemon
        self._rules = rules
        # per kind: daemon writes seen before being applied (holds count these), and applied
        # (losses count these)
        self._previewed: dict[What, int] = {"cordon": 0, "mark": 0}
        self._applied: dict[What, int] = {"cordon": 0, "mark": 0}
        self.events: list[str] = []  # what fired, for the report's scenario actions
        self._note = note
        self._log = get_logger(component="sim-scripted")

    def _record(self, text: str) -> None:
        self.events.append(text)
        if self._note is not None:
            self._note(text)

    def watches(self, *, client: str, resource: str, verb: str, subresource: str) -> bool:
        return (
            resource == "nodes"
            and verb in ("patch", "update")
            and subresource == ""
            and self._is_daemon(client)
            and any(not r.fired for r in self._rules)
        )

    async def before(
        self, *, client: str, name: str, current: JsonObj | None, preview: JsonObj | None
    ) -> None:
        for what in ("cordon", "mark"):
            if not _matches(what, before=current, after=preview):
                continue
            self._previewed[what] += 1
            for rule in self._rules:
                if rule.what != what or rule.hold is None or rule.fired or rule.nth != self._previewed[what]:
                    continue
                rule.fired = rule.lose is None and rule.then is None  # else it ends once applied
                rule.held = (client, name)
                self._record(f"held {what} #{rule.nth} of {name} ({client}) while an action ran")
                self._log.info(
                    "rebootd.emulator.write_held", what=what, node=name, client=client, nth=rule.nth
                )
                await rule.hold(name)

    def after(self, *, client: str, name: str, before: JsonObj | None, after: JsonObj) -> FaultKind | None:
        lost: FaultKind | None = None
        for what in ("cordon", "mark"):
            if not _matches(what, before=before, after=after):
                continue
            self._applied[what] += 1
            for rule in self._rules:
                # a rule that held a write follows that very write; otherwise the nth applied one
                this = (
                    rule.held == (client, name) if rule.hold is not None else rule.nth == self._applied[what]
                )
                if rule.what != what or rule.fired or not this:
                    continue
                rule.fired = True
                if rule.then is not None:
                    self._record(f"{what} #{rule.nth} of {name} applied; an action runs before its answer")
                    rule.then(name)
                if rule.lose is not None:
                    lost = rule.lose
                    self._record(f"lost the response of {what} #{rule.nth} of {name} ({client}): {lost}")
                    self._log.info(
                        "rebootd.emulator.response_lost", what=what, node=name, client=client, kind=lost
                    )
        return lost
