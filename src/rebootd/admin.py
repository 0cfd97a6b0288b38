"""Operator commands: `rebootd status`, `pause`, `resume`, `unlock`.

Rule: operators change the lock only through the same CAS writes the daemons make (never a blind
overwrite), scoped to exactly what they were shown: `resume` clears the very halt (or pause) it
read, never one recorded since, and clearing a halt and lifting a pause are separate requests;
`unlock` follows the reclaim protocol of lock.py for the grant it read (mark the record
`reclaiming`, put the node back in one guarded write, remove the record) and refuses, unless
`--force`, while the node may be down (phases draining, rebooting, verifying). `status` only
reads (a get of the Lease, a list of Nodes): with no Lease yet it says so and creates nothing.
Everything shown comes from the cluster (the Lease and the Nodes), not from any daemon's memory.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from rebootd.clock import Clock
from rebootd.kube import Kube, format_microtime
from rebootd.lock import LeaseStore
from rebootd.lockstate import LockState, resolve_share
from rebootd.marks import HALT_ANNOTATION, halt_mirror, queue_of
from rebootd.node import is_ready, set_annotations
from rebootd.phases import DISRUPTED_PHASES as DISRUPTED_PHASES  # drained, down or not proven back
from rebootd.schedule import Window

OPERATOR = "(operator)"
REQUIRED_ANNOTATION = "rebootd.io/reboot-required"
WAITING_ANNOTATION = "rebootd.io/waiting-for"


class Refused(Exception):
    """The command would leave the cluster in a state an operator would not want."""


def operator_lock(*, kube: Kube, namespace: str, name: str, clock: Clock) -> LeaseStore:
    """The operator's handle on the lock: the Lease store itself (no grant, no slot), as the
    daemons' `LeaseLock` is built on it. Its writes set leaseDurationSeconds to 300 s, as they
    always did (the daemons judge staleness by their own TTL, never by this field)."""
    return LeaseStore(kube=kube, namespace=namespace, name=name, clock=clock, ttl=300.0, identity=OPERATOR)


def operator_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def resolved_limits(
    *,
    nodes: list[dict[str, Any]],
    concurrency: int | str,
    zone_concurrency: int | str,
    zone_label: str,
) -> dict[str, Any]:
    """The limits as the daemons resolve them now: a share ("10%") of the nodes (of the zone's
    nodes for the zone limit), rounded down, at least 1 (`lockstate.resolve_share`)."""
    zones: dict[str, int] = {}
    for node in nodes:
        zone = str((node["metadata"].get("labels") or {}).get(zone_label, ""))
        zones[zone] = zones.get(zone, 0) + 1
    return {
        "nodes": len(nodes),
        "concurrency": concurrency,
        "concurrency_resolved": resolve_share(concurrency, nodes=len(nodes), floor=1),
        "zone_concurrency": zone_concurrency,
        "zone_concurrency_resolved": {
            zone: resolve_share(zone_concurrency, nodes=count, floor=1)
            for zone, count in sorted(zones.items())
        }
        if zone_concurrency != 0
        else {},
    }


async def status(
    *,
    lock: LeaseStore,
    window: Window,
    now: datetime,
    concurrency: int | str = 1,
    zone_concurrency: int | str = 0,
    zone_label: str = "topology.kubernetes.io/zone",
) -> dict[str, Any]:
    """Holders with phase and age, pause/halt, the whole queue, nodes needing a reboot and why
    they wait, the limits resolved against today's node count, the window. Reads only: a missing
    Lease is reported (`lease_exists` false), never created."""
    read = await lock.read()
    state = read if read is not None else LockState()
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
    head = sorted(state.waiters.values(), key=lambda w: (w.ticket, w.node))
    named = {*state.waiters, *state.holders}
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
        "lock": f"{lock.namespace}/{lock.name}",
        "lease_exists": read is not None,
        "holders": holders,
        # The whole queue: the head the Lease names (served first), then the Nodes' queue records.
        "waiters": [w.node for w in head] + [w.node for w in queue_of(nodes) if w.node not in named],
        "queue_head": [w.node for w in head],
        "paused": dict(state.paused) if state.paused else None,
        "halted": dict(state.halted) if state.halted else None,
        "deleting": lock.deleting,
        "limits": resolved_limits(
            nodes=nodes, concurrency=concurrency, zone_concurrency=zone_concurrency, zone_label=zone_label
        ),
        "reboot_required": pending,
        "window": {
            "open": window.contains(now),
            "next_open": window.next_open(now).isoformat(),
            "schedule": window.describe(),
        },
    }


def render_status(report: dict[str, Any], *, wide: bool = False) -> str:
    """The text of `rebootd status`; `wide` adds each holder's age and each waiting node's
    readiness and schedulability (as `kubectl get -o wide` adds columns)."""
    lines = [f"Lock {report['lock']}"]
    if not report.get("lease_exists", True):
        lines.append("  no Lease yet: no daemon has started here (or it was deleted); no node holds a slot")
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
    if report.get("deleting"):
        lines.append(
            "  DELETING: the Lease was deleted; no new reboots; it goes once no node holds a slot and the "
            "rollout is neither paused nor halted, and is then re-created"
        )
    if report["paused"]:
        paused = report["paused"]
        lines.append(f"  PAUSED by {paused.get('by')}: {paused.get('reason')} (since {paused.get('at')})")
    limits = report.get("limits")
    if limits:
        line = f"  concurrency {limits['concurrency']}"
        if isinstance(limits["concurrency"], str):
            line += f" of {limits['nodes']} nodes"
        line += f": {limits['concurrency_resolved']} at once"
        if limits["zone_concurrency_resolved"]:
            per_zone = ", ".join(f"{z or '-'} {n}" for z, n in limits["zone_concurrency_resolved"].items())
            line += f"; per zone {limits['zone_concurrency']}: {per_zone}"
        lines.append(line)
    if not report["holders"] and report.get("lease_exists", True):
        lines.append("  no node holds a slot")
    for holder in report["holders"]:
        age = "" if holder["age_seconds"] is None else f", for {holder['age_seconds']}s"
        lines.append(f"  holder {holder['node']} (zone {holder['zone'] or '-'}): {holder['phase']}{age}")
    if report["waiters"]:
        shown = report["waiters"][:50]
        more = len(report["waiters"]) - len(shown)
        lines.append(
            f"  queue ({len(report['waiters'])}, the first {len(report.get('queue_head', []))} named in "
            "the Lease): "
            + ", ".join(shown)
            + (f", ... and {more} more (--output json lists all)" if more else "")
        )
    window = report["window"]
    state = "open" if window["open"] else f"closed, opens {window['next_open']}"
    lines.append(f"Maintenance window {window['schedule']}: {state}")
    if report["reboot_required"]:
        lines.append("Nodes that need a reboot:")
        for node in report["reboot_required"]:
            why = node["waiting_for"] or "-"
            extra = ""
            if wide:
                ready = "Ready" if node["ready"] else "NotReady"
                extra = f" ({ready}{', unschedulable' if node['unschedulable'] else ''})"
            lines.append(f"  {node['node']}{extra}: waiting for {why}")
    else:
        lines.append("No node reports that it needs a reboot.")
    return "\n".join(lines)


async def pause(*, lock: LeaseStore, reason: str, clock: Clock) -> LockState:
    entry = {"reason": reason, "by": operator_name(), "at": format_microtime(clock.now())}
    written = await lock.update(lambda s: replace(s, paused=entry), event="pause")
    return written if written is not None else lock.state


async def resume(
    *, lock: LeaseStore, halt: Mapping[str, Any] | None, pause: Mapping[str, Any] | None
) -> LockState:
    """Clear exactly the halt `halt` (when given) or else lift exactly the pause `pause`: what the
    operator was shown. A halt or pause recorded since then is left in place (Refused)."""

    def clear(state: LockState) -> LockState | None:
        if halt is not None:
            if state.halted != halt:
                raise Refused(f"the halt changed since it was read: now {state.halted}; run again")
            return replace(state, halted=None)
        if pause is not None:
            if state.paused != pause:
                raise Refused(f"the pause changed since it was read: now {state.paused}; run again")
            return replace(state, paused=None)
        return None

    written = await lock.update(clear, event="resume")
    if halt is not None and written is not None:
        for node in await lock.kube.list_nodes():
            if halt_mirror(node) == dict(halt):  # the copy a re-created Lease would read back
                await set_annotations(
                    lock.kube, node=node["metadata"]["name"], annotations={HALT_ANNOTATION: None}
                )
    return written if written is not None else lock.state


async def unlock(*, lock: LeaseStore, node: str, force: bool) -> bool:
    """Free `node`'s slot by the reclaim protocol, scoped to the grant read. Refused while the node
    may be disrupted (draining, rebooting, verifying) unless `force`; with `force` the node's mark
    goes but any cordon stays (the operator takes the node over)."""
    state = await lock.refresh()
    holder = state.holders.get(node)
    if holder is None:
        return False
    if holder.phase in DISRUPTED_PHASES and not force:
        raise Refused(
            f"node {node} is {holder.phase}: it may be drained or down, and freeing its slot lets "
            f"another node be disrupted beside it; wait for it to finish, or pass --force to take "
            f"the node over (it stays cordoned)"
        )
    freed = await lock.reclaim(node=node, expect=holder, keep_cordon=force)
    if freed is None:
        raise Refused(f"the record of {node} changed while unlocking (its daemon is alive); run again")
    return freed
