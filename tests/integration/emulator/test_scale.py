"""Scale: 1000 nodes and 30000 pods list completely and consistently with limit=500 paging.

A correctness test (every object exactly once, constant list resourceVersion, remainingItemCount
counting down); it asserts no timing.
"""

from __future__ import annotations

from rebootd.emulator.emulator import Emulator
from tests.fixtures.emulator import Kubectl
from tests.integration.emulator.http import RawApi

NODES = 1000
PODS_PER_NODE = 30


def big_cluster(emulator: Emulator) -> None:
    for index in range(NODES):
        emulator.add_node(name=f"node-{index:04d}", zone=f"zone-{index % 3}")
    for index in range(NODES):
        for slot in range(PODS_PER_NODE):
            namespace = ("default", "team-a", "team-b")[slot % 3]
            emulator.add_pod(
                name=f"pod-{index:04d}-{slot:02d}", namespace=namespace, node=f"node-{index:04d}"
            )


async def test_thirty_thousand_pods_list_completely_with_paging(emulator: Emulator, raw: RawApi) -> None:
    big_cluster(emulator)
    seen: list[tuple[str, str]] = []
    page = (await raw.get("/api/v1/pods?limit=500")).body
    list_rv = page["metadata"]["resourceVersion"]
    pages = 1
    emulator.add_pod(name="late-arrival", node="node-0000")  # after the first page: not in this list
    while True:
        seen += [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in page["items"]]
        assert page["metadata"]["resourceVersion"] == list_rv
        token = page["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in page["metadata"]
            break
        assert page["metadata"]["remainingItemCount"] == NODES * PODS_PER_NODE - len(seen)
        page = (await raw.get(f"/api/v1/pods?limit=500&continue={token}")).body
        pages += 1
    assert pages == NODES * PODS_PER_NODE // 500
    assert len(seen) == len(set(seen)) == NODES * PODS_PER_NODE
    assert seen == sorted(seen)
    on_node = (await raw.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-0500&limit=500")).body
    assert len(on_node["items"]) == PODS_PER_NODE
    assert "continue" not in on_node["metadata"]


async def test_kubectl_lists_a_thousand_nodes_in_chunks(emulator: Emulator, kubectl: Kubectl) -> None:
    for index in range(NODES):
        emulator.add_node(name=f"node-{index:04d}")
    out = await kubectl("get", "nodes", "-o", "name", "--chunk-size=300")
    assert out.split() == [f"node/node-{index:04d}" for index in range(NODES)]
    lists = emulator.request_counts[("anonymous", "list")]
    assert lists == 4  # 300 + 300 + 300 + 100
