"""A node's queue record (`rebootd.io/queued`: when it first needed this reboot) is one ticket
per reboot need: a Node write that was to carry it and failed leaves it for the next write, with
the same time, rather than losing it or drawing a later one."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from rebootd.kube import Kube, KubeError
from rebootd.marks import QUEUE_ANNOTATION
from rebootd.sim.harness import DaemonSeams, SimNode
from tests.fixtures.cluster import FAST_ENV
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.test_lock_safety import _wait, state_of_emu


class FailsTheFirstQueueWrite(Kube):
    """The first Node write carrying the queue record fails (as a 503 after the client's retries)."""

    attempts: list[tuple[str, bool]]  # (the record written, whether the write went through)

    async def patch_node(self, *, name: str, patch: Any, patch_type: Any) -> dict[str, Any]:
        annotations = (
            ((patch.get("metadata") or {}).get("annotations") or {}) if isinstance(patch, dict) else {}
        )
        record = annotations.get(QUEUE_ANNOTATION)
        if record and not self.attempts:
            self.attempts.append((record, False))
            raise KubeError(status=503, reason="ServiceUnavailable", message="injected: the write failed")
        written = await super().patch_node(name=name, patch=patch, patch_type=patch_type)
        if record:
            self.attempts.append((record, True))
        return written


async def test_a_failed_write_of_the_queue_record_keeps_the_same_ticket_for_the_next_write(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(tokens={"token-n1": ("rebootd@n1", ("rebootd",))})
    emu.add_node(name="n1", zone="z1")
    attempts: list[tuple[str, bool]] = []

    class Facade(FailsTheFirstQueueWrite):
        pass

    Facade.attempts = attempts
    node = SimNode(
        emulator=emu,
        name="n1",
        workdir=tmp_path / "n1",
        env=FAST_ENV,
        seams=DaemonSeams(connect=functools.partial(Facade.connect, user_agent="rebootd@n1")),
    )
    await node.start()
    try:
        node.require_reboot()
        assert await _wait(lambda: any(ok for _, ok in attempts), within=20)
        assert await _wait(lambda: node.reboot_requests >= 1, within=20)
    finally:
        await node.stop()
    failed, written = attempts[0], next(a for a in attempts if a[1])
    assert not failed[1]
    assert written[0] == failed[0], "a second ticket was drawn after the failed write"
    assert state_of_emu(emu).halted is None
