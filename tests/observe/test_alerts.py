"""Alerting rules: promtool accepts them, they cover every server error, the YAML is YAML."""

from __future__ import annotations

import io
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import given

import modeldeploy as md
from modeldeploy import alerts, cli, errors
from tests import strategies
from tests.conftest import require_tool

ALERTS = {
    "ModelDeployHighErrorRatio", "ModelDeployHighLatency", "ModelDeployLatencyDrift",
    "ModelDeployOverloaded", "ModelDeployInputDrift", "ModelDeployDriftDetected",
    "ModelDeployNoReadyModel", "ModelDeployTargetDown",
}  # fmt: skip


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


class TestRules:
    def test_the_alerts(self) -> None:
        assert {r.alert for r in alerts.rules()} == ALERTS

    def test_promtool_accepts_the_default_rules(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.yml"
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["alert-rules"]) == 0
        path.write_text(out.getvalue())
        checked = promtool_check(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout

    def test_promtool_accepts_every_option(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.yml"
        document = alerts.alert_rules(
            interval="1s", namespace="iris", job='iris|"odd"', window="10s",
            error_ratio=0.5, p99_seconds=2, latency_drift=3, psi=0.1, for_="0s",
        )  # fmt: skip
        path.write_text(alerts.to_yaml(document))
        checked = promtool_check(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_promtool_rejects_a_broken_rule(self, tmp_path: Path) -> None:
        # the check above can fail: a rule file with a bad expression does not pass
        document = alerts.alert_rules()
        document["groups"][0]["rules"][0]["expr"] = "sum by (job ("
        path = tmp_path / "rules.yml"
        path.write_text(alerts.to_yaml(document))
        assert promtool_check(path).returncode != 0

    def test_options_reach_the_rules(self) -> None:
        found = {
            r.alert: r
            for r in alerts.rules(
                namespace="iris", job="j", window="30s", error_ratio=0.2,
                p99_seconds=1.5, latency_drift=2.0, psi=0.3, for_="1m",
            )
        }  # fmt: skip
        assert all(r.for_ == "1m" for r in found.values())
        assert found["ModelDeployHighErrorRatio"].expr.endswith("> 0.2")
        assert "[30s]" in found["ModelDeployHighErrorRatio"].expr
        assert found["ModelDeployHighLatency"].expr.endswith("> 1.5")
        assert "> 2.0 * histogram_quantile" in found["ModelDeployLatencyDrift"].expr
        assert "offset 1d" in found["ModelDeployLatencyDrift"].expr
        assert found["ModelDeployInputDrift"].expr.endswith("> 0.3")
        for rule in found.values():
            assert 'job=~"j"' in rule.expr
            assert "modeldeploy_" not in rule.expr

    def test_server_error_codes_are_every_5xx_but_overload(self) -> None:
        codes = set(alerts.server_error_codes())
        every = {
            cls.code
            for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, md.ModelDeployError)
        }
        for code in every:
            status = next(
                c.http_status
                for c in vars(errors).values()
                if isinstance(c, type) and issubclass(c, md.ModelDeployError) and c.code == code
            )
            assert (code in codes) == (status >= 500 and code != "overloaded"), code
        assert "prediction_error" in codes
        assert "validation_error" not in codes

    def test_every_modeldeploy_metric_of_the_rules_is_exposed(self) -> None:
        pytest.importorskip("grafana_foundation_sdk")
        from tests.observe.test_dashboard import exposed_names, metric_names

        queried = {
            name
            for rule in alerts.rules()
            for name in metric_names(rule.expr)
            if name.startswith("modeldeploy_")
        }
        assert "modeldeploy_drift_psi" in queried
        assert queried - exposed_names() == set()

    def test_rules_load_as_yaml(self) -> None:
        document = alerts.alert_rules(interval="15s")
        assert yaml.safe_load(alerts.to_yaml(document)) == document


class TestYAML:
    @given(strategies.yaml_documents)
    def test_round_trip(self, value: object) -> None:
        assert yaml.safe_load(alerts.to_yaml(value)) == value

    @pytest.mark.parametrize(
        "key", ["for", "a b", "", "1x", "x:y", "é", "Null", "TRUE", "no", "Off", "y"]
    )
    def test_keys_that_need_quotes_are_quoted(self, key: str) -> None:
        assert yaml.safe_load(alerts.to_yaml({key: 1})) == {key: 1}
