"""kured's node signs in whole rollouts on the emulator: pre-reboot labels and the drain delay
before the cordon, post-reboot labels after the uncordon, the PreferNoSchedule taint only while
another node holds the slot (never outside the window, never while blocked, never left behind),
and kured's `weave.works/kured-*` annotations with kured's timing. Judged from every version of
the Node objects the emulator stored, never from what the daemons believe."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rebootd.emulator.resources import BY_GROUP_RESOURCE
from rebootd.emulator.store import StoreEvent
from rebootd.kured import KURED_MOST_RECENT_REBOOT_NEEDED, KURED_REBOOT_IN_PROGRESS
from rebootd.sim.harness import SimCluster
from tests.fixtures.cluster import ClusterFactory, all_done

TAINT = "weave.works/kured-node-reboot"
NODES = BY_GROUP_RESOURCE[("", "nodes")]


@dataclass(frozen=True)
class Version:
    """One stored version of a Node, with the emulator's monotonic time it was written at."""

    at: float
    node: str
    unschedulable: bool
    labels: dict[str, str]
    annotations: dict[str, str]
    tainted: bool


def record_nodes(cluster: SimCluster) -> list[Version]:
    """Every Node version from now on (the store's listener sees each write in order)."""
    versions: list[Version] = []
    clock = cluster.emulator.clock

    def on_change(event: StoreEvent) -> None:
        if event.storage != "nodes":
            return
        obj: dict[str, Any] = event.obj
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        versions.append(
            Version(
                at=clock.monotonic(),
                node=str(meta.get("name")),
                unschedulable=bool(spec.get("unschedulable")),
                labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
                tainted=any(t.get("key") == TAINT for t in spec.get("taints") or ()),
            )
        )

    cluster.emulator.store.add_listener(on_change)
    return versions


def of(versions: list[Version], node: str) -> list[Version]:
    return [v for v in versions if v.node == node]


def first(versions: list[Version], predicate: Any) -> int:
    return next(i for i, v in enumerate(versions) if predicate(v))


async def test_pre_reboot_labels_and_drain_delay_come_before_the_cordon_post_labels_after_the_uncordon(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(
        zones={"n1": "z1"},
        workloads=False,
        env={
            "REBOOTD_DRAIN_DELAY": "600ms",
            "REBOOTD_PRE_REBOOT_NODE_LABELS": "kured=rebooting",
            "REBOOTD_POST_REBOOT_NODE_LABELS": "kured=done",
        },
    )
    versions = record_nodes(cluster)
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1"}), within=30)
    mine = of(versions, "n1")
    labelled = first(mine, lambda v: v.labels.get("kured") == "rebooting")
    cordoned = first(mine, lambda v: v.unschedulable)
    assert labelled < cordoned, "kured labels the node before it cordons it"
    assert mine[cordoned].labels.get("kured") == "rebooting"
    delay = mine[cordoned].at - mine[labelled].at
    assert delay >= 0.6, f"the drain delay runs between the labels and the cordon ({delay:.3f}s)"
    uncordoned = cordoned + first(mine[cordoned:], lambda v: not v.unschedulable)
    done = first(mine, lambda v: v.labels.get("kured") == "done")
    assert done > uncordoned, "the post-reboot labels follow the uncordon"
    assert all(v.labels.get("kured") == "rebooting" for v in mine[labelled:done])


async def test_prefer_no_schedule_taint_only_while_another_node_holds_the_slot(
    make_cluster: ClusterFactory,
) -> None:
    """n1 takes the slot; n2 waits for it (tainted), then takes it (untainted at once); n3 needs a
    reboot but is outside its window (reboot-days empty: never) and n4 is blocked by a pod: never
    tainted. At the end no node carries the taint."""
    zones = {"n1": "z1", "n2": "z1", "n3": "z1", "n4": "z1"}
    cluster = await make_cluster(
        zones=zones,
        workloads=False,
        env={
            "REBOOTD_PREFER_NO_SCHEDULE_TAINT": TAINT,
            "REBOOTD_DRAIN_DELAY": "1s",  # n1 holds the slot long enough for n2 to wait
            "REBOOTD_BLOCKING_POD_SELECTOR": "app=batch",
        },
    )
    cluster.emulator.add_pod(name="batch-1", node="n4", labels={"app": "batch"})
    n3 = cluster.nodes["n3"]
    n3.env = {**n3.env, "REBOOTD_REBOOT_DAYS": ""}
    await n3.restart()
    versions = record_nodes(cluster)
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(lambda: "n1" in cluster.lease_state().holders, within=15)
    for name in ("n2", "n3", "n4"):
        cluster.nodes[name].require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2"}), within=40)
    n2 = of(versions, "n2")
    tainted = first(n2, lambda v: v.tainted)
    cordoned = first(n2, lambda v: v.unschedulable)
    assert tainted < cordoned, "n2 was tainted while n1 held the slot"
    assert not n2[cordoned].tainted, "n2's taint goes when it takes the slot, before its cordon"
    for name in ("n1", "n3", "n4"):
        assert not any(v.tainted for v in of(versions, name)), f"{name} must never be tainted"
    assert cluster.nodes["n3"].phase == "required"
    assert cluster.nodes["n4"].phase == "required"
    nodes = {o["metadata"]["name"]: o for o in cluster.node_objects()}
    assert not any(t.get("key") == TAINT for o in nodes.values() for t in o["spec"].get("taints") or ())


async def test_a_gracefully_stopped_daemon_leaves_no_taint_and_a_new_one_removes_a_stale_one(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z1"},
        workloads=False,
        env={"REBOOTD_PREFER_NO_SCHEDULE_TAINT": TAINT, "REBOOTD_DRAIN_DELAY": "30s"},
    )
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(lambda: "n1" in cluster.lease_state().holders, within=15)
    cluster.nodes["n2"].require_reboot()

    def n2_tainted() -> bool:
        obj = cluster.emulator.get_object(kind="Node", name="n2") or {}
        return any(t.get("key") == TAINT for t in obj["spec"].get("taints") or ())

    assert await cluster.wait_until(n2_tainted, within=15)
    await cluster.nodes["n2"].stop()
    assert not n2_tainted(), "a graceful stop removes the taint"
    # A daemon killed while tainted leaves it; the next one removes it once the node needs no reboot.
    await cluster.nodes["n2"].start()
    assert await cluster.wait_until(n2_tainted, within=15)
    await cluster.nodes["n2"].kill(machine=False)
    assert n2_tainted()
    cluster.nodes["n2"].sentinel.unlink()
    await cluster.nodes["n2"].start()
    assert await cluster.wait_until(lambda: not n2_tainted(), within=15)


async def test_kured_annotations_with_kureds_timing(make_cluster: ClusterFactory) -> None:
    """With annotate-nodes and the kured switch: both annotations as soon as a needed reboot is
    in its window (even while it waits for the slot), the same time in both, written once per
    reboot; reboot-in-progress removed after the reboot before the slot is given back;
    most-recent-reboot-needed kept."""
    cluster = await make_cluster(
        zones={"n1": "z1", "n2": "z1"},
        workloads=False,
        env={"REBOOTD_ANNOTATE_NODES": "true", "REBOOTD_KURED_COMPAT": "true", "REBOOTD_DRAIN_DELAY": "1s"},
    )
    versions = record_nodes(cluster)
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(lambda: "n1" in cluster.lease_state().holders, within=15)
    cluster.nodes["n2"].require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1", "n2"}), within=40)
    for name in ("n1", "n2"):
        mine = of(versions, name)
        set_at = first(mine, lambda v: KURED_REBOOT_IN_PROGRESS in v.annotations)
        stamp = mine[set_at].annotations[KURED_REBOOT_IN_PROGRESS]
        assert mine[set_at].annotations[KURED_MOST_RECENT_REBOOT_NEEDED] == stamp
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), f"RFC 3339 as Go formats it: {stamp}"
        cordoned = first(mine, lambda v: v.unschedulable)
        assert set_at < cordoned
        removed = set_at + first(mine[set_at:], lambda v: KURED_REBOOT_IN_PROGRESS not in v.annotations)
        assert removed > cordoned
        assert all(v.annotations.get(KURED_REBOOT_IN_PROGRESS) == stamp for v in mine[set_at:removed])
        assert mine[-1].annotations.get(KURED_MOST_RECENT_REBOOT_NEEDED) == stamp
        assert KURED_REBOOT_IN_PROGRESS not in mine[-1].annotations
    n2 = of(versions, "n2")
    n2_set = first(n2, lambda v: KURED_REBOOT_IN_PROGRESS in v.annotations)
    n1_holds_until = max(v.at for v in of(versions, "n1") if v.unschedulable)
    assert n2[n2_set].at < n1_holds_until, "set while waiting for the slot, as kured does"


async def test_no_kured_annotations_without_the_compat_switch(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(zones={"n1": "z1"}, workloads=False, env={"REBOOTD_ANNOTATE_NODES": "true"})
    versions = record_nodes(cluster)
    cluster.nodes["n1"].require_reboot()
    assert await cluster.wait_until(lambda: all_done(cluster, {"n1"}), within=30)
    assert versions
    assert not any(k.startswith("weave.works/") for v in versions for k in v.annotations)


async def test_a_failed_drain_puts_the_node_back_with_the_post_reboot_labels_as_kured_does(
    make_cluster: ClusterFactory,
) -> None:
    """kured's failed drain ends in its best-effort uncordon, which sets the post-reboot labels:
    a node put back does not keep saying it is about to reboot."""
    cluster = await make_cluster(
        zones={"n1": "z1"},
        workloads=False,
        env={
            "REBOOTD_DRAIN_TIMEOUT": "1s",
            "REBOOTD_PRE_REBOOT_NODE_LABELS": "kured=rebooting",
            "REBOOTD_POST_REBOOT_NODE_LABELS": "kured=done",
        },
    )
    cluster.emulator.add_workload(
        kind="Deployment", name="slow", replicas=1, nodes=["n1"], termination_grace_seconds=3000
    )
    versions = record_nodes(cluster)
    cluster.nodes["n1"].require_reboot()

    def put_back() -> bool:
        mine = of(versions, "n1")
        return any(v.unschedulable for v in mine) and not mine[-1].unschedulable

    assert await cluster.wait_until(put_back, within=20)
    assert await cluster.wait_until(lambda: of(versions, "n1")[-1].labels.get("kured") == "done", within=5)
    mine = of(versions, "n1")
    labelled = first(mine, lambda v: v.labels.get("kured") == "rebooting")
    cordoned = first(mine, lambda v: v.unschedulable)
    uncordoned = cordoned + first(mine[cordoned:], lambda v: not v.unschedulable)
    done = first(mine, lambda v: v.labels.get("kured") == "done")
    assert labelled < cordoned < uncordoned <= done
    assert not any(r.verb == "reboot" for r in cluster.emulator.history)


async def test_a_daemon_that_finds_the_pre_reboot_labels_of_a_pass_put_back_without_it_sets_the_post_labels(
    make_cluster: ClusterFactory,
) -> None:
    """The daemon died mid-drain and a reclaimer (or an operator's unlock) put its node back, which
    touches the mark and the cordon only: the next daemon of that node finds the pre-reboot labels
    with no pass behind them and sets the post-reboot labels, as a put-back does."""
    cluster = await make_cluster(
        zones={"n1": "z1"},
        workloads=False,
        env={
            "REBOOTD_PRE_REBOOT_NODE_LABELS": "kured=rebooting",
            "REBOOTD_POST_REBOOT_NODE_LABELS": "kured=done",
        },
    )
    n1 = cluster.nodes["n1"]
    await n1.stop()
    cluster.emulator.registry.patch(
        NODES,
        "",
        "n1",
        content_type="application/merge-patch+json",
        raw=json.dumps({"metadata": {"labels": {"kured": "rebooting"}}}).encode(),
        client="admin",
    )
    versions = record_nodes(cluster)
    await n1.start()
    assert await cluster.wait_until(
        lambda: bool(of(versions, "n1")) and of(versions, "n1")[-1].labels.get("kured") == "done", within=10
    )
    assert not any(r.verb == "reboot" for r in cluster.emulator.history)
