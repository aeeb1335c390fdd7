"""Overload at ten times capacity: quick 503s with Retry-After, accepted work answered.

The ``slow`` service computes one request at a time in 20 ms (50 requests a second)
and keeps at most 4 waiting. One client measures its capacity; then 30 clients send
as fast as they are answered. Every answer must be a 200 or a 503 with Retry-After,
and none may fail; the figures (accepted req/s against capacity, rejection p99, RSS
peak) go to the report.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from tests.integration.servers import Process
from tests.reliability.apps import COMPUTE_S
from tests.reliability.clients import Traffic, children, percentile, record, rss, traffic
from tests.reliability.test_faults import SERVE, started

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PATH, BODY = "/models/slow/predict", b"1"
CLIENTS = 30


class Sampler(threading.Thread):
    """The peak RSS of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def total(self) -> int:
        pids = [self.pid, *children(self.pid)]
        pids += [grandchild for child in pids[1:] for grandchild in children(child)]
        size = 0
        for pid in pids:
            with contextlib.suppress(OSError):  # gone meanwhile
                size += rss(pid)
        return size

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.total())


def run_for(port: int, clients: int, seconds: float) -> tuple[list[Traffic], float]:
    with traffic(port, clients=clients, path=PATH, body=BODY) as threads:
        started_at = time.monotonic()
        time.sleep(seconds)  # a fixed stretch of load
    return threads, time.monotonic() - started_at


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_overload_is_refused_quickly_and_accepted_work_is_answered(server: str) -> None:
    # gunicorn's threads bound how many requests reach the service: with fewer threads
    # than the service's queue, the rest wait in the listen backlog and nothing is refused
    threads = ["--threads", "16"] if server == "gunicorn" else []
    process: Process = started(
        [*SERVE, "tests.reliability.apps:slow", "--server", server, *threads],
        f"slow on {server}",
    )
    try:
        baseline, took = run_for(process.port, 1, 1.5)
        capacity = sum(t.statuses.get(200, 0) for t in baseline) / took
        sampler = Sampler(process.pid)
        rss_before = sampler.total()
        sampler.start()
        overloaded, took = run_for(process.port, CLIENTS, 3.0)
        sampler.stop.set()
        sampler.join()
        assert process.process.poll() is None, "the server died"
    finally:
        process.kill()
    statuses: dict[int, int] = {}
    for thread in overloaded:
        for status, count in thread.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    errors = [e for t in overloaded for e in t.errors]
    rejected = [x for t in overloaded for x in t.by_status.get(503, [])]
    accepted = [x for t in overloaded for x in t.by_status.get(200, [])]
    assert not errors, errors[:5]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.get(503, 0) > 0, "never overloaded"
    assert sum(t.without_retry_after for t in overloaded) == 0
    assert accepted, "no accepted work was answered"
    offered = sum(statuses.values()) / took
    record(
        f"overload-{server}",
        {
            "server": server,
            "capacity_rps": round(capacity, 1),
            "model_rps": round(1 / COMPUTE_S, 1),
            "offered_rps": round(offered, 1),
            "offered_over_capacity": round(offered / capacity, 1),
            "accepted_rps": round(len(accepted) / took, 1),
            "accepted_over_capacity": round(len(accepted) / took / capacity, 2),
            "rejected": len(rejected),
            "rejection_p50_ms": round(percentile(rejected, 0.5) * 1000, 2),
            "rejection_p99_ms": round(percentile(rejected, 0.99) * 1000, 2),
            "accepted_p99_ms": round(percentile(accepted, 0.99) * 1000, 1),
            "rss_before_mib": round(rss_before / (1 << 20), 1),
            "rss_peak_mib": round(sampler.peak / (1 << 20), 1),
        },
    )
