"""Least privilege, proven both ways: the base's RBAC is enough for a full reboot cycle, and every
single permission in it is needed.

The base is built by the real `kubectl kustomize`; its Roles and bindings are loaded into the
emulator with authorization on, and every daemon is the service account `kube-system/rebootd`
(the scenarios and how a run is judged: tests/integration/rbac_runs.py). A run passes when its
scenario completes and the emulator denied the daemons nothing.

- With exactly the base's RBAC the three scenarios pass: the full cycle on 3 nodes (every node
  rebooted exactly once), the conflicting-budgets failure path, and a reclaim (a daemon killed
  mid-drain; the other proves its node alive from the kubelet's heartbeat Lease, frees the slot
  and reboots its own node).
- With one permission removed (each verb of each rule, and each multi-verb rule as a whole) a
  request is denied and some scenario cannot complete: it stalls on the denial (nothing moves for
  STALL seconds), halts, or has not completed after CAP seconds. The cycle is tried first; the
  failure path and then the reclaim only for what the ones before did not prove. The one exception
  is FALLS_BACK: a permission the daemon asks for on every attempt but survives losing, by a
  designed fallback; its runs must still have been denied. A permission no scenario even asks for is
  over-privilege: the test names it (fix the manifest, not the test).

The removal runs are spread over one worker process per core (up to 4), a few runs at a time in
each, with a control run holding every permission among them: it must pass under the same load.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.tools import require_binary
from tests.integration.rbac_runs import (
    BUDGETS,
    CYCLE,
    RECLAIM,
    Doc,
    Job,
    Outcome,
    Permission,
    Scenario,
    build_base,
    permissions,
    run,
    run_spread,
    without,
)

KUBECTL_HINT = "kubectl v1.32 from the Kubernetes apt repository"
COMPLETE_WITHIN = 40.0  # the runs with every permission (a few seconds each)
STALL = 3.0  # a denied run in which nothing moved for this long cannot complete by itself
CAP = 20.0  # the longest a removal run is given (the cycle alone takes about 4 s)
WORKERS = max(1, min(4, len(os.sched_getaffinity(0))))

# Permissions the daemon asks for on every attempt, and survives losing through a designed
# fallback (it re-lists instead of watching). Matched on (resource, verb) of a single verb.
FALLS_BACK = {
    ("pods", "watch"): "the drain's pod tracker (drain.NodePods) and the recovery gate's cache "
    "re-list the pods after a failed watch",
    ("poddisruptionbudgets", "watch"): "the recovery gate's cache re-lists the budgets after a "
    "failed watch (back-off up to 5 s)",
}


@pytest.fixture(scope="module")
def base_docs() -> tuple[Doc, ...]:
    return build_base(require_binary("kubectl", install_hint=KUBECTL_HINT))


def falls_back(permission: Permission) -> str | None:
    if permission.verb is None or len(permission.resources) != 1:
        return None
    return FALLS_BACK.get((permission.resources[0], permission.verb))


@pytest.mark.parametrize("scenario", [CYCLE, BUDGETS, RECLAIM], ids=lambda s: s.name.replace(" ", "-"))
async def test_the_base_rbac_runs_the_scenario_without_a_single_denial(
    base_docs: tuple[Doc, ...], scenario: Scenario, tmp_path: Path
) -> None:
    outcome = await run(scenario, base_docs, workdir=tmp_path, within=COMPLETE_WITHIN)
    assert outcome.completed, outcome.problems
    assert not outcome.denied, sorted(map(str, outcome.denied))
    if scenario is RECLAIM:  # the survivor only: the dead daemon's node was put back
        assert sorted(outcome.reboots.values()) == [1]
        return
    expected = dict.fromkeys(scenario.zones, 1) if scenario is CYCLE else {}
    assert outcome.reboots == expected


async def test_removing_any_single_permission_of_the_base_makes_a_scenario_fail(
    base_docs: tuple[Doc, ...], tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    candidates = permissions(base_docs)
    assert len(candidates) >= 10, [str(p) for p in candidates]
    results: dict[Permission, dict[str, Outcome]] = {p: {} for p in candidates}

    def proven(permission: Permission) -> bool:
        """A request was denied and a scenario could not complete."""
        return any(o.denied and not o.completed for o in results[permission].values())

    runs = 0
    control: Outcome | None = None
    # Worker processes are spawned: this one runs an event loop (and threads) a fork would copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        for scenario in (CYCLE, BUDGETS, RECLAIM):
            todo = [p for p in candidates if not proven(p)]
            jobs: list[Permission | None] = [None, *todo] if scenario is CYCLE else list(todo)
            specs = [
                Job(
                    scenario=scenario.name,
                    docs=tuple(base_docs) if p is None else without(base_docs, p),
                    workdir=tmp_path / f"{scenario.name.replace(' ', '-')}-{i}",
                    within=CAP,
                    stall=None if p is None else STALL,
                )
                for i, p in enumerate(jobs)
            ]
            runs += len(specs)
            for permission, outcome in zip(jobs, await run_spread(pool, specs, workers=WORKERS), strict=True):
                if permission is None:
                    control = outcome
                else:
                    results[permission][scenario.name] = outcome
    elapsed = loop.time() - started

    lines: list[str] = []
    over_privileged: list[str] = []
    not_broken: list[str] = []
    for permission in candidates:
        outcomes = results[permission]
        line = f"{permission}" + "".join(f"\n    {name}: {o.summary()}" for name, o in outcomes.items())
        lines.append(line)
        if proven(permission):
            continue
        if not any(o.denied for o in outcomes.values()):
            over_privileged.append(line)  # never even asked for
        elif falls_back(permission) is None:
            not_broken.append(line)
    assert control is not None
    print(f"\n{runs} runs in {elapsed:.1f}s on {WORKERS} worker(s); control: {control.summary()}")
    print("\n".join(lines))
    assert control.passed, f"with every permission the cycle must pass: {control.summary()}"
    assert not over_privileged, "over-privilege, asked for by no scenario:\n" + "\n".join(over_privileged)
    assert not not_broken, "denied, yet every scenario completed:\n" + "\n".join(not_broken)
