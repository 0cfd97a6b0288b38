"""docs/configuration.md is generated from the settings model and must not go stale."""

from __future__ import annotations

import io
from pathlib import Path

from rebootd.cli import main, render_markdown
from rebootd.settings import Settings, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is stale: regenerate it with "
        "`rebootd config --output markdown > docs/configuration.md`"
    )


def test_markdown_output_documents_every_option() -> None:
    out = io.StringIO()
    assert main(["config", "--output", "markdown"], environ={}, stdout=out, stderr=io.StringIO()) == 0
    text = out.getvalue()
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in text


def test_markdown_reference_ignores_the_current_environment() -> None:
    out = io.StringIO()
    main(
        ["config", "--output", "markdown"], environ={"REBOOTD_PERIOD": "7m"}, stdout=out, stderr=io.StringIO()
    )
    assert "`7m`" not in out.getvalue()
