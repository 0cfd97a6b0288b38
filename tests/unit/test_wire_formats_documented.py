"""Every name rebootd writes into the cluster, and the current lock format, is documented.

Annotations, finalizers and the Lease state's format are wire formats: during a rolling DaemonSet
update, daemons of two versions read what the other wrote. So each one the daemon's code writes
must be described for operators (docs/architecture.md) and recorded in the changelog, where a new
one or a format bump has to say what an older daemon does with it (CONTRIBUTING.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rebootd.lockstate import STATE_VERSION

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "rebootd"
# The daemon's own modules: the emulator and the control-plane launcher write nothing of rebootd's.
DAEMON_SOURCES = sorted(PACKAGE.glob("*.py"))
WIRE_NAME = re.compile(r"""["'](rebootd\.io/[a-z0-9-]+)["']""")


def wire_names() -> list[str]:
    found = {name for path in DAEMON_SOURCES for name in WIRE_NAME.findall(path.read_text(encoding="utf-8"))}
    return sorted(found)


def test_the_daemon_writes_the_wire_names_this_test_knows_to_look_for() -> None:
    # The scan itself must find the lock's names, or every parametrised case below would pass empty.
    assert {"rebootd.io/state", "rebootd.io/holder", "rebootd.io/cordoned-by", "rebootd.io/halted"} <= set(
        wire_names()
    )


@pytest.mark.parametrize("document", ["CHANGELOG.md", "docs/architecture.md"])
@pytest.mark.parametrize("name", wire_names())
def test_every_name_the_daemon_writes_to_the_cluster_is_documented(name: str, document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert re.search(re.escape(name) + r"(?![a-z0-9-])", text), f"{document} does not mention {name}"


def test_the_current_lock_format_is_in_the_changelog_and_the_architecture_notes() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"lock format {STATE_VERSION - 1} -> {STATE_VERSION}" in changelog
    assert f"version: {STATE_VERSION}" in architecture
