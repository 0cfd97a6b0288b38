""".pre-commit-config.yaml runs only local tools: no hook repository is fetched when hooks run.

`nox -s lint` proves the config valid and the hooks passing on the tree; this test guards what a
passing run cannot show: a remote hook repository would pass too, after a network fetch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".pre-commit-config.yaml"


def _hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_every_hook_repository_is_local_and_runs_an_installed_tool() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {hook["language"] for hook in _hooks()} == {"system"}
    assert not [hook["id"] for hook in _hooks() if hook.get("additional_dependencies")]


def test_the_hooks_are_ruff_codespell_and_validate_pyproject() -> None:
    entries = {hook["id"]: hook["entry"].split()[0] for hook in _hooks()}
    assert entries == {
        "ruff": "ruff",
        "ruff-format": "ruff",
        "codespell": "codespell",
        "validate-pyproject": "validate-pyproject",
    }
