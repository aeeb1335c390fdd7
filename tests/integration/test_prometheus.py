"""The real Prometheus server scrapes ``modeldeploy serve`` and counts what was sent."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.conftest import require_tool
from tests.integration.servers import STOP_WITHIN, Process, free_port, request, serve

SCRAPED_WITHIN = 30.0  # seconds Prometheus may take to scrape the final counts
OK, INVALID = 20, 5

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Process]:
    process = serve("modeldeploy.demo:service", name="modeldeploy serve")
    yield process
    process.kill()


@attrs.frozen
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def diagnose(self) -> str:
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        return f"prometheus {state}:\n{self.log.read_text(errors='replace')}"


@pytest.fixture(scope="module")
def prometheus(server: Process) -> Iterator[Prometheus]:
    """A Prometheus of our own on a free port, scraping ``server`` every second."""
    binary = require_tool("prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: modeldeploy\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{server.port}']\n"
        )
        log = Path(tmp) / "prometheus.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={Path(tmp) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        try:
            yield Prometheus(port, process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def query(port: int, promql: str) -> float | None:
    """The instant value of *promql* (one series), or None while there is none."""
    path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        status, _, body = request(port, "GET", path)
    except OSError:
        return None  # still starting
    if status != 200:
        return None
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for(prometheus: Prometheus, promql: str, want: float) -> None:
    deadline = time.monotonic() + SCRAPED_WITHIN
    got = None
    while got != want:
        if time.monotonic() > deadline:
            pytest.fail(f"{promql} = {got}, want {want}; {prometheus.diagnose()}")
        time.sleep(0.2)  # polling interval of a bounded loop: Prometheus scrapes every 1s
        got = query(prometheus.port, promql)


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
