"""Operator commands: `rebootd status`, `pause`, `resume`, `unlock`.

Rule: operators change the lock only through the same CAS writes the daemons make (never a blind
overwrite), and a command refuses what would leave a node half-done: `unlock` will not free the
slot of a node that rebootd still keeps cordoned unless `--force` says the operator takes over.
Everything shown comes from the cluster (the Lease and the Nodes), not from any daemon's memory.
"""

from __future__ import annotations

import getpass
from dataclasses import replace
from datetime import datetime
from typing import Any

from rebootd.clock import Clock
from rebootd.kube import Kube, format_microtime
from rebootd.lock import NODE_MARK_ANNOTATION, LeaseLock, LockConfig, mark_of
from rebootd.lockstate import Limits, LockState
from rebootd.node import is_ready, set_annotations
from rebootd.schedule import Window

OPERATOR = "(operator)"
REQUIRED_ANNOTATION = "rebootd.io/reboot-required"
WAITING_ANNOTATION = "rebootd.io/waiting-for"


class Refused(Exception):
    """The command would leave the cluster in a state an operator would not want."""


def operator_lock(*, kube: Kube, namespace: str, name: str, clock: Clock) -> LeaseLock:
    config = LockConfig(
        namespace=namespace,
        name=name,
        node=OPERATOR,
        zone="",
        limits=Limits(),
        ttl=300.0,
        renew_interval=30.0,
        boot_allowance=0.0,
    )
    return LeaseLock(kube=kube, config=config, clock=clock)


def operator_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


async def status(*, lock: LeaseLock, window: Window, now: datetime) -> dict[str, Any]:
    """Holders with phase and age, pause/halt, nodes needing a reboot and why they wait, window."""
    state = await lock.refresh()
    nodes = await lock.kube.list_nodes()
    holders = []
    for holder in sorted(state.holders.values(), key=lambda h: h.node):
        age = None
        if holder.acquired:
            try:
                acquired = datetime.fromisoformat(holder.acquired.replace("Z", "+00:00"))
                age = round((now - acquired).total_seconds())
            except ValueError:
                age = None
        holders.append({"node": holder.node, "zone": holder.zone, "phase": holder.phase, "age_seconds": age})
    pending = []
    for node in nodes:
        annotations = node["metadata"].get("annotations") or {}
        if annotations.get(REQUIRED_ANNOTATION) == "true":
            pending.append(
                {
                    "node": node["metadata"]["name"],
                    "waiting_for": annotations.get(WAITING_ANNOTATION, ""),
                    "ready": is_ready(node),
                    "unschedulable": bool(node.get("spec", {}).get("unschedulable")),
                }
            )
    return {
        "lock": f"{lock.config.namespace}/{lock.config.name}",
        "holders": holders,
        "waiters": sorted(state.waiters, key=lambda n: state.waiters[n].ticket),
        "paused": dict(state.paused) if state.paused else None,
        "halted": dict(state.halted) if state.halted else None,
        "reboot_required": pending,
        "window": {
            "open": window.contains(now),
            "next_open": window.next_open(now).isoformat(),
            "schedule": window.describe(),
        },
    }


def render_status(report: dict[str, Any]) -> str:
    lines = [f"Lock {report['lock']}"]
    if report["halted"]:
        halted = report["halted"]
        node = halted.get("node")
        lines.append(f"  HALTED at node {node}: {halted.get('reason')} (since {halted.get('at')})")
        if any(h["node"] == node for h in report["holders"]):
            lines.append(
                f"  Fix the cause and run `rebootd resume`; if node {node} is gone for good, first free "
                f"its slot with `rebootd unlock {node} --force` (it stays cordoned)."
            )
        else:
            lines.append("  Fix the cause, then run `rebootd resume`.")
    if report["paused"]:
        paused = report["paused"]
        lines.append(f"  PAUSED by {paused.get('by')}: {paused.get('reason')} (since {paused.get('at')})")
    if not report["holders"]:
        lines.append("  no node holds a slot")
    for holder in report["holders"]:
        age = "" if holder["age_seconds"] is None else f", for {holder['age_seconds']}s"
        lines.append(f"  holder {holder['node']} (zone {holder['zone'] or '-'}): {holder['phase']}{age}")
    if report["waiters"]:
        lines.append("  queue: " + ", ".join(report["waiters"]))
    window = report["window"]
    state = "open" if window["open"] else f"closed, opens {window['next_open']}"
    lines.append(f"Maintenance window {window['schedule']}: {state}")
    if report["reboot_required"]:
        lines.append("Nodes that need a reboot:")
        for node in report["reboot_required"]:
            why = node["waiting_for"] or "-"
            lines.append(f"  {node['node']}: waiting for {why}")
    else:
        lines.append("No node reports that it needs a reboot.")
    return "\n".join(lines)


async def pause(*, lock: LeaseLock, reason: str, clock: Clock) -> LockState:
    entry = {"reason": reason, "by": operator_name(), "at": format_microtime(clock.now())}
    written = await lock.update(lambda s: replace(s, paused=entry), event="pause")
    return written if written is not None else lock.state


async def resume(*, lock: LeaseLock) -> LockState:
    """Clear a pause and a halt: the rollout continues."""

    def clear(state: LockState) -> LockState | None:
        if not state.paused and not state.halted:
            return None
        return replace(state, paused=None, halted=None)

    written = await lock.update(clear, event="resume")
    return written if written is not None else lock.state


async def unlock(*, lock: LeaseLock, node: str, force: bool) -> bool:
    """Free `node`'s slot. Refused while rebootd keeps that node cordoned, unless `force`."""
    state = await lock.refresh()
    holder = state.holders.get(node)
    if holder is None:
        return False
    obj = await lock.kube.get_node(name=node)
    # Only a marked node can have been cordoned by its holder (the mark comes first); the mark
    # and the record say whether an admin had cordoned it before.
    mark = mark_of(obj)
    evidence = {**(mark.evidence if mark is not None else {}), **holder.evidence}
    cordoned_by_us = (
        mark is not None
        and bool(obj.get("spec", {}).get("unschedulable"))
        and not evidence.get("wasUnschedulable", False)
    )
    if cordoned_by_us and not force:
        raise Refused(
            f"node {node} is still cordoned by rebootd (phase {holder.phase}); "
            f"uncordon it or let its daemon finish, or pass --force to free the slot anyway"
        )
    removed = await lock.update(
        lambda s: s.without_holder(node) if node in s.holders else None, event=f"unlock:{node}"
    )
    await set_annotations(lock.kube, node=node, annotations={NODE_MARK_ANNOTATION: None})
    return removed is not None
