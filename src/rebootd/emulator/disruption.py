"""The disruption controller: PodDisruptionBudget status from the pods it selects.

Rule: per budget, `currentHealthy` counts Ready pods that are neither terminating nor recently
evicted (`disruptedPods`, dropped when the pod goes or after `disrupted_pod_ttl`),
`expectedPods` / `desiredHealthy` follow pkg/controller/disruption (integer minAvailable: the
matching pods; percentages and maxUnavailable: the owners' scale), `disruptionsAllowed =
max(0, currentHealthy - desiredHealthy)`, `observedGeneration` = generation. Memberships are kept
up to date from pod events, so a recompute touches only the budgets a change concerns and never
scans a namespace's pods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rebootd.clock import Clock
from rebootd.emulator.errors import JsonObj
from rebootd.emulator.objects import condition, controller_ref, is_pod_ready, parse_time, set_condition
from rebootd.emulator.registry import Registry
from rebootd.emulator.store import DELETED, Store, StoreEvent
from rebootd.emulator.timing import EmulatorTiming
from rebootd.emulator.workloads import WORKLOAD_STORAGE
from rebootd.selectors import LabelSelector, SelectorError, label_selector_from_object

PDBS = "poddisruptionbudgets.policy"
# a PDB's cached membership: ((uid, generation), selector or None when invalid, member pod keys)
_Membership = tuple[tuple[str, int], LabelSelector | None, set[tuple[str, str]]]


def _int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        percent = int(value[:-1])
        scaled = percent * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


class DisruptionController:
    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        clock: Clock,
        timing: EmulatorTiming,
        later: Callable[[float, Callable[[], None]], None],
        soon: Callable[[], None],
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.timing = timing
        self.later = later
        self._soon = soon
        self.dirty: set[tuple[str, str]] = set()  # (namespace, name)
        self._pdb_members: dict[tuple[str, str], _Membership] = {}

    def note_budget(self, event: StoreEvent) -> None:
        """A budget whose spec changed (generation ahead of observedGeneration) is recomputed."""
        meta = event.obj["metadata"]
        if event.type == DELETED:
            self._pdb_members.pop((meta["namespace"], meta["name"]), None)
            return
        status = event.obj.get("status") or {}
        if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
            self.dirty.add((meta["namespace"], meta["name"]))
            self._soon()

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for namespace, name in sorted(dirty):
            pdb = self.store.get(PDBS, namespace, name)
            if pdb is None:
                self._pdb_members.pop((namespace, name), None)
            else:
                self.sync_pdb(pdb)

    def _expected_scale(self, pods: list[JsonObj]) -> int:
        seen: set[str] = set()
        total = 0
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                total += 1
                continue
            if ref["uid"] in seen:
                continue
            seen.add(ref["uid"])
            kind = ref.get("kind")
            ns = pod["metadata"]["namespace"]
            owner = (
                self.store.get(WORKLOAD_STORAGE.get(kind, ""), ns, ref["name"])
                if kind in WORKLOAD_STORAGE
                else None
            )
            if owner is None:
                total += 1
                continue
            if kind == "ReplicaSet":
                deploy_ref = controller_ref(owner)
                deployment = (
                    self.store.get("deployments.apps", ns, deploy_ref["name"])
                    if deploy_ref is not None and deploy_ref.get("kind") == "Deployment"
                    else None
                )
                source = deployment if deployment is not None else owner
                total += int((source.get("spec") or {}).get("replicas", 1))
            elif kind == "DaemonSet":
                total += int((owner.get("status") or {}).get("desiredNumberScheduled", 0)) or sum(
                    1 for p in pods if (controller_ref(p) or {}).get("uid") == ref["uid"]
                )
            else:
                total += int((owner.get("spec") or {}).get("replicas", 1))
        return total

    def _membership(self, pdb: JsonObj) -> tuple[LabelSelector | None, set[tuple[str, str]]]:
        meta = pdb["metadata"]
        key = (meta["namespace"], meta["name"])
        version = (str(meta.get("uid", "")), int(meta.get("generation", 1)))
        entry = self._pdb_members.get(key)
        if entry is None or entry[0] != version:
            try:
                spec_selector = (pdb.get("spec") or {}).get("selector")
                selector: LabelSelector | None = label_selector_from_object(spec_selector)
            except SelectorError:
                selector = None
            members = set()
            if selector is not None:
                for pod in self.store.iter_objects("pods", meta["namespace"]):
                    if selector.matches(pod["metadata"].get("labels") or {}):
                        members.add((meta["namespace"], pod["metadata"]["name"]))
            entry = (version, selector, members)
            self._pdb_members[key] = entry
        return entry[1], entry[2]

    def note_pod(self, event: StoreEvent) -> None:
        """Keep PDB memberships current and mark the budgets this pod change concerns."""
        meta = event.obj["metadata"]
        ns = meta["namespace"]
        pod_key = (ns, meta["name"])
        labels = meta.get("labels") or {}
        for pdb in self.store.iter_objects(PDBS, ns):
            selector, members = self._membership(pdb)
            was_member = pod_key in members
            if event.type != DELETED and selector is not None and selector.matches(labels):
                members.add(pod_key)
            else:
                members.discard(pod_key)
            if was_member or pod_key in members:
                self.dirty.add((ns, pdb["metadata"]["name"]))

    def sync_pdbs(self, namespace: str) -> None:
        """Recompute every PDB of `namespace` now (the disruption controller's sync)."""
        for pdb in list(self.store.iter_objects(PDBS, namespace)):
            self.sync_pdb(pdb)

    def sync_pdb(self, pdb: JsonObj) -> None:
        namespace = pdb["metadata"]["namespace"]
        now = self.clock.now()
        ttl = self.timing.disrupted_pod_ttl
        recheck: float | None = None
        spec = pdb.get("spec") or {}
        selector, members = self._membership(pdb)
        if selector is None:
            return
        matched = [p for p in (self.store.get("pods", *k) for k in sorted(members)) if p is not None]
        status = dict(pdb.get("status") or {})
        disrupted: dict[str, str] = {}
        for pod_name, stamp in (status.get("disruptedPods") or {}).items():
            pod = next((p for p in matched if p["metadata"]["name"] == pod_name), None)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                continue
            moment = parse_time(stamp)
            if moment is None:
                continue
            age = (now - moment).total_seconds()
            if age >= ttl:
                continue
            disrupted[pod_name] = stamp
            recheck = min(recheck if recheck is not None else ttl, ttl - age)
        healthy = sum(
            1
            for p in matched
            if not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["name"] not in disrupted
            and is_pod_ready(p)
        )
        if "maxUnavailable" in spec:
            expected = self._expected_scale(matched)
            max_unavailable = _int_or_percent(spec["maxUnavailable"], expected, round_up=True)
            desired = max(0, expected - max_unavailable)
        elif isinstance(spec.get("minAvailable"), str):
            expected = self._expected_scale(matched)
            desired = _int_or_percent(spec["minAvailable"], expected, round_up=True)
        else:
            expected = len(matched)
            desired = int(spec.get("minAvailable", 1) if "minAvailable" in spec else 1)
        allowed = max(0, healthy - desired) if expected > 0 else 0
        new_status: JsonObj = {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
        }
        if disrupted:
            new_status["disruptedPods"] = disrupted
        reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
        new_status["conditions"] = set_condition(
            list(status.get("conditions") or []),
            kind="DisruptionAllowed",
            status="True" if allowed > 0 else "False",
            now=self.registry.now(),
            reason=reason,
        )
        old_cond = condition(pdb, "DisruptionAllowed")
        if old_cond is not None and old_cond.get("status") == ("True" if allowed > 0 else "False"):
            new_status["conditions"] = status.get("conditions")
        if new_status != status:
            new = dict(pdb, status=new_status)
            new["metadata"] = dict(pdb["metadata"])
            self.registry.put_internal(PDBS, new, pdb, client="disruption-controller", verb="update")
        if recheck is not None:  # a disruptedPods entry expires then: recompute
            key = (namespace, pdb["metadata"]["name"])

            def expire() -> None:
                self.dirty.add(key)
                self._soon()

            self.later(recheck + 0.01, expire)


__all__ = ["PDBS", "DisruptionController"]
