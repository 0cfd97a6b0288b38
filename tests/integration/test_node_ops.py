"""Operations on the own Node against the emulator: cordon as a compare-and-swap, uncordon
removing the field, taints changed without clobbering concurrent writers, labels/annotations
merged, Events that the real `kubectl describe node` shows, and the proof-of-reboot readings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from rebootd.clock import SystemClock
from rebootd.emulator.emulator import Emulator
from rebootd.kube import Kube, KubeError, RetryPolicy
from rebootd.lock import put_back_node
from rebootd.lockstate import Holder
from rebootd.marks import CORDON_ANNOTATION, NODE_MARK_ANNOTATION, Mark
from rebootd.node import (
    NodeChanged,
    add_taint,
    boot_id,
    cordon,
    is_ready,
    ready_transition,
    record_event,
    remove_taint,
    set_annotations,
    set_labels,
    taint_patch_add,
    uncordon,
)
from tests.fixtures.emulator import Kubectl, emulator, emulator_factory, kubectl

__all__ = ["emulator", "emulator_factory", "kubectl"]

TAINT = "rebootd.io/reboot"
FAST_RETRY = RetryPolicy(attempts=3, base=0.02, cap=0.1)


class RacingKube(Kube):
    """A real client whose next `get_node` is followed, before its caller can write, by another
    client's write: the race that guarded writes must survive."""

    race: Callable[[], Awaitable[None]] | None = None

    async def get_node(self, *, name: str) -> dict[str, Any]:
        obj = await super().get_node(name=name)
        race, self.race = self.race, None
        if race is not None:
            await race()
        return obj


async def connect(emu: Emulator, path: Path, cls: type[Kube] = Kube) -> Kube:
    plain = await Kube.connect(kubeconfig=emu.write_kubeconfig(path), retry=FAST_RETRY)
    if cls is Kube:
        return plain
    await plain.close()
    client = await cls.connect(kubeconfig=path, retry=FAST_RETRY)
    assert isinstance(client, cls)
    return client


@pytest.fixture
async def clients(emulator: Emulator, tmp_path: Path) -> AsyncIterator[tuple[RacingKube, Kube]]:
    """Our client (which can be raced) and an admin's."""
    ours = await connect(emulator, tmp_path / "ours", RacingKube)
    admin = await connect(emulator, tmp_path / "admin")
    assert isinstance(ours, RacingKube)
    try:
        yield ours, admin
    finally:
        await ours.close()
        await admin.close()


def node_spec(emu: Emulator, name: str = "n1") -> dict[str, Any]:
    obj = emu.get_object(kind="Node", name=name)
    assert obj is not None
    return dict(obj["spec"])


GRANT = "g1"
MARK = Mark(
    holder=Holder(node="n1", zone="z1", phase="draining", grant=GRANT), evidence={"bootID": "b"}
).encode()


def annotations_of(emu: Emulator, name: str = "n1") -> dict[str, str]:
    obj = emu.get_object(kind="Node", name=name)
    assert obj is not None
    return dict(obj["metadata"].get("annotations") or {})


async def test_cordon_is_scoped_to_the_grant_and_tells_ours_from_an_admins(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, admin = clients
    emulator.add_node(name="n1")
    emulator.add_node(name="admin-cordoned", unschedulable=True)
    await set_annotations(admin, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})
    await set_annotations(admin, node="admin-cordoned", annotations={NODE_MARK_ANNOTATION: MARK})

    assert await cordon(kube, node="n1", grant=GRANT) == "cordoned"
    assert node_spec(emulator)["unschedulable"] is True
    assert annotations_of(emulator)[CORDON_ANNOTATION] == GRANT
    assert await cordon(kube, node="n1", grant=GRANT) == "ours", (
        "a second cordon of the grant finds it its own"
    )
    writes_before = len(emulator.history)
    assert await cordon(kube, node="admin-cordoned", grant=GRANT) == "admin"
    assert not [h for h in emulator.history[writes_before:] if h.event == "write"], "no write needed"
    with pytest.raises(NodeChanged):
        await cordon(kube, node="n1", grant="another-grant")


async def test_cordon_racing_an_admin_cordon_reports_the_admins(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    """The admin cordons between our read and our write: our write is refused (resourceVersion),
    we re-read and report the node as the admin's, so rebootd will never uncordon it."""
    kube, admin = clients
    emulator.add_node(name="n1")
    await set_annotations(admin, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})

    async def admin_cordons() -> None:
        await admin.patch_node(name="n1", patch={"spec": {"unschedulable": True}}, patch_type="strategic")

    kube.race = admin_cordons

    assert await cordon(kube, node="n1", grant=GRANT) == "admin"
    assert not await uncordon(kube, node="n1", grant=GRANT)
    assert node_spec(emulator)["unschedulable"] is True


class LosingKube(Kube):
    """A real client whose next Node patch is applied by the server but whose response is lost
    (the connection drops after the request went out), as a reset or a 504 does."""

    lose_next_patch = False

    async def patch_node(self, *, name: str, patch: Any, patch_type: Any) -> dict[str, Any]:
        written = await super().patch_node(name=name, patch=patch, patch_type=patch_type)
        if self.lose_next_patch:
            self.lose_next_patch = False
            raise KubeError(status=0, reason="ServerDisconnected", message="response lost")
        return written


async def test_a_cordon_whose_response_was_lost_is_still_ours_and_undone(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Failure 3 of the safety issue: the cordon is applied but its response is lost; the retried
    cordon finds the node unschedulable. Judged from a read alone that was an admin's cordon, never
    undone; the ownership annotation written with the cordon says it is ours."""
    emulator.add_node(name="n1")
    kube = await connect(emulator, tmp_path / "ours", LosingKube)
    assert isinstance(kube, LosingKube)
    try:
        await set_annotations(kube, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})
        kube.lose_next_patch = True
        with pytest.raises(KubeError):
            await cordon(kube, node="n1", grant=GRANT)
        assert node_spec(emulator)["unschedulable"] is True, "the server applied it"
        assert await cordon(kube, node="n1", grant=GRANT) == "ours"
        assert await put_back_node(kube, node="n1", grant=GRANT)
    finally:
        await kube.close()
    assert not node_spec(emulator).get("unschedulable")
    assert {NODE_MARK_ANNOTATION, CORDON_ANNOTATION}.isdisjoint(annotations_of(emulator))


async def test_a_cordon_that_requires_the_mark_is_refused_once_a_reclaimer_removed_it_between_read_and_write(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    """The holder reads its node (marked), a reclaimer puts the node back before the holder's
    write: the cordon is refused and the node stays schedulable, instead of cordoned with no mark."""
    kube, admin = clients
    emulator.add_node(name="n1")
    await set_annotations(admin, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})

    async def reclaimer_puts_back() -> None:
        assert await put_back_node(admin, node="n1", grant=GRANT)

    kube.race = reclaimer_puts_back

    with pytest.raises(NodeChanged):
        await cordon(kube, node="n1", grant=GRANT)
    assert not node_spec(emulator).get("unschedulable")
    assert NODE_MARK_ANNOTATION not in annotations_of(emulator)


async def test_a_put_back_racing_the_holders_cordon_sees_the_cordon_and_undoes_it(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    """The reclaimer reads the node (marked, schedulable), the holder's cordon lands before the
    reclaimer's write: the write is refused, re-read, and removes the mark and the cordon together."""
    kube, admin = clients
    emulator.add_node(name="n1")
    await set_annotations(admin, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})

    async def holder_cordons() -> None:
        assert await cordon(admin, node="n1", grant=GRANT) == "cordoned"

    kube.race = holder_cordons

    assert await put_back_node(kube, node="n1", grant=GRANT)
    assert not node_spec(emulator).get("unschedulable")
    assert {NODE_MARK_ANNOTATION, CORDON_ANNOTATION}.isdisjoint(annotations_of(emulator))


async def test_a_put_back_keeps_a_cordon_the_admin_made_before_rebootd(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, _ = clients
    emulator.add_node(name="n1", unschedulable=True)
    await set_annotations(kube, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})
    assert await cordon(kube, node="n1", grant=GRANT) == "admin"

    assert await put_back_node(kube, node="n1", grant=GRANT)
    assert node_spec(emulator)["unschedulable"] is True
    assert NODE_MARK_ANNOTATION not in annotations_of(emulator)
    assert await put_back_node(kube, node="n1", grant=GRANT) is False, "no mark: nothing of ours to undo"
    assert node_spec(emulator)["unschedulable"] is True


async def test_a_stalled_reclaimer_of_an_old_grant_leaves_a_newer_grant_alone(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    """Failure 10: a holder is identified by its grant, not its node name. A put-back (reclaimer,
    unlock, a duplicate daemon) for an older grant of the node removes nothing of the newer one."""
    kube, admin = clients
    emulator.add_node(name="n1")
    await set_annotations(admin, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})
    assert await cordon(admin, node="n1", grant=GRANT) == "cordoned"

    assert await put_back_node(kube, node="n1", grant="older-grant") is False
    assert not await uncordon(kube, node="n1", grant="older-grant")
    assert node_spec(emulator)["unschedulable"] is True
    assert annotations_of(emulator)[NODE_MARK_ANNOTATION] == MARK


async def test_uncordon_removes_the_field_only_for_the_grant_that_cordoned(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, admin = clients
    emulator.add_node(name="n1")
    await set_annotations(admin, node="n1", annotations={NODE_MARK_ANNOTATION: MARK})
    assert await cordon(kube, node="n1", grant=GRANT) == "cordoned"

    assert await uncordon(kube, node="n1", grant=GRANT)

    assert "unschedulable" not in node_spec(emulator)
    assert CORDON_ANNOTATION not in annotations_of(emulator)


async def test_taints_are_added_and_removed_without_touching_others(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, _ = clients
    other = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    emulator.add_node(name="n1", taints=[other])

    assert await add_taint(kube, node="n1", key=TAINT) is True
    assert await add_taint(kube, node="n1", key=TAINT) is False, "idempotent"
    assert node_spec(emulator)["taints"] == [other, {"key": TAINT, "effect": "PreferNoSchedule"}]
    assert await remove_taint(kube, node="n1", key=TAINT) is True
    assert await remove_taint(kube, node="n1", key=TAINT) is False
    assert node_spec(emulator)["taints"] == [other]


async def test_adding_the_first_taint_and_removing_the_last_one(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, _ = clients
    emulator.add_node(name="n1")

    await add_taint(kube, node="n1", key=TAINT, effect="NoSchedule", value="now")
    assert node_spec(emulator)["taints"] == [{"key": TAINT, "value": "now", "effect": "NoSchedule"}]
    await remove_taint(kube, node="n1", key=TAINT, effect="NoSchedule")
    assert "taints" not in node_spec(emulator)


async def test_taint_writes_survive_a_concurrent_taint_change(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    """Someone adds a taint between our read and our JSON patch: the `test` op fails (422), we
    re-read and retry, and both taints end up on the node; the same for a removal."""
    kube, admin = clients
    emulator.add_node(name="n1")
    theirs = {"key": "maintenance", "effect": "NoExecute"}
    later = {"key": "late", "effect": "NoSchedule"}

    async def admin_adds(taint: dict[str, str]) -> None:
        current = node_spec(emulator).get("taints")
        ops = taint_patch_add({"spec": {"taints": current}, "metadata": {}}, key=taint["key"],
                              effect=taint["effect"])  # fmt: skip
        assert ops is not None
        if current is None:  # the resourceVersion guard is for our write, not this admin's
            ops = [{"op": "add", "path": "/spec/taints", "value": [taint]}]
        await admin.patch_node(name="n1", patch=ops, patch_type="json")

    kube.race = lambda: admin_adds(theirs)
    await add_taint(kube, node="n1", key=TAINT)
    assert node_spec(emulator)["taints"] == [theirs, {"key": TAINT, "effect": "PreferNoSchedule"}]

    kube.race = lambda: admin_adds(later)
    await remove_taint(kube, node="n1", key=TAINT)
    assert node_spec(emulator)["taints"] == [theirs, later]
    assert kube.requests["patch"] == 4, "each write failed its test once, then succeeded"


async def test_labels_and_annotations_are_merged_and_none_deletes(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, _ = clients
    emulator.add_node(name="n1", labels={"team": "infra"})

    await set_labels(kube, node="n1", labels={"rebootd.io/rebooting": "true"})
    await set_annotations(kube, node="n1", annotations={"rebootd.io/holder": "{}", "x": "1"})
    await set_labels(kube, node="n1", labels={"rebootd.io/rebooting": None})
    await set_annotations(kube, node="n1", annotations={"x": None})

    node = emulator.get_object(kind="Node", name="n1")
    assert node is not None
    assert node["metadata"]["labels"]["team"] == "infra"
    assert "rebootd.io/rebooting" not in node["metadata"]["labels"]
    assert node["metadata"]["annotations"]["rebootd.io/holder"] == "{}"
    assert "x" not in node["metadata"]["annotations"]
    assert node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0", "others untouched"


async def test_events_are_listed_by_kubectl_describe_node(
    emulator: Emulator, clients: tuple[RacingKube, Kube], kubectl: Kubectl
) -> None:
    kube, _ = clients
    node = emulator.add_node(name="n1")

    await record_event(kube, node="n1", node_uid=node["metadata"]["uid"], reason="RebootdDrain",
                       message="cordoned; draining before reboot", clock=SystemClock())  # fmt: skip
    await record_event(kube, node="n1", node_uid="", reason="RebootdDrainFailed", message="PDB db allows 0",
                       type="Warning", clock=SystemClock())  # fmt: skip

    events = emulator.list_objects(kind="Event", namespace="default")
    assert len(events) == 2
    assert len({e["metadata"]["name"] for e in events}) == 2, "unique names"
    assert all(e["metadata"]["name"].startswith("n1.") for e in events)
    assert {e["involvedObject"]["uid"] for e in events} == {node["metadata"]["uid"]}
    assert {(e["source"]["component"], e["source"]["host"], e["count"]) for e in events} == {
        ("rebootd", "n1", 1)
    }
    described = await kubectl("describe", "node", "n1")
    events_section = described.split("Events:", 1)[1]
    assert "Normal   RebootdDrain" in events_section
    assert "cordoned; draining before reboot" in events_section
    assert "Warning  RebootdDrainFailed" in events_section


async def test_record_event_never_raises(emulator: Emulator, tmp_path: Path) -> None:
    emulator.add_node(name="n1")
    kube = await connect(emulator, tmp_path / "kc")
    await emulator.close()  # the API is gone
    try:
        with capture_logs() as logs:
            await record_event(kube, node="n1", node_uid="uid", reason="RebootdReboot", message="rebooting",
                               clock=SystemClock())  # fmt: skip
    finally:
        await kube.close()
    assert [e["event"] for e in logs if e["event"].startswith("rebootd.node.")] == [
        "rebootd.node.event_failed"
    ]


async def test_boot_id_and_ready_transition_prove_a_reboot(
    emulator: Emulator, clients: tuple[RacingKube, Kube]
) -> None:
    kube, _ = clients
    emulator.add_node(name="n1")
    before = await kube.get_node(name="n1")
    requested = ready_transition(before)
    assert boot_id(before)
    assert is_ready(before)
    assert requested is not None

    emulator.reboot_node(name="n1")
    down = await kube.get_node(name="n1")
    assert not is_ready(down)
    assert ready_transition(down) is None

    async with kube.follow(kind="nodes", namespace=None, name="n1") as follower:
        up = await follower.wait_for(is_ready, timeout=10.0)
    assert up is not None
    assert boot_id(up) != boot_id(before)
    transition = ready_transition(up)
    assert transition is not None
    assert transition >= requested
