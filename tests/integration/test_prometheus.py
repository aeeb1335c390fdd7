"""The real Prometheus server scrapes ``modeldeploy serve`` and counts what was sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.prometheus import Prometheus, query, running, wait_for
from tests.integration.servers import Process, request, serve

OK, INVALID = 20, 5

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Process]:
    process = serve("modeldeploy.demo:service", name="modeldeploy serve")
    yield process
    process.kill()


@pytest.fixture(scope="module")
def prometheus(server: Process) -> Iterator[Prometheus]:
    """A Prometheus of our own on a free port, scraping ``server`` every second."""
    with running([server.port]) as started:
        yield started


def test_prometheus_counts_every_request(server: Process, prometheus: Prometheus) -> None:
    for _ in range(OK):
        status, _, _ = request(
            server.port, "POST", "/predict", b"[[5.1, 3.5, 1.4, 0.2]]",
            {"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 200
    for _ in range(INVALID):
        status, _, _ = request(
            server.port, "POST", "/predict", b"[[5.1, 3.5]]", {"Content-Type": "application/json"}
        )
        assert status == 422

    wait_for(prometheus, 'up{job="modeldeploy"}', 1.0)
    wait_for(prometheus, "sum(modeldeploy_requests_total)", OK + INVALID)
    port = prometheus.port
    assert query(port, 'sum(modeldeploy_requests_total{code="ok"})') == OK
    assert query(port, 'sum(modeldeploy_requests_total{code="validation_error"})') == INVALID
    assert query(port, 'modeldeploy_model_info{model="demo",version="1"}') == 1.0
