"""Every query of the dashboard and the alert rules, run by a real Prometheus after traffic.

One served model, one Prometheus scraping it every second with the rules loaded
(evaluated every second, a 10 s rate window, ``for: 1s``). Each query must run
without error, and return data where the traffic produces it. Then injected
server errors drive ``ModelDeployHighErrorRatio`` to firing through
Prometheus's own rule evaluation, and stopping them resolves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from modeldeploy import alerts
from tests.integration.prometheus import Prometheus, poll, running, wait_for
from tests.integration.servers import Process, request, serve

pytestmark = pytest.mark.integration

dashboard = pytest.importorskip("modeldeploy.dashboard")
pytest.importorskip("grafana_foundation_sdk")

RULES = alerts.rules(window="10s", for_="1s")
# what Grafana puts in place of the dashboard's variables
VARIABLES = {
    "$__rate_interval": "30s",
    "$model": ".*",
    "$version": ".*",
    "$job": "modeldeploy",
}
OK, CLIENT_ERRORS = 40, 5
FIRING_WITHIN = 40.0  # seconds: scrape, 10 s rate window, evaluation, for: 1s
ALERT = "ModelDeployHighErrorRatio"


@pytest.fixture(scope="module")
def server() -> Iterator[Process]:
    process = serve("tests.integration.monitored:service", name="modeldeploy serve")
    yield process
    process.kill()


@pytest.fixture(scope="module")
def prometheus(server: Process) -> Iterator[Prometheus]:
    rules = alerts.to_yaml(alerts.alert_rules(interval="1s", window="10s", for_="1s"))
    with running([server.port], rules=rules) as started:
        yield started


def predict(server: Process, row: list[float]) -> int:
    body = json.dumps(row).encode()
    status, _, _ = request(
        server.port, "POST", "/predict", body, {"Content-Type": "application/json"}
    )
    return status


def send_ok(server: Process, n: int = 10) -> None:
    for i in range(n):
        assert predict(server, [float(i), 1.0]) == 200


def send_failing(server: Process, n: int = 10) -> None:
    for _ in range(n):
        assert predict(server, [-1.0, 1.0]) == 500


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def run(prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    answer = prometheus.instant(expr)
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.fixture(scope="module")
def traffic(server: Process, prometheus: Prometheus) -> None:
    """Answered requests and client errors, scraped; no server error yet."""
    send_ok(server, OK)
    for _ in range(CLIENT_ERRORS):
        status, _, _ = request(
            server.port, "POST", "/predict", b"[1, 2", {"Content-Type": "application/json"}
        )
        assert status == 400
    wait_for(prometheus, "sum(modeldeploy_requests_total)", OK + CLIENT_ERRORS)
    # a second scrape of the final counts, so every rate() has two samples
    poll(
        prometheus, "two samples of the final counts",
        lambda: run(prometheus, "count_over_time(up[30s]) >= 3") or None,
    )  # fmt: skip


def service_calls_on_predictions() -> bool:
    """Whether the Service passes the model's inputs and outputs to monitors."""
    import modeldeploy as md

    class Listens:
        seen = 0

        def on_predictions(self, event: object) -> None:
            Listens.seen += 1

    with md.Service(lambda x: x, monitors=[Listens()], workers=0) as service:
        service.predict(1)
    return Listens.seen > 0


def dashboard_queries() -> list[tuple[str, str, str]]:
    return [
        (panel.title, query.expr, query.data)
        for panel in dashboard.panels()
        for query in panel.queries
    ] + [("variable " + name, q, "always") for name, q in dashboard.variable_queries().items()]


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(("title", "expr", "data"), dashboard_queries())
def test_dashboard_query(prometheus: Prometheus, title: str, expr: str, data: str) -> None:
    if expr.startswith("label_values("):
        # a Grafana function, not PromQL: ask the label-values API as Grafana does
        metric, label = expr[len("label_values(") : -1].rsplit(", ", 1)
        answer = prometheus.api(f"label/{label}/values", **{"match[]": substitute(metric)})
        assert answer["status"] == "success", answer
        assert answer["data"], f"{title}: no values"
        return
    result = run(prometheus, substitute(expr))
    if data == "drift" and not service_calls_on_predictions():
        pytest.skip("the Service does not call on_predictions yet")
    if data in ("always", "errors", "batches", "drift"):
        assert result, f"{title}: {expr} returned no data"
    elif data == "history":
        assert result == []  # a fresh Prometheus holds no day-old samples


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.alert)
def test_rule_query(prometheus: Prometheus, rule: alerts.Rule) -> None:
    value = run(prometheus, rule.value)
    run(prometheus, rule.expr)
    if rule.data == "drift" and not service_calls_on_predictions():
        pytest.skip("the Service does not call on_predictions yet")
    if rule.data in ("always", "drift"):
        assert value, f"{rule.alert}: {rule.value} returned no data"
    elif rule.data == "down":
        assert value == []  # the target is up and serves a model


@pytest.mark.usefixtures("traffic")
def test_rules_are_loaded_and_healthy(prometheus: Prometheus) -> None:
    groups = prometheus.api("rules")["data"]["groups"]
    (group,) = groups
    assert {r["name"] for r in group["rules"]} == {r.alert for r in alerts.rules()}
    assert all(r["health"] in ("ok", "unknown") for r in group["rules"]), group["rules"]


def alert_state(prometheus: Prometheus) -> str | None:
    states = [
        a["state"] for a in prometheus.api("alerts")["data"]["alerts"]
        if a["labels"]["alertname"] == ALERT
    ]  # fmt: skip
    return states[0] if states else None


@pytest.mark.usefixtures("traffic")
def test_error_ratio_alert_fires_and_resolves(server: Process, prometheus: Prometheus) -> None:
    assert alert_state(prometheus) is None  # client errors do not count

    def half_failing() -> None:
        send_ok(server, 5)
        send_failing(server, 5)

    poll(
        prometheus, f"{ALERT} firing",
        lambda: alert_state(prometheus) == "firing" or None,
        within=FIRING_WITHIN, between=half_failing,
    )  # fmt: skip
    (firing,) = [
        a for a in prometheus.api("alerts")["data"]["alerts"] if a["labels"]["alertname"] == ALERT
    ]
    assert firing["labels"]["model"] == "monitored"
    assert firing["labels"]["severity"] == "critical"
    assert 0.05 < float(firing["value"]) <= 1.0

    poll(
        prometheus, f"{ALERT} resolved",
        lambda: alert_state(prometheus) is None or None,
        within=FIRING_WITHIN, between=lambda: send_ok(server, 10),
    )  # fmt: skip


def test_no_ready_model_and_target_down_fire() -> None:
    """A process with no model loaded, and a target that does not answer, both alert."""
    from prometheus_client import CollectorRegistry, start_http_server

    from tests.integration.servers import free_port

    empty_port, closed_port = free_port(), free_port()
    server, thread = start_http_server(empty_port, addr="127.0.0.1", registry=CollectorRegistry())
    try:
        rules = alerts.to_yaml(alerts.alert_rules(interval="1s", for_="0s"))
        with running([empty_port, closed_port], rules=rules) as prometheus:

            def firing() -> dict[str, str] | None:
                found = {
                    a["labels"]["alertname"]: a["labels"]["instance"]
                    for a in prometheus.api("alerts")["data"]["alerts"]
                    if a["state"] == "firing"
                }
                wanted = {"ModelDeployNoReadyModel", "ModelDeployTargetDown"}
                return found if wanted <= set(found) else None

            found = poll(prometheus, "both alerts firing", firing, within=FIRING_WITHIN)
        assert found["ModelDeployNoReadyModel"] == f"127.0.0.1:{empty_port}"
        assert found["ModelDeployTargetDown"] == f"127.0.0.1:{closed_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
