"""`nox -s mutants`: which mutants to run, and the kill rate per module over the decision functions.

Rule: the mutation score is measured over the safety-critical *decisions* only (pure functions:
the PDB arithmetic, the drain's filters, the recovery gate's three conditions, the maintenance
window, the settings' validators and cross-field rules, the lock state), each with the fast unit
tests that claim them (pyproject's [tool.mutmut]). The I/O around them is proven by the
integration tests, too slow to run once per mutant. `python -m tests.mutation.report globs
[MODULE ...]` prints the mutant-name globs for `mutmut run`; `python -m tests.mutation.report
score [--min PERCENT]` reads mutmut's results (mutants/**/*.meta) and prints, per module, the
mutants killed (by a test, by mypy, by a timeout), survived, untested (no test runs their code:
survivors too) and equivalent, and every survivor; it exits 1 below the minimum.

Equivalent mutants (the program behaves the same, so no test can kill them) are listed with
their reason in equivalent.toml and printed as "equivalent (explained)": left out of the score,
never counted as killed. The score also prints with them counted as survivors.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# module -> the decision functions measured (mutmut names: `x_NAME` for a function,
# `xǁCLASSǁNAME` for a method). Decorated functions (validators under @field_validator,
# properties) are not mutated by mutmut: their rules are proven by tests/unit/test_settings_rules.py.
DECISIONS: dict[str, tuple[str, ...]] = {
    "pods": ("*",),
    "recovery": ("baseline", "container_trouble", "node_pods_problem", "owners_problem", "pdbs_problem"),
    # (kubectl's pod filters moved to pods.py, measured there with the rest of it)
    "drain": (
        "describe_refusal", "is_namespace_terminating", "is_multiple_pdbs", "pdbs_selecting",
        "describe_pending",
    ),
    "schedule": ("*",),
    "settings": (
        "_duration", "_share_of", "_concurrency", "_zone_concurrency", "_days", "_time_of_day",
        "_time_zone", "_regexp", "_selector", "_selectors", "_labels", "_command", "_notify_urls",
        "_http_url", "_dns_label", "_dns_subdomain", "_label_key", "_signal_number", "_template",
        "_contradictions",
    ),
    "lockstate": ("*",),
}  # fmt: skip
DEFAULT_MODULES = ("lockstate", "pods", "recovery", "drain", "schedule", "settings")
KILLED = {1, 3}
TYPE_CHECKED = {37}  # rejected by mypy before any test ran (only with mutmut's type_check_command)
TIMEOUT = {24, -24, 36, 152, 255}  # an infinite loop the tests noticed: counted as killed
SURVIVED = {0}
UNTESTED = {5, 33}  # no test claimed to run this code: a survivor, listed apart
NOT_RUN = {None, 34}
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")


def globs(modules: Sequence[str]) -> list[str]:
    out = []
    for module in modules:
        for name in DECISIONS[module]:
            if name == "*":
                out.append(f"rebootd.{module}.*")
            else:
                out += [f"rebootd.{module}.x_{name}__mutmut_*", f"rebootd.{module}.xǁ*ǁ{name}__mutmut_*"]
    return out


def _measured(module: str, key: str) -> bool:
    return any(fnmatch.fnmatch(key, pattern) for pattern in globs([module]))


@dataclass(frozen=True)
class Equivalent:
    """A surviving mutant no test can kill because the program behaves the same (equivalent.toml).
    It is matched by its function and its mutated lines, not by mutmut's number, which shifts
    whenever the function changes."""

    module: str
    function: str
    mutant: str
    reason: str


def load_equivalents(path: Path = EQUIVALENT_FILE) -> list[Equivalent]:
    entries = tomllib.loads(path.read_text())["mutant"] if path.exists() else []
    return [
        Equivalent(module=e["module"], function=e["function"], mutant=e["mutant"].strip(), reason=e["reason"])
        for e in entries
    ]


def function_of(key: str) -> str:
    """`decide_acquire` for rebootd.lockstate.x_decide_acquire__mutmut_41, `Limits.fits` for
    rebootd.lockstate.xǁLimitsǁfits__mutmut_9."""
    name = key.rpartition(".")[2].rpartition("__mutmut_")[0]
    if name.startswith("xǁ"):
        return ".".join(name.split("ǁ")[1:])
    return name.removeprefix("x_")


def mutated_lines(key: str, *, module: str) -> str:
    """The lines the mutant put in place of the original's (mutmut's own diff), stripped."""
    diff_apply = importlib.import_module("mutmut.mutation.diff_apply")
    diff = str(diff_apply.get_diff_for_mutant(key, path=f"src/rebootd/{module}.py"))
    added = [
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    return "\n".join(added)


def _matching(
    equivalents: Sequence[Equivalent], module: str, key: str, diff_of: Callable[..., str]
) -> Equivalent | None:
    candidates = [e for e in equivalents if e.module == module and e.function == function_of(key)]
    if not candidates:
        return None
    lines = diff_of(key, module=module)
    return next((e for e in candidates if e.mutant == lines), None)


def score(
    modules: Sequence[str],
    *,
    root: Path = Path("mutants"),
    equivalents: Sequence[Equivalent] = (),
    diff_of: Callable[..., str] = mutated_lines,
) -> tuple[list[str], float]:
    """Lines of the report, and the overall score (percent): killed (tests, type check or
    timeout) over the mutants that ran, leaving out only the equivalent ones explained in
    equivalent.toml. Untested mutants (no test runs their code) count as survivors."""
    header = ("module", "killed", "typecheck", "timeout", "survived", "untested", "equivalent", "score")
    lines = ["{:<10} {:>7} {:>9} {:>7} {:>8} {:>8} {:>10} {:>7}".format(*header)]
    survivors: list[str] = []
    untested: list[str] = []
    explained: list[tuple[str, Equivalent]] = []
    killed_but_listed: list[str] = []
    used: set[Equivalent] = set()
    total: Counter[str] = Counter()
    for module in modules:
        meta = root / "src" / "rebootd" / f"{module}.py.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        counts: Counter[str] = Counter()
        for key, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            if not _measured(module, key) or code in NOT_RUN:
                continue
            if code in KILLED:
                counts["killed"] += 1
            elif code in TYPE_CHECKED:
                counts["typecheck"] += 1
            elif code in TIMEOUT:
                counts["timeout"] += 1
            elif code in SURVIVED or code in UNTESTED:
                equivalent = _matching(equivalents, module, key, diff_of)
                if equivalent is not None:
                    counts["equivalent"] += 1
                    explained.append((key, equivalent))
                    used.add(equivalent)
                elif code in SURVIVED:
                    counts["survived"] += 1
                    survivors.append(key)
                else:
                    counts["untested"] += 1
                    untested.append(key)
            else:
                counts["other"] += 1  # suspicious, segfault: not a kill
                survivors.append(f"{key} (exit code {code})")
            if code in KILLED and equivalents and _matching(equivalents, module, key, diff_of) is not None:
                killed_but_listed.append(key)
        lines.append(_row(module, counts))
        total.update(counts)
    lines.append(_row("all", total))
    overall = _rate(total)
    ran = sum(total.values())
    raw = 100.0 * _killed(total) / ran if ran else 0.0
    lines.append(
        f"score: killed / (mutants run - equivalent) = {overall:.1f}%; "
        f"killed / mutants run (equivalents counted as survivors) = {raw:.1f}%"
    )
    if survivors:
        lines.append("survived (`mutmut show NAME`):")
        lines += [f"  {name}" for name in survivors]
    if untested:
        lines.append("untested (no test runs this code; `mutmut show NAME`):")
        lines += [f"  {name}" for name in untested]
    if explained:
        lines.append(f"equivalent (explained in {EQUIVALENT_FILE.name}):")
        lines += [f"  {name}: {e.reason}" for name, e in explained]
    if killed_but_listed:
        lines.append(f"killed although listed as equivalent (fix {EQUIVALENT_FILE.name}):")
        lines += [f"  {name}" for name in killed_but_listed]
    stale = [e for e in equivalents if e.module in modules and e not in used]
    if stale:
        lines.append(f"entries of {EQUIVALENT_FILE.name} that match no surviving mutant (code changed?):")
        lines += [f"  {e.module} {e.function}: {e.mutant}" for e in stale]
    return lines, overall


def _natural(key: str) -> tuple[str, int]:
    head, _, number = key.rpartition("__mutmut_")
    return (head, int(number) if number.isdigit() else -1)


def _killed(counts: Counter[str]) -> int:
    return counts["killed"] + counts["typecheck"] + counts["timeout"]


def _rate(counts: Counter[str]) -> float:
    judged = sum(counts.values()) - counts["equivalent"]
    return 100.0 * _killed(counts) / judged if judged else 0.0


def _row(name: str, counts: Counter[str]) -> str:
    return (
        f"{name:<10} {counts['killed']:>7} {counts['typecheck']:>9} {counts['timeout']:>7} "
        f"{counts['survived'] + counts['other']:>8} {counts['untested']:>8} {counts['equivalent']:>10} "
        f"{_rate(counts):>6.1f}%"
    )


def main(argv: Sequence[str]) -> int:
    command, *rest = argv or ["score"]
    minimum = 0.0
    if "--min" in rest:
        at = rest.index("--min")
        minimum = float(rest[at + 1])
        del rest[at : at + 2]
    modules = rest or list(DEFAULT_MODULES)
    if command == "globs":
        print("\n".join(globs(modules)))
        return 0
    lines, overall = score(modules, equivalents=load_equivalents())
    print("\n".join(lines))
    if overall < minimum:
        print(f"mutation score {overall:.1f}% is below {minimum:.1f}%")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
