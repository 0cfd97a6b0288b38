"""Is a node's kubelet alive? Judged from its heartbeat Lease, as this daemon saw it move.

Rule: a Node's Ready condition stays True for the node monitor's grace period (40-50 s on a
real cluster) after its machine died, so Ready is no proof of life. The kubelet renews its
Lease in `kube-node-lease` every quarter of `leaseDurationSeconds` (the kubelet's fixed renew
fraction). A kubelet is *alive* when we saw that Lease renewed between two of our looks at most
one renew interval apart: the renewal happened within the last renew interval on our own
monotonic clock, so a kubelet that renewed once and died right after is not taken for alive
later (its `renewTime` is compared only with its own earlier value, never with our clock). It is
*dead* when the Lease stood still, or stayed absent, for a whole lease duration on our clock;
before either is known it is *unknown* (look again soon). The first look proves nothing either
way.

Pure: the caller reads the Lease and passes its renewal (`lease_version`: the `renewTime` as an
opaque value, so another write to the Lease is no heartbeat; None when there is no Lease).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

HEARTBEAT_NAMESPACE = "kube-node-lease"  # where every kubelet keeps its Lease, named after its node
DEFAULT_LEASE_SECONDS = 40.0  # the kubelet's default leaseDurationSeconds
RENEW_FRACTION = 0.25  # the kubelet renews its Lease every quarter of its duration

Liveness = Literal["alive", "dead", "unknown"]


def lease_seconds(lease: Mapping[str, Any] | None) -> float:
    """The heartbeat Lease's duration (the kubelet's default when absent or not a positive number)."""
    value = ((lease or {}).get("spec") or {}).get("leaseDurationSeconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_LEASE_SECONDS


def lease_version(lease: Mapping[str, Any] | None) -> str | None:
    """What tells one renewal from the next: `spec.renewTime`, an opaque value here (None: no
    Lease; "" when it has none)."""
    if lease is None:
        return None
    return str((lease.get("spec") or {}).get("renewTime") or "")


@dataclass(frozen=True)
class _Look:
    version: str | None
    since: float  # when we first saw this version (our monotonic clock)
    at: float  # our latest look


@dataclass
class HeartbeatJudge:
    """Remembers our looks at each node's heartbeat Lease and judges its kubelet's liveness."""

    _looks: dict[str, _Look] = field(default_factory=dict)

    def judge(self, *, node: str, version: str | None, duration: float, now: float) -> Liveness:
        """Record a look at `node`'s heartbeat Lease (`version`, None when absent) at `now`."""
        previous = self._looks.get(node)
        if previous is None:
            self._looks[node] = _Look(version=version, since=now, at=now)
            return "unknown"
        if version != previous.version:
            self._looks[node] = _Look(version=version, since=now, at=now)
            # renewed between our two looks: recent enough only if those looks were at most one
            # renew interval apart (else the kubelet may have died right after that renewal)
            fresh = now - previous.at <= duration * RENEW_FRACTION
            return "alive" if version is not None and fresh else "unknown"
        self._looks[node] = _Look(version=version, since=previous.since, at=now)
        return "dead" if now - previous.since >= duration else "unknown"

    def still_for(self, node: str, *, now: float) -> float:
        """How long `node`'s heartbeat has stood still as seen here (0 when never looked at)."""
        look = self._looks.get(node)
        return 0.0 if look is None else max(0.0, now - look.since)

    def keep_only(self, nodes: Iterable[str]) -> None:
        """Forget nodes no longer judged (a look older than the question proves nothing later)."""
        keep = set(nodes)
        for node in set(self._looks) - keep:
            del self._looks[node]
