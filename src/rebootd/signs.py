"""What a node shows the rest of the cluster about its reboot, as kured shows it: the
pre-/post-reboot labels, the PreferNoSchedule taint and kured's `weave.works/kured-*` annotations.

Rule: kured's order and timing (its `cmd/kured/main.go`, v1.23), decided by pure functions and
written by `NodeSigns`, which the cycle calls at fixed points:
- labels: the pre-reboot labels before the drain delay and the cordon, the post-reboot labels after
  the uncordon (and after a failed drain's put-back, as kured's best-effort uncordon does);
- taint (`--prefer-no-schedule-taint`): on only while the node needs a reboot, is in its window,
  is not blocked, and waits because another node holds the slot (`taint_wanted`); off as soon as
  this node takes the slot, stops needing a reboot, waits for anything else, or its daemon stops
  gracefully. A daemon that starts finds out what the Node carries (a killed predecessor's taint
  is removed on the first decision);
- annotations (`--annotate-nodes` with the kured compatibility switch): when a needed reboot is in
  its window and the node has no `kured-reboot-in-progress`, both `kured-reboot-in-progress` and
  `kured-most-recent-reboot-needed` get the time (RFC 3339), blocked or not; after the reboot, once
  no reboot is needed any more, `kured-reboot-in-progress` goes before the slot is given back;
  `kured-most-recent-reboot-needed` stays (`kured_annotation_patch`).
Every write changes only the keys it names; a write that fails is retried at the next decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rebootd.kube import Kube
from rebootd.kured import KURED_MOST_RECENT_REBOOT_NEEDED, KURED_REBOOT_IN_PROGRESS
from rebootd.logs import get_logger
from rebootd.node import add_taint, format_time, remove_taint, set_annotations, set_labels

# Waiting reasons that mean "another node holds the slot" (the lock's verdicts).
SLOT_TAKEN_REASONS = frozenset({"queued", "concurrency", "zone_concurrency"})


def taint_wanted(*, required: bool, waiting_for: str | None) -> bool:
    """kured's PreferNoSchedule rule: a needed reboot, in the window, unblocked, held back only
    because another node holds the slot (`waiting_for` is the cycle's waiting reason kind; the
    window and the blockers are judged before the slot, so a slot reason implies both passed)."""
    return required and waiting_for in SLOT_TAKEN_REASONS


def kured_annotation_patch(
    *, annotations: Mapping[str, str], required: bool, in_window: bool, rebooted: bool, now: datetime
) -> dict[str, str | None]:
    """kured's `--annotate-nodes` writes for a node whose annotations are `annotations` (a patch,
    None deletes; empty: nothing to write). Before a reboot (`rebooted` False): a required reboot
    in the window sets both annotations to now unless a reboot is already marked in progress.
    After this node's reboot (`rebooted` True): the in-progress mark goes once no reboot is needed."""
    if rebooted:
        if not required and KURED_REBOOT_IN_PROGRESS in annotations:
            return {KURED_REBOOT_IN_PROGRESS: None}
        return {}
    if required and in_window and KURED_REBOOT_IN_PROGRESS not in annotations:
        stamp = format_time(now)
        return {KURED_REBOOT_IN_PROGRESS: stamp, KURED_MOST_RECENT_REBOOT_NEEDED: stamp}
    return {}


class NodeSigns:
    """Writes this node's labels, taint and kured annotations; remembers what it wrote so that an
    unchanged decision costs no request."""

    def __init__(
        self,
        *,
        kube: Kube,
        node: str,
        taint: str = "",
        pre_reboot_labels: Mapping[str, str] | None = None,
        post_reboot_labels: Mapping[str, str] | None = None,
        kured_annotations: bool = False,
    ) -> None:
        self.kube = kube
        self.node = node
        self.taint = taint
        self.pre_reboot_labels = dict(pre_reboot_labels or {})
        self.post_reboot_labels = dict(post_reboot_labels or {})
        self.kured_annotations = kured_annotations
        self.tainted: bool | None = None  # None: not known yet (decided against the Node at first)
        self.labelled = False  # the pre-reboot labels were set in this pass
        self._annotations: dict[str, str] | None = None  # kured's, as last read or written
        self._log = get_logger(node=node)

    # --- the taint ----------------------------------------------------------------------------
    async def waiting(self, *, required: bool, waiting_for: str | None) -> None:
        """The cycle's waiting reason changed or was re-affirmed: set or remove the taint."""
        await self.set_taint(on=taint_wanted(required=required, waiting_for=waiting_for))

    async def set_taint(self, *, on: bool, verify: bool = False) -> None:
        """Set or remove the taint; `verify` asks the Node even when we believe it is so (a write
        cancelled mid-flight may have landed)."""
        if not self.taint or (self.tainted is on and not verify):
            return
        if on:
            await add_taint(self.kube, node=self.node, key=self.taint)
        else:
            await remove_taint(self.kube, node=self.node, key=self.taint)
        self.tainted = on
        self._log.info("rebootd.signs.taint", taint=self.taint, on=on)

    # --- labels -------------------------------------------------------------------------------
    async def before_cordon(self) -> None:
        """kured's `drain()`: the pre-reboot labels first, then the drain delay, then the cordon."""
        if self.pre_reboot_labels:
            await set_labels(self.kube, node=self.node, labels=self.pre_reboot_labels)
            self.labelled = True
            self._log.info("rebootd.signs.pre_reboot_labels", labels=self.pre_reboot_labels)

    async def after_uncordon(self) -> None:
        """kured's `uncordon()`: the post-reboot labels after the node is schedulable again."""
        if self.post_reboot_labels:
            await set_labels(self.kube, node=self.node, labels=self.post_reboot_labels)
            self._log.info("rebootd.signs.post_reboot_labels", labels=self.post_reboot_labels)
        self.labelled = False

    async def after_put_back(self, *, node: Mapping[str, Any] | None = None) -> None:
        """A failed or abandoned pass put the node back: kured's best-effort uncordon sets the
        post-reboot labels too, so a node labelled for its reboot does not keep saying so. Asked
        of the Node (`node`, as just read, or read now) when this process did not label it: a
        pass of a daemon before a restart, put back by a reclaimer or an unlock meanwhile."""
        if not self.pre_reboot_labels:
            return
        if not self.labelled:
            if node is None:
                node = await self.kube.get_node(name=self.node)
            labels = (node.get("metadata") or {}).get("labels") or {}
            if not any(labels.get(key) == value for key, value in self.pre_reboot_labels.items()):
                return
        await self.after_uncordon()

    # --- kured's annotations ------------------------------------------------------------------
    def known_annotations(self, annotations: Mapping[str, str]) -> None:
        """What the Node carries (from a read the cycle made anyway)."""
        self._annotations = {
            k: v
            for k, v in annotations.items()
            if k in {KURED_REBOOT_IN_PROGRESS, KURED_MOST_RECENT_REBOOT_NEEDED}
        }

    async def annotate(self, *, required: bool, in_window: bool, rebooted: bool, now: datetime) -> None:
        if not self.kured_annotations:
            return
        if self._annotations is None:
            node = await self.kube.get_node(name=self.node)
            self.known_annotations((node.get("metadata") or {}).get("annotations") or {})
        assert self._annotations is not None
        patch = kured_annotation_patch(
            annotations=self._annotations, required=required, in_window=in_window, rebooted=rebooted, now=now
        )
        if not patch:
            return
        await set_annotations(self.kube, node=self.node, annotations=patch)
        for key, value in patch.items():
            if value is None:
                self._annotations.pop(key, None)
            else:
                self._annotations[key] = value
        self._log.info("rebootd.signs.kured_annotations", patch=patch)
