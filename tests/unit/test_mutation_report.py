"""`nox -s mutants`' report: equivalent mutants are explained apart and never counted as killed,
untested ones count as survivors, and an explanation that no longer fits is shown."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mutation.report import Equivalent, function_of, load_equivalents, score

PREFIX = "rebootd.lockstate.x_decide_acquire__mutmut_"


def results(root: Path, codes: dict[str, int | None]) -> Path:
    meta = root / "src" / "rebootd" / "lockstate.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    return root


def diff_of(key: str, *, module: str) -> str:
    assert module == "lockstate"
    return f"line of {key.rpartition('_')[2]}"


def test_equivalents_are_left_out_of_the_score_and_untested_mutants_count_against_it(tmp_path: Path) -> None:
    codes: dict[str, int | None] = {f"{PREFIX}{n}": 1 for n in range(1, 8)}  # 7 killed
    codes |= {f"{PREFIX}8": 0, f"{PREFIX}9": 0, f"{PREFIX}10": 33, f"{PREFIX}11": None, f"{PREFIX}12": -24}
    explained = Equivalent(module="lockstate", function="decide_acquire", mutant="line of 9", reason="same")
    lines, overall = score(
        ["lockstate"], root=results(tmp_path, codes), equivalents=[explained], diff_of=diff_of
    )
    # run: 7 killed + 1 timeout + 1 survived + 1 untested + 1 equivalent; 11 is not run
    assert lines[1].split() == ["lockstate", "7", "0", "1", "1", "1", "1", "80.0%"]
    assert overall == 80.0
    assert "killed / mutants run (equivalents counted as survivors) = 72.7%" in lines[3]
    text = "\n".join(lines)
    assert f"survived (`mutmut show NAME`):\n  {PREFIX}8\n" in text
    assert f"untested (no test runs this code; `mutmut show NAME`):\n  {PREFIX}10\n" in text
    assert text.endswith(f"equivalent (explained in equivalent.toml):\n  {PREFIX}9: same")


def test_an_explanation_matching_a_killed_mutant_or_none_at_all_is_reported(tmp_path: Path) -> None:
    codes: dict[str, int | None] = {f"{PREFIX}1": 1, f"{PREFIX}2": 0}
    wrong = Equivalent(module="lockstate", function="decide_acquire", mutant="line of 1", reason="not so")
    gone = Equivalent(module="lockstate", function="next_in_line", mutant="line of 7", reason="old")
    lines, overall = score(
        ["lockstate"], root=results(tmp_path, codes), equivalents=[wrong, gone], diff_of=diff_of
    )
    assert overall == 50.0
    text = "\n".join(lines)
    assert f"killed although listed as equivalent (fix equivalent.toml):\n  {PREFIX}1" in text
    assert "match no surviving mutant (code changed?):\n  lockstate decide_acquire: line of 1\n" in text
    assert text.endswith("  lockstate next_in_line: line of 7")


def test_mutant_names_map_to_the_functions_the_explanations_name() -> None:
    assert function_of("rebootd.lockstate.x_decide_acquire__mutmut_41") == "decide_acquire"
    assert function_of("rebootd.lockstate.xǁLimitsǁfits__mutmut_9") == "Limits.fits"
    assert function_of("rebootd.schedule.xǁWindowǁ_first_opening__mutmut_3") == "Window._first_opening"


def test_every_committed_explanation_names_a_measured_module_and_gives_a_reason() -> None:
    entries = load_equivalents()
    assert entries
    for entry in entries:
        assert entry.module in {"lockstate", "pods", "recovery", "drain", "schedule", "settings"}
        assert entry.function
        assert entry.mutant
        assert len(entry.reason) > 10
    assert len({(e.module, e.function, e.mutant) for e in entries}) == len(entries), "no duplicates"
