"""Every module of the package is in an import contract (pyproject.toml's [tool.importlinter]),
so a new module cannot slip past the rules on which way imports go; `lint-imports` (nox -s lint)
checks the contracts themselves."""

from __future__ import annotations

import pkgutil
import re
import tomllib
from pathlib import Path

import rebootd
import rebootd.kube

ROOT = Path(__file__).resolve().parents[2]


def _named_in_contracts() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named: set[str] = set()
    for contract in config["contracts"]:
        containers = contract.get("containers", [""])
        for layer in contract.get("layers", []):
            for part in re.split(r"[|:]", layer):
                named.update(f"{c}.{part.strip()}" if c else part.strip() for c in containers)
        named.update(contract.get("source_modules", []))
    return named


def _covered(module: str, named: set[str]) -> bool:
    parts = module.split(".")
    # a package named in a contract covers its submodules (the root package only itself)
    return module in named or any(".".join(parts[:i]) in named for i in range(2, len(parts)))


def test_every_module_is_the_source_of_an_import_contract() -> None:
    modules = ["rebootd"] + [info.name for info in pkgutil.walk_packages(rebootd.__path__, prefix="rebootd.")]
    named = _named_in_contracts()

    missing = [m for m in modules if not _covered(m, named)]

    assert len(modules) > 50
    assert not missing, f"modules in no import contract: {missing}"


def test_every_module_of_the_kube_package_has_a_layer_of_its_own() -> None:
    modules = [info.name for info in pkgutil.walk_packages(rebootd.kube.__path__, prefix="rebootd.kube.")]
    named = _named_in_contracts()

    unplaced = [m for m in modules if m not in named]

    assert "rebootd.kube.client" in modules
    assert not unplaced, f"modules of rebootd.kube in no layer of its contract: {unplaced}"
