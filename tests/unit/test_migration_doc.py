"""docs/migrating-from-kured.md has one row per kured flag, and each row agrees with `rebootd config`
and with the translation `KURED_*` variables and `rebootd migrate` use."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from rebootd import kured
from rebootd.cli import main
from rebootd.settings import env_name

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "migrating-from-kured.md"
FIXTURES = ROOT / "tests" / "fixtures" / "kured"
ROW = re.compile(r"^\| `--(?P<flag>[a-z-]+)` \| (?P<kured>[^|]+) \| (?P<var>[^|]+) \| (?P<default>[^|]+) \|")


def flag_list(name: str) -> list[str]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def doc_rows() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows.setdefault(match["flag"], []).append({k: v.strip() for k, v in match.groupdict().items()})
    return rows


def shown(value: Any) -> str:
    if value is None or value in ("", []):
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def test_every_kured_flag_has_exactly_one_row() -> None:
    rows = doc_rows()
    flags = flag_list("flags-v1.23.txt")
    assert len(flags) == 43
    assert set(flag_list("readme-flags.txt")) <= set(flags)  # the seeds' README lists a subset
    missing = [flag for flag in flags if flag not in rows]
    assert not missing, f"docs/migrating-from-kured.md has no row for {missing}"
    doubled = [flag for flag, found in rows.items() if len(found) > 1]
    assert not doubled
    assert {f.name for f in kured.FLAGS} == set(flags)


def test_every_row_agrees_with_rebootd_config_and_the_translation() -> None:
    out = io.StringIO()
    assert main(["config", "--output", "json"], environ={}, stdout=out, stderr=io.StringIO()) == 0
    config = json.loads(out.getvalue())
    for flag, (row,) in doc_rows().items():
        spec = kured.BY_NAME[flag]
        kured_default = f"`{spec.default}`" if spec.default else "(unset)"
        assert row["kured"] == kured_default, flag
        if spec.setting is None:
            assert row["var"] == "—", flag
            continue
        assert row["var"] == f"`{env_name(spec.setting)}`", flag
        assert row["default"] == f"`{shown(config[spec.setting])}`", flag
