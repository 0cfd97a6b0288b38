"""Message rendering and URL redaction of the notifier (pure functions, no I/O)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from rebootd.notify import KINDS, render, templates_from_settings, url_scheme
from rebootd.settings import load_settings


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("Draining node %s", {"node": "w1"}, "Draining node w1"),  # kured's syntax
        ("Rebooting {node}", {"node": "w1"}, "Rebooting w1"),
        (
            "Halted at {node}: {reason}",
            {"node": "w1", "reason": "boot timeout"},
            "Halted at w1: boot timeout",
        ),
        ("Blocked {node}: {reason}", {"node": "w1"}, "Blocked w1: {reason}"),  # missing value stays
        ("Node {node}", {"node": "{reason} literal"}, "Node {reason} literal"),  # values are not re-read
        ("odd {0} template", {"node": "w1"}, "odd {0} template"),  # unusable template is sent as written
    ],
)
def test_templates_render_node_and_reason_placeholders(
    template: str, values: dict[str, str], expected: str
) -> None:
    assert render(template, values) == expected


def test_every_event_kind_has_a_template_from_settings() -> None:
    settings = load_settings(environ={"REBOOTD_MESSAGE_TEMPLATE_DRAIN": "Draining %s now"})

    templates = templates_from_settings(settings)

    assert set(templates) == set(KINDS)
    assert render(templates["drain"], {"node": "n1"}) == "Draining n1 now"
    assert render(templates["halt"], {"node": "n1", "reason": "r"}) == "Reboot rollout halted at node n1: r"


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("slack://TokenA/TokenB/TokenC/#ops", "slack"),
        ("JSONS://user:pass@host/path", "jsons"),
        ("mailto://user:pass@example.org", "mailto"),
    ],
)
def test_only_the_scheme_of_a_url_is_exposed(url: str, scheme: str) -> None:
    assert url_scheme(SecretStr(url)) == scheme
