"""Soak: steady traffic for a while; after warm-up no memory, fd or thread growth.

``MODELDEPLOY_SOAK_SECONDS`` sets the length: 60 s by default (CI), 600 s with
``make soak``. The server's RSS, open fds and threads are sampled every second; the
last quarter is compared with the quarter after warm-up (the first quarter).
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

from tests.reliability.clients import (
    Traffic,
    fds,
    merged,
    record,
    rss,
    threads,
    traffic,
)
from tests.reliability.test_faults import SERVE, started

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

SECONDS = float(os.environ.get("MODELDEPLOY_SOAK_SECONDS", "60"))


def test_soak_grows_no_memory_fds_or_threads() -> None:
    process = started([*SERVE, "modeldeploy.demo:service"], "soak on uvicorn")
    samples: list[tuple[float, int, int, int]] = []
    try:
        # good requests, bad requests (400) and scrapes, as production sees them
        bad = Traffic(process.port, path="/predict", body=b"[1, 2")
        scrapes = Traffic(process.port, path="/metrics", body=None)
        for extra in (bad, scrapes):
            extra.start()
        with traffic(process.port, clients=2) as ordinary:
            started_at = time.monotonic()
            tick = threading.Event()
            while (elapsed := time.monotonic() - started_at) < SECONDS:
                pid = process.pid
                samples.append((elapsed, rss(pid), fds(pid), threads(pid)))
                tick.wait(1.0)  # sampling interval
        for extra in (bad, scrapes):
            extra.stop.set()
            extra.join(timeout=15)
        assert process.process.poll() is None, "the server died"
    finally:
        process.kill()
    figures = merged(ordinary)
    assert figures["errors"] == 0 and set(figures["statuses"]) == {"200"}, figures
    assert set(bad.statuses) == {400}, bad.statuses
    quarter = len(samples) // 4
    warm, last = samples[quarter : 2 * quarter], samples[-quarter:]

    def median(window: list[tuple[float, int, int, int]], index: int) -> float:
        return statistics.median(sample[index] for sample in window)

    rss_growth = median(last, 1) / median(warm, 1) - 1
    fd_growth = median(last, 2) - median(warm, 2)
    thread_growth = median(last, 3) - median(warm, 3)
    record(
        "soak",
        {
            "seconds": SECONDS,
            "requests": figures["requests"] + len(bad.latencies) + len(scrapes.latencies),
            "p99_ms": figures["p99_ms"],
            "rss_warm_mib": round(median(warm, 1) / (1 << 20), 1),
            "rss_last_mib": round(median(last, 1) / (1 << 20), 1),
            "rss_growth_pct": round(rss_growth * 100, 2),
            "fd_growth": fd_growth,
            "thread_growth": thread_growth,
        },
    )
    assert rss_growth < 0.05, samples
    # the clients hold up to 4 connections at a sample: a little jitter, no trend
    assert fd_growth <= 2, samples
    assert thread_growth <= 1, samples
