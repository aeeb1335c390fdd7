"""Faults are contained: a model that raises, hangs, leaks or fails to load; a monitor
that raises; a worker process killed with SIGKILL. Each is answered with its typed error
and counted in the metrics, and the server keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.servers import Process, free_port, request
from tests.reliability.clients import (
    children,
    cmdline,
    merged,
    metric,
    post,
    record,
    rss,
    traffic,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SERVE = [sys.executable, "-m", "modeldeploy", "serve"]
PREDICT = "/models/faulty/predict"


def started(argv: list[str], name: str) -> Process:
    port = free_port()
    process = Process([*argv, "--port", str(port)], port=port, name=name)
    try:
        process.wait_ready()
    except BaseException:
        process.kill()
        raise
    return process


@pytest.fixture(scope="module")
def faulty() -> Iterator[Process]:
    process = started([*SERVE, "tests.reliability.apps:faulty"], "faulty on uvicorn")
    yield process
    process.kill()


def fault(port: int, kind: str) -> tuple[int, dict[str, str], dict[str, object]]:
    status, headers, body = post(port, PREDICT, json.dumps({"fault": kind}).encode())
    return status, headers, json.loads(body)


def requests_counted(port: int, code: str) -> float:
    text = request(port, "GET", "/metrics")[2].decode()
    return metric(text, "modeldeploy_requests_total", model="faulty", code=code)


def test_a_model_that_raises_is_a_500_with_its_code_and_the_server_goes_on(faulty):
    before = requests_counted(faulty.port, "prediction_error")
    status, _, body = fault(faulty.port, "raise")
    assert status == 500
    assert body["error"]["code"] == "prediction_error"  # type: ignore[index]
    assert "Traceback" not in json.dumps(body)
    assert requests_counted(faulty.port, "prediction_error") == before + 1
    assert fault(faulty.port, "none")[0] == 200


def test_a_model_that_hangs_past_its_deadline_is_a_504(faulty):
    before = requests_counted(faulty.port, "deadline_exceeded")
    started_at = time.monotonic()
    status, _, body = fault(faulty.port, "hang")
    took = time.monotonic() - started_at
    assert status == 504
    assert body["error"]["code"] == "deadline_exceeded"  # type: ignore[index]
    assert requests_counted(faulty.port, "deadline_exceeded") == before + 1
    assert fault(faulty.port, "none")[0] == 200
    record("fault-hang", {"deadline_s": 0.5, "answered_in_s": round(took, 3)})


def test_a_monitor_that_raises_never_reaches_a_request(faulty):
    # RaisingMonitor raises in every hook of every request
    for _ in range(3):
        assert fault(faulty.port, "none")[0] == 200
    text = request(faulty.port, "GET", "/metrics")[2].decode()
    assert metric(text, "modeldeploy_monitor_errors_total") >= 3


def test_a_model_that_fails_to_load_stops_the_server_with_its_error():
    port = free_port()
    process = Process([*SERVE, "tests.reliability.apps:broken", "--port", str(port)], port=port,
                      name="broken")  # fmt: skip
    try:
        code = process.process.wait(timeout=30)
        log = process.log()
    finally:
        process.kill()
    assert code == 1
    # the typed error, with the model's own exception as its cause
    assert "ModelLoadError: model 'broken' failed to load: RuntimeError" in log
    assert "cannot serve: model 'broken' failed to load" in log


def test_a_slow_leak_is_contained_by_recycling_gunicorn_workers(monkeypatch):
    """gunicorn's --max-requests replaces a worker after N requests: the leak goes with it."""
    monkeypatch.setenv("MODELDEPLOY_HEADER_TIMEOUT", "5")
    max_requests, sent = 20, 70
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "-k", "modeldeploy.servers.gunicorn.ThreadWorker",
        "--threads", "2", "--max-requests", str(max_requests), "--bind", f"127.0.0.1:{port}",
        "tests.reliability.apps:faulty_wsgi",
    ]  # fmt: skip
    process = Process(argv, port=port, name="faulty on gunicorn")
    try:
        process.wait_ready()
        statuses: dict[int, int] = {}
        worker_rss = []
        for _ in range(sent):
            status = fault(port, "leak")[0]
            statuses[status] = statuses.get(status, 0) + 1
            workers = children(process.pid)
            if workers:
                worker_rss.append(rss(workers[0]))
    finally:
        process.kill()
    assert statuses == {200: sent}, statuses
    leaked_mib = sent * 256 / 1024
    peak_mib = max(worker_rss) / (1 << 20)
    first_mib = worker_rss[0] / (1 << 20)
    # without recycling the worker would hold all of it; with it, at most max_requests' worth
    assert peak_mib - first_mib < leaked_mib / 2, (first_mib, peak_mib)
    record(
        "fault-leak",
        {
            "requests": sent,
            "leaked_mib_total": leaked_mib,
            "max_requests": max_requests,
            "worker_rss_first_mib": round(first_mib, 1),
            "worker_rss_peak_mib": round(peak_mib, 1),
            "failed": sent - statuses.get(200, 0),
        },
    )


def worker_pids(process: Process, server: str) -> list[int]:
    if server == "gunicorn":
        masters = children(process.pid)
        return [pid for master in masters for pid in children(master)]
    return [pid for pid in children(process.pid) if "spawn_main" in cmdline(pid)]


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_a_worker_killed_with_sigkill_costs_only_its_requests_in_flight(server):
    clients = 4
    process = started(
        [*SERVE, "modeldeploy.demo:service", "--server", server, "--workers", "2"],
        f"{server} --workers 2",
    )
    try:
        deadline = time.monotonic() + 30  # a loaded machine starts processes slowly
        while len(worker_pids(process, server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # polling interval: the workers are starting
        workers = worker_pids(process, server)
        assert len(workers) == 2, (workers, process.log()[-2000:])
        with traffic(process.port, clients=clients) as ordinary:
            time.sleep(1.0)  # traffic reaches both workers first
            os.kill(workers[0], signal.SIGKILL)
            killed_at = time.monotonic()
            # the server keeps serving, and replaces the worker
            replaced = None
            while time.monotonic() - killed_at < 20:
                now = worker_pids(process, server)
                if len(now) == 2 and workers[0] not in now:
                    replaced = time.monotonic() - killed_at
                    break
                time.sleep(0.1)  # polling interval
            time.sleep(1.0)  # traffic after the replacement
        log = process.log()
    finally:
        process.kill()
    figures = merged(ordinary)
    failed = figures["errors"] + sum(v for k, v in figures["statuses"].items() if k != "200")
    assert replaced is not None, log[-2000:]
    # each client has one request in flight at most: only those on the killed worker may fail
    assert failed <= clients, (figures, [e for t in ordinary for e in t.errors][:5], log[-2000:])
    assert figures["statuses"].get("200", 0) > 0, figures
    if server == "gunicorn":
        assert f"Worker (pid:{workers[0]}) was sent SIGKILL" in log, log[-2000:]
    record(
        f"fault-sigkill-{server}",
        {
            "server": server,
            "clients": clients,
            "failed": failed,
            "answered": figures["statuses"].get("200", 0),
            "replaced_in_s": round(replaced, 2),
        },
    )
