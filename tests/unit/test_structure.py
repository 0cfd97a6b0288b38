"""One home for each idea, proved by reading the daemon's source (its modules outside the
simulator, the emulator and the control-plane launcher, which are test machinery):

- the Kubernetes watch request is made only by the one list+watch loop (`listwatch.py`; `kube/client.py`
  is the transport that sends it);
- an exponential back-off formula (a power, a doubling) or a jitter draw appears only in
  `backoff.py`;
- the interruptible sleep (a wait on a stop event bounded by a timeout, or a bare
  `asyncio.sleep`) is written only in `waits.py`.

`KNOWN` lists places still to move (none now): a finding there is tolerated, and a listed place
with no finding left fails, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "rebootd"
MACHINERY = ("sim", "emulator", "controlplane")  # not the daemon: simulated time, fault injection

HOMES = {"watch": {"listwatch.py"}, "backoff": {"backoff.py"}, "sleep": {"waits.py"}}
KNOWN: dict[str, set[str]] = {
    "watch": set(),
    "backoff": set(),
    "sleep": set(),
}


def daemon_modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in MACHINERY:
            continue
        yield relative.as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_stop_wait(node: ast.AST) -> bool:
    """`stop.wait()` (any event whose name says stop)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "wait"
        and "stop" in _dotted(node.func.value).lower()
    )


def findings(tree: ast.Module) -> dict[str, list[int]]:
    """The lines where each idea is written."""
    found: dict[str, list[int]] = {"watch": [], "backoff": [], "sleep": []}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.endswith(".watch") and any(k.arg == "resource_version" for k in node.keywords):
                found["watch"].append(node.lineno)  # kube.watch(..., resource_version=...)
            if name.endswith(".uniform") or name in ("random.random", "random.expovariate"):
                found["backoff"].append(node.lineno)  # a jitter draw
            if name == "asyncio.sleep":
                found["sleep"].append(node.lineno)
            if name == "asyncio.wait_for" and node.args and _is_stop_wait(node.args[0]):
                found["sleep"].append(node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            if not isinstance(node.right, ast.Constant):  # 2**attempt, not a constant like 2**21
                found["backoff"].append(node.lineno)
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult):
            found["backoff"].append(node.lineno)  # delay *= 2
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = _dotted(node.targets[0])
            doubled = any(
                isinstance(sub, ast.BinOp)
                and isinstance(sub.op, ast.Mult)
                and _dotted(sub.left) == target
                and isinstance(sub.right, ast.Constant)
                for sub in ast.walk(node.value)
            )
            if target and doubled:
                found["backoff"].append(node.lineno)  # delay = min(delay * 2, cap)
        elif isinstance(node, ast.AsyncWith):
            bounded = any(_dotted(item.context_expr.func) == "asyncio.timeout" for item in node.items
                          if isinstance(item.context_expr, ast.Call))  # fmt: skip
            if bounded and any(_is_stop_wait(sub) for stmt in node.body for sub in ast.walk(stmt)):
                found["sleep"].append(node.lineno)
    return {idea: sorted(lines) for idea, lines in found.items()}


def where(idea: str) -> dict[str, list[int]]:
    places: dict[str, list[int]] = {}
    for name, tree in daemon_modules():
        lines = findings(tree)[idea]
        if lines:
            places[name] = sorted(lines)
    return places


@pytest.mark.parametrize(
    ("idea", "what"),
    [
        ("watch", "a Kubernetes watch request"),
        ("backoff", "an exponential back-off formula or a jitter draw"),
        ("sleep", "an interruptible sleep"),
    ],
)
def test_each_idea_is_written_in_its_one_module_only(idea: str, what: str) -> None:
    places = where(idea)
    strays = {name: lines for name, lines in places.items() if name not in HOMES[idea] | KNOWN[idea]}
    assert not strays, f"{what} outside {sorted(HOMES[idea])}: {strays}"
    assert set(places) >= HOMES[idea], (
        f"{what} is no longer in {sorted(HOMES[idea])}: the check reads nothing"
    )
    stale = KNOWN[idea] - set(places)
    assert not stale, f"{sorted(stale)} no longer write {what}: remove them from KNOWN[{idea!r}]"


def test_the_structure_check_finds_each_shape_it_forbids() -> None:
    """The check itself: each forbidden shape in a made-up module is found."""
    source = """
async def f(kube, stop, rng, delay):
    kube.watch(kind="pods", resource_version="1")
    x = 0.5 * 2 ** attempt + 2 ** 21
    delay = min(delay * 2, 30.0)
    delay *= 2
    rng.uniform(0, 1)
    await asyncio.sleep(1)
    await asyncio.wait_for(stop.wait(), timeout=1)
    async with asyncio.timeout(1):
        await stop.wait()
"""
    found = findings(ast.parse(source))
    assert found == {"watch": [3], "backoff": [4, 5, 6, 7], "sleep": [8, 9, 10]}
