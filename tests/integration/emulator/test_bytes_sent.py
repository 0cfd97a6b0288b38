"""The emulator's `bytes_sent` (the bench's bytes per hand-off) counts what it writes to watchers:
the events of an open watch as well as response bodies, backlogs and bookmarks."""

from __future__ import annotations

import asyncio
import json

from rebootd.emulator.emulator import Emulator
from tests.integration.emulator.http import RawApi, lease

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


async def test_bytes_sent_counts_each_event_sent_to_an_open_watch(emulator: Emulator, raw: RawApi) -> None:
    created = (await raw.post(LEASES, lease("l"))).body
    rv = created["metadata"]["resourceVersion"]
    path = f"{LEASES}?watch=1&resourceVersion={rv}"
    reader = asyncio.create_task(raw.watch(path, max_events=1, within=10.0))
    await asyncio.sleep(0.3)  # the watch is open and has sent nothing (no backlog after rv)
    before = emulator.api.bytes_sent
    updated = dict(created, spec=dict(created["spec"], holderIdentity="b"))
    put = await raw.put(f"{LEASES}/l", updated)
    (event,) = await reader
    assert event["type"] == "MODIFIED"
    body_bytes = len(json.dumps(put.body, separators=(",", ":")))
    event_bytes = len(json.dumps(event, separators=(",", ":")))
    assert emulator.api.bytes_sent - before >= body_bytes + event_bytes
