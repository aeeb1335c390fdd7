"""A real Prometheus (Debian's package) on a free loopback port, and its HTTP API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from tests.conftest import require_tool
from tests.integration.servers import STOP_WITHIN, free_port, request

SCRAPED_WITHIN = 30.0  # seconds Prometheus may take to scrape the final counts
T = TypeVar("T")


@attrs.frozen
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def diagnose(self) -> str:
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        return f"prometheus {state}:\n{self.log.read_text(errors='replace')}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/PATH; the decoded body, whatever its status."""
        url = f"/api/v1/{path}?" + urllib.parse.urlencode(params)
        _, _, body = request(self.port, "GET", url)
        result: dict[str, Any] = json.loads(body)
        return result

    def instant(self, promql: str) -> dict[str, Any]:
        """The API's answer to an instant query: ``status`` and ``data`` or ``error``."""
        return self.api("query", query=promql)


@contextlib.contextmanager
def running(
    targets: Sequence[int], *, rules: str | None = None, job: str = "modeldeploy"
) -> Iterator[Prometheus]:
    """Prometheus scraping 127.0.0.1:PORT of each target every second, with *rules* loaded."""
    binary = require_tool("prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        text = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        if rules is not None:
            (Path(tmp) / "rules.yml").write_text(rules)
            text += "rule_files:\n  - rules.yml\n"
        listed = ", ".join(f"'127.0.0.1:{t}'" for t in targets)
        text += (
            "scrape_configs:\n"
            f"  - job_name: {job}\n"
            "    static_configs:\n"
            f"      - targets: [{listed}]\n"
        )
        config.write_text(text)
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


def poll(
    prometheus: Prometheus,
    what: str,
    check: Callable[[], T | None],
    *,
    within: float = SCRAPED_WITHIN,
    between: Callable[[], object] = lambda: None,
) -> T:
    """Call *check* until it returns something, calling *between* before each try."""
    deadline = time.monotonic() + within
    while True:
        between()
        # still starting: the port is closed (OSError), or answers 503 in plain text
        with contextlib.suppress(OSError, json.JSONDecodeError):
            got = check()
            if got is not None:
                return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {within}s; {prometheus.diagnose()}")
        time.sleep(0.2)  # polling interval of a bounded loop: Prometheus scrapes every 1s
