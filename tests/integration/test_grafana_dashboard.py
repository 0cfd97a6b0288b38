"""docs/grafana-dashboard.json: valid Grafana JSON whose queries use only rebootd's real metrics.

The metric names come from `Metrics.create()` (the collectors the daemon registers), expanded to
the series names Prometheus stores (`_total` for counters, `_bucket`/`_sum`/`_count` for
histograms). Every PromQL expression of the dashboard (panel targets, annotations, template
variables) is checked two ways: the real `promtool check rules` parses it, and every metric name in
it is one of those series. The name extractor is itself tested, so the check cannot pass vacuously.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rebootd.metrics import Metrics
from tests.fixtures.tools import require_binary

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
# Grafana's variables, replaced by values Prometheus accepts so that promtool can parse the query.
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__range": "1h", "node": ".*"}
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "atan2", "inf", "nan",
}  # fmt: skip
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}

Panel = dict[str, Any]


def series_names() -> dict[str, str]:
    """Every series name rebootd exports -> the metric family it belongs to."""
    names = {}
    for family in Metrics.create().registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels, keywords or numbers)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", text):  # not inside a number like 1h or 1e3
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def substitute(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_VARIABLES[m.group(1)], expr)


def all_panels(panels: list[Panel]) -> Iterator[Panel]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard."""
    found = []
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: unexpected query {query!r}"
        found.append((f"variable {variable['name']!r}", match.group(1)))
    return found


def test_metric_name_extraction_finds_names_and_ignores_the_rest() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, node) (rate(foo_bucket{job="a",le!="1"}[5m])))'
        " / on (node) group_left (zone) up offset 1h + bar:rate5m or vector(1)"
    )
    assert metric_names(expr) == {"foo_bucket", "up", "bar:rate5m"}
    assert metric_names('sum without (instance) (x{a=~"sum(b)"})') == {"x"}


def test_dashboard_is_valid_grafana_json_with_unique_panels_and_query_ids() -> None:
    board = dashboard()

    assert board["uid"] == "rebootd-overview"
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    panels = list(all_panels(board["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_dashboard_query_reads_only_metrics_that_rebootd_exports() -> None:
    known = series_names()
    for where, expr in expressions(dashboard()):
        names = metric_names(substitute(expr))
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - set(known)
        assert not unknown, f"{where}: {sorted(unknown)} are not metrics of rebootd.metrics"


def test_every_metric_of_rebootd_appears_on_the_dashboard() -> None:
    known = series_names()
    used = {known[name] for _, expr in expressions(dashboard()) for name in metric_names(substitute(expr))}

    assert used == set(known.values())


def test_every_dashboard_query_parses_with_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", install_hint="apt-get install prometheus")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(expressions(dashboard()))
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr


@pytest.mark.parametrize("variable", sorted(GRAFANA_VARIABLES))
def test_substituted_grafana_variables_are_all_used(variable: str) -> None:
    """Guards the substitution table: a variable listed here but gone from the dashboard is stale."""
    text = DASHBOARD.read_text()
    assert f"${variable}" in text or f"${{{variable}}}" in text


@pytest.mark.parametrize(
    "document",
    [
        "docs/operations.md",
        "docs/migrating-from-kured.md",
        "deploy/kustomize/overlays/prometheus-operator/prometheusrule.yaml",
    ],
)
def test_docs_and_alert_rules_name_only_real_metrics(document: str) -> None:
    known = series_names()
    text = (DASHBOARD.parents[1] / document).read_text()
    named = set(re.findall(r"\brebootd_[a-z_]+[a-z]", text))

    assert named
    assert named <= set(known) | set(known.values())
