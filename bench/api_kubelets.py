"""What the API-only simulated kubelets (`rebootd.sim.kubelet`) cost against the emulator's HTTP
face, next to the emulator's own in-process kubelets, when nothing else runs.

Rule: one process, the emulator in it (as in `rebootd simulate`), N nodes and a Deployment of N
pods. In-process: the emulator plays every kubelet (no request). API: `ApiMachines` play them over
loopback HTTP with the default `KubeletTiming` (pods looked at every 0.1 s, heartbeat Lease every
0.5 s, Node status every 1 s: the simulator's scale). After the pods are Ready, a window of
`--seconds` counts the requests the emulator served and the process CPU time (both cores' worth:
a share above 1.0 of one core means the loop cannot keep up). Run: `python -m bench.api_kubelets`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

from rebootd.emulator.emulator import Emulator
from rebootd.logs import configure
from rebootd.sim.kubelet import ApiMachines

ZONE_LABEL = "topology.kubernetes.io/zone"
ADMIN_TOKEN = "token-admin"  # noqa: S105 - the emulator's simulated bearer token, not a secret


async def measure(*, nodes: int, seconds: float, api: bool) -> dict[str, float]:
    emulator = Emulator(seed=0, tokens={ADMIN_TOKEN: ("admin", ("system:masters",))})
    await emulator.start()
    machines: ApiMachines | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="rebootd-bench-") as tmp:
            if api:
                kubeconfig = emulator.write_kubeconfig(Path(tmp) / "kubeconfig", token=ADMIN_TOKEN)
                machines = ApiMachines(kubeconfig=kubeconfig)
                for i in range(nodes):
                    await machines.add(f"node-{i:03d}", labels={ZONE_LABEL: f"zone-{i % 3}"})
            else:
                for i in range(nodes):
                    emulator.add_node(name=f"node-{i:03d}", zone=f"zone-{i % 3}")
            emulator.add_workload(kind="Deployment", name="web", replicas=nodes)
            await asyncio.sleep(2.0)  # pods placed and started
            before = sum(emulator.request_counts.values())
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            served = sum(emulator.request_counts.values()) - before
    finally:
        if machines is not None:
            await machines.close()
        with contextlib.suppress(Exception):
            await emulator.close()
    return {"requests_per_second": served / wall, "cpu_share": cpu / wall}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_kubelets")
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    configure(fmt="json", level="error", stream=open(os.devnull, "w"))  # noqa: SIM115 - process-long
    for n in args.nodes:
        for api in (False, True):
            figures = asyncio.run(measure(nodes=n, seconds=args.seconds, api=api))
            print(
                f"{n:4d} nodes, {'API kubelets' if api else 'in-process  '}: "
                f"{figures['requests_per_second']:8.1f} requests/s, CPU {figures['cpu_share']:.2f} of a core",
                flush=True,
            )


if __name__ == "__main__":
    main()
