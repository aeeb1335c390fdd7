"""Slow and stalled clients: each is cut off within its timeout, the others are answered.

Against uvicorn and gunicorn (``modeldeploy serve``) and the Flask adapter on gunicorn.
Ordinary clients send requests at a fixed rate, their latencies counted from when each
request was due (a stall shows in every request it delays), through alternating stretches
without and with an attack: more stalled bodies than a gunicorn worker has threads and
clients that send their headers a byte at a time, each one the server closes coming back
at once, and idle connections. The stretches without an attack measure, in the same run,
what the machine itself allows: the 50 ms target is judged only where they meet it.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.servers import Process
from tests.reliability.clients import (
    Attack,
    Paced,
    connect,
    merged,
    percentile,
    record,
    traffic,
    wait_closed,
)
from tests.reliability.conftest import BODY_TIMEOUT, HEADER_TIMEOUT, THREADS

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

FULL = os.environ.get("MODELDEPLOY_RELIABILITY_FULL") == "1"
STALLED, DRIPPING, IDLE = THREADS + 2, 3, 50
CLIENTS, RATE = 2, 60.0  # ordinary clients, requests a second each
CYCLES = 8 if FULL else 3  # stretches without, then with the attack
QUIET, ATTACKED = 1.5, 2.5  # seconds of each: 900 attacked requests in CI, 2,400 in full
P99_TARGET_MS = 50.0  # issue #14: other clients keep p99 under 50 ms
SLACK = 0.5  # seconds past a deadline for the closing to reach the client on a busy machine


def split(
    threads: list[Paced], spans: list[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """The latencies of requests due within *spans*, and of the others."""
    inside, outside = [], []
    for thread in threads:
        for due, took in zip(thread.due, thread.latencies, strict=True):
            hit = any(start <= due < end for start, end in spans)
            (inside if hit else outside).append(took)
    return inside, outside


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2)


def test_slow_and_stalled_clients_are_cut_off_and_others_answered(server: Process) -> None:
    started = time.monotonic()
    closed: list[tuple[str, float, bytes]] = []
    errors: list[str] = []
    attacked: list[tuple[float, float]] = []
    idle_results = []
    with traffic(server.port, clients=CLIENTS, rate=RATE) as ordinary:
        for cycle in range(CYCLES):
            time.sleep(QUIET)  # a fixed stretch of traffic alone, not a wait for a race
            begin = time.perf_counter()
            attack = Attack(server.port, stalled=STALLED, dripping=DRIPPING, interval=0.2)
            attack.start()
            if cycle == 0:
                opened = time.monotonic()
                idle = [connect(server.port) for _ in range(IDLE)]
                idle_results = [wait_closed(s, HEADER_TIMEOUT + SLACK, opened) for s in idle]
                for sock in idle:
                    sock.close()
            time.sleep(max(0.0, begin + ATTACKED - time.perf_counter()))
            attack.stop.set()
            attack.join(timeout=10)
            attacked.append((begin, time.perf_counter()))
            closed += attack.closed
            errors += attack.errors
    figures = merged(ordinary)
    under_attack, alone = split(ordinary, attacked)  # type: ignore[arg-type]

    stalled = [(took, got) for kind, took, got in closed if kind == "stalled"]
    dripping = [took for kind, took, _ in closed if kind == "dripping"]
    assert not errors, errors
    # every stalled body was cut at its deadline (its headers came at once), with a 408
    assert len(stalled) >= CYCLES * STALLED, stalled
    assert all(got.startswith(b"HTTP/1.1 408 ") for _, got in stalled), stalled
    assert max(took for took, _ in stalled) <= BODY_TIMEOUT + SLACK, stalled
    assert len(dripping) >= CYCLES * DRIPPING, dripping
    assert max(dripping) <= HEADER_TIMEOUT + SLACK, dripping
    assert all(took is not None for took, _ in idle_results), "idle connections still open"
    # every ordinary request was answered, and answered well, none waiting on an attacker
    assert figures["errors"] == 0, figures
    assert set(figures["statuses"]) == {"200"}, figures
    assert len(under_attack) >= 0.9 * CLIENTS * RATE * ATTACKED * CYCLES, figures
    assert max(under_attack) < BODY_TIMEOUT, ms(under_attack, 1.0)
    result = {
        "server": server.name,
        "stalled_bodies": STALLED,
        "header_drippers": DRIPPING,
        "idle_connections": IDLE,
        "header_timeout_s": HEADER_TIMEOUT,
        "body_timeout_s": BODY_TIMEOUT,
        "stalled_cut": len(stalled),
        "drippers_cut": len(dripping),
        "stalled_closed_max_s": round(max(took for took, _ in stalled), 2),
        "idle_closed_max_s": round(max(t for t, _ in idle_results if t), 2),
        "drippers_closed_max_s": round(max(dripping), 2),
        "rate_per_s": CLIENTS * RATE,
        "ordinary": {
            **figures,
            "requests": len(under_attack),
            "p50_ms": ms(under_attack, 0.5),
            "p99_ms": ms(under_attack, 0.99),
            "max_ms": ms(under_attack, 1.0),
        },
        "alone": {"requests": len(alone), "p50_ms": ms(alone, 0.5), "p99_ms": ms(alone, 0.99)},
        "load_average": round(os.getloadavg()[0], 2),
        "duration_s": round(time.monotonic() - started, 1),
    }
    record(f"slow-clients-{server.name}", result)
    alone_p99 = result["alone"]["p99_ms"]
    if alone_p99 >= P99_TARGET_MS:
        pytest.skip(
            f"this machine is too busy to judge the {P99_TARGET_MS:.0f} ms target: p99 "
            f"{alone_p99} ms without any attack (load {result['load_average']})"
        )
    assert result["ordinary"]["p99_ms"] < P99_TARGET_MS, result
