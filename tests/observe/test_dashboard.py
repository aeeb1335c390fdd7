"""The Grafana dashboard: built with the SDK, importable as is, on the monitors' real metrics."""

from __future__ import annotations

import io
import json
import re
import sys
from contextlib import redirect_stdout
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import modeldeploy as md
from modeldeploy import cli
from modeldeploy.dashboard import dashboard, panels, variable_queries
from modeldeploy.events import (
    BatchExecuted,
    ModelLoaded,
    Predictions,
    RequestFinished,
    RequestStarted,
)
from modeldeploy.monitors import DriftMonitor, PrometheusMonitor, reference_statistics

pytest.importorskip("grafana_foundation_sdk")

METRIC = re.compile(r"\b([a-z_]+(?:_total|_bucket|_sum|_count)?)\s*(?:\{|\[|\))")


def targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (names followed by a selector or range)."""
    keywords = {"sum", "rate", "max", "by", "ignoring", "group_left", "histogram_quantile"}
    return {m for m in METRIC.findall(expr) if m not in keywords and not m.startswith("$")}


def exposed_names(namespace: str = "modeldeploy") -> set[str]:
    """Every sample name the monitors expose after a request, a batch, a load and predictions."""
    registry = CollectorRegistry()
    monitor = PrometheusMonitor(registry, namespace=namespace)
    monitor.on_model_loaded(ModelLoaded("iris", "1", 0.1))
    monitor.on_request_start(RequestStarted("iris", "1", "r"))
    monitor.on_request_end(RequestFinished("iris", "1", "r", "ok", "ok", 0.01))
    monitor.on_batch(BatchExecuted("iris", "1", 2, 0.001, 0.002))
    monitor.track_queue("iris", lambda: 0)
    drift = DriftMonitor(
        reference_statistics([[1.0, 2.0], [3.0, 4.0]], [0.0, 1.0]),
        registry=registry, namespace=namespace, sample_rate=1.0, window=2, chunks=1,
    )  # fmt: skip
    drift.on_predictions(Predictions("iris", "1", [[1.0, 2.0], [2.0, 3.0]], [0.0, 1.0]))
    text = generate_latest(registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


class TestModel:
    def test_every_panel_has_a_title_a_unit_and_prometheus_targets(self) -> None:
        board = dashboard()
        shown = [p for p in board["panels"] if p["type"] != "row"]
        assert len(shown) == len(panels())
        for panel in shown:
            assert panel["title"]
            assert panel["fieldConfig"]["defaults"]["unit"]
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in targets(board):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["expr"]

    def test_the_datasource_job_model_and_version_are_variables(self) -> None:
        variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name, query in variable_queries().items():
            assert variables[name]["type"] == "query"
            assert variables[name]["query"] == query
            assert variables[name]["datasource"]["uid"] == "${datasource}"
            assert variables[name]["includeAll"]
            assert variables[name]["allValue"] == ".*"

    def test_queries_use_the_variables(self) -> None:
        for target in targets(dashboard()):
            expr = target["expr"]
            if "modeldeploy_" in expr and "monitor_errors" not in expr:
                assert 'model=~"$model"' in expr, expr
            if "process_" in expr:
                assert 'job=~"$job"' in expr, expr

    def test_importable_as_is(self) -> None:
        # nothing for an import to fill in: no __inputs, no hard-coded datasource uid
        text = json.dumps(dashboard())
        assert "__inputs" not in text
        assert "${DS_" not in text
        assert set(re.findall(r'"uid": "([^"]*)"', text)) <= {"${datasource}", "modeldeploy"}

    def test_panels_fit_the_grid(self) -> None:
        for panel in dashboard()["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]

    def test_title_and_uid(self) -> None:
        board = dashboard("Iris in production")
        assert board["title"] == "Iris in production"
        assert board["uid"] == "modeldeploy-iris-in-production"
        assert len(dashboard("x" * 100)["uid"]) <= 40
        assert dashboard(uid="mine")["uid"] == "mine"


class TestMetricNames:
    @pytest.mark.parametrize("namespace", ["modeldeploy", "iris"])
    def test_every_modeldeploy_metric_queried_is_exposed(self, namespace: str) -> None:
        exposed = exposed_names(namespace)
        queried = {
            name
            for target in targets(dashboard(namespace=namespace))
            for name in metric_names(target["expr"])
            if name.startswith(f"{namespace}_")
        }
        assert queried
        assert queried - exposed == set()

    def test_the_metric_pattern_finds_names(self) -> None:
        expr = 'sum(rate(modeldeploy_requests_total{model=~"$model"}[$__rate_interval])) / x'
        assert metric_names(expr) == {"modeldeploy_requests_total"}


class TestCommand:
    def test_prints_the_dashboard(self) -> None:
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["dashboard", "--title", "Iris"]) == 0
        assert json.loads(out.getvalue()) == dashboard("Iris")

    def test_without_the_extra_names_it(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for name in list(sys.modules):
            if name.startswith("grafana_foundation_sdk"):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "grafana_foundation_sdk", None)
        with pytest.raises(md.ModelDeployError, match=r"modeldeploy\[dashboard\]"):
            dashboard()
        assert cli.main(["dashboard"]) == 2
        assert "pip install 'modeldeploy[dashboard]'" in capsys.readouterr().err
