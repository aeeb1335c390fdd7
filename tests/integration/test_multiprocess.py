"""``modeldeploy serve --workers 2``: every process's queue depth and process metrics are seen.

In prometheus_client's multiprocess mode, ``/metrics`` of one process reads the
files of all; a queue depth (read from a callable) and CPU and memory (read from
``/proc/self``) reach those files through each process's reporter thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.servers import Process, request, serve

pytestmark = pytest.mark.integration

WRITTEN_WITHIN = 20.0  # seconds: a few reporter ticks, on a loaded machine


@pytest.fixture(scope="module")
def server() -> Iterator[Process]:
    process = serve("tests.integration.monitored:service", "--workers", "2", name="uvicorn x2")
    yield process
    process.kill()


def scrape(server: Process) -> list[tuple[str, dict[str, str], float]]:
    status, _, body = request(server.port, "GET", "/metrics")
    assert status == 200
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    ]


def wait_for_samples(server: Process, name: str, want: int) -> list[dict[str, str]]:
    """The label sets of *name*'s samples, once there are at least *want* of them."""
    deadline = time.monotonic() + WRITTEN_WITHIN
    while True:
        found = [labels for n, labels, _ in scrape(server) if n == name]
        if len(found) >= want:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{len(found)} samples of {name}, want {want}:\n{server.log()}")
        time.sleep(0.2)  # polling interval of a bounded loop: reporters write every second


def test_queue_depth_of_every_process(server: Process) -> None:
    (labels,) = wait_for_samples(server, "modeldeploy_queue_depth", 1)
    assert labels == {"model": "monitored"}  # one sum over the processes, no pid label


def test_cpu_and_memory_of_every_process(server: Process) -> None:
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        pids = {labels["pid"] for labels in wait_for_samples(server, name, 2)}
        assert len(pids) >= 2, name  # both workers (and the supervisor, when it serves)


def test_model_info_and_drift_across_processes(server: Process) -> None:
    # ready means one process answered: the other may still be loading (503 not_ready)
    answered = 0
    deadline = time.monotonic() + WRITTEN_WITHIN
    while answered < 60:
        status, _, _ = request(
            server.port, "POST", "/predict", f"[{answered}, 1.0]".encode(),
            {"Content-Type": "application/json"},
        )  # fmt: skip
        assert status in (200, 503)
        answered += status == 200
        if status == 503 and time.monotonic() > deadline:
            pytest.fail(f"still not ready:\n{server.log()}")
    samples = scrape(server)
    info = [(labels, value) for name, labels, value in samples if name == "modeldeploy_model_info"]
    assert info == [({"model": "monitored", "version": "1"}, 1.0)]
    assert any(name == "modeldeploy_drift_psi" for name, _, _ in samples)
