"""Following the lock Lease from outside, and when a scenario's action is due.

Rule: pure. A `LockFollower` is fed each version of the lock Lease it sees (`observe`, with the
observer's own monotonic time) and keeps what the scenario triggers need: the order in which nodes
first took a slot, the phases each holder was seen in, who gave a slot back, the current state and
the first halt. `due` decides, from a follower, the reboots seen so far and the run's elapsed
time, whether an `Action`'s trigger has fired and which node it hits. The emulator's simulation
feeds a follower from its store's change listener (every write); the real control plane's from a
watch of the Lease; both decide with the same `due`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from rebootd.lock import state_of
from rebootd.lockstate import LockState, StateFormatError
from rebootd.sim.scenarios import PHASES, Action


class LockFollower:
    """What was seen of the lock Lease (see the module rule)."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.phases_seen: dict[str, set[str]] = {}
        self.released: set[str] = set()
        self.state = LockState()
        self.halted: Mapping[str, Any] | None = None
        self.halted_at: float | None = None  # the observer's monotonic time the halt was first seen

    def observe(self, lease: Mapping[str, Any], *, now: float) -> None:
        """One version of the Lease (a deleted Lease is not a version: do not pass it)."""
        try:
            state = state_of(lease)
        except StateFormatError:
            return
        for node in self.state.holders:
            if node not in state.holders:
                self.released.add(node)
        for node, holder in state.holders.items():
            if node not in self.phases_seen:
                self.order.append(node)
                self.phases_seen[node] = set()
            self.phases_seen[node].add(holder.phase)
            self.released.discard(node)
        if state.halted and self.halted is None:
            self.halted = state.halted
            self.halted_at = now
        self.state = state

    def holder(self, ordinal: int) -> str | None:
        return self.order[ordinal - 1] if 0 < ordinal <= len(self.order) else None

    def holding(self, node: str, phase: str) -> bool:
        """The node holds a slot now, in `phase` or a later one."""
        holder = self.state.holders.get(node)
        wanted = PHASES.index(phase) if phase in PHASES else 0
        return holder is not None and holder.phase in PHASES and PHASES.index(holder.phase) >= wanted

    def reached(self, node: str, phase: str) -> bool:
        """The node was seen in `phase` or a later one, or it has given its slot back."""
        if node in self.released:
            return True
        wanted = PHASES.index(phase) if phase in PHASES else 0
        return any(PHASES.index(p) >= wanted for p in self.phases_seen.get(node, ()) if p in PHASES)


def due(
    action: Action,
    *,
    follower: LockFollower,
    rebooted: Mapping[str, int],
    needed: Sequence[str],
    elapsed: float,
    first_seen: MutableMapping[int, float],
) -> str | None:
    """The node the action hits ("" for none) when its trigger fired, else None. `first_seen`
    keeps, per action (by id), when a delayed trigger's condition first held."""
    trigger = action.trigger
    if trigger.at is not None:
        return (action.node or "") if elapsed >= trigger.at else None
    if trigger.holder is not None:
        node = follower.holder(trigger.holder)
        if node is None or not follower.reached(node, trigger.phase):
            return None
        if trigger.current and not follower.holding(node, trigger.phase):
            return None
        if trigger.delay > 0:
            seen = first_seen.setdefault(id(action), elapsed)
            if elapsed < seen + trigger.delay:
                return None
        return action.node or node
    if trigger.others_done:
        others = [n for n in needed if n != action.node]
        if all(rebooted.get(n, 0) > 0 for n in others) and not (
            set(follower.state.holders) - {action.node or ""}
        ):
            return action.node or ""
        return None
    return action.node or ""
