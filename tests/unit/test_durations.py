"""Go-style durations: parsed strictly, formatted back to what an operator would write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebootd.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1h0m0s", 3600.0),
        ("2.5m", 150.0),
        ("300", 300.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("1m1s1ms", 61.001),
        ("1500us", 0.0015),
        (" 10m ", 600.0),
    ],
)
def test_valid_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-5m", "5 m", "1d", "m", "1h-5m", "1.2.3s", "1e3s", "h1"])
def test_invalid_durations_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (90, "1m30s"), (5400, "1h30m"), (3600, "1h"), (61.5, "1m1.5s")],
)
def test_durations_format_in_go_style(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**7))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
