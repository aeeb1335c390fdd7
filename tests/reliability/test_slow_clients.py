"""Slow and stalled clients: each is cut off within its timeout, the others are answered.

Against uvicorn and gunicorn (``modeldeploy serve``) and the Flask adapter on gunicorn:
more stalled bodies than the server has threads, clients that send their headers a byte
at a time, and idle connections, while ordinary clients keep sending requests. The
ordinary clients' latencies are recorded for the report, not asserted.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.servers import Process
from tests.reliability.clients import (
    Dripper,
    connect,
    merged,
    record,
    stalled_body,
    traffic,
    wait_closed,
)
from tests.reliability.conftest import BODY_TIMEOUT, HEADER_TIMEOUT, THREADS

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

# gunicorn's main loop checks deadlines once a second; a loaded CI machine adds more
SLACK = 3.0
STALLED, DRIPPING, IDLE = THREADS + 2, 3, 50


def test_slow_and_stalled_clients_are_cut_off_and_others_answered(server: Process) -> None:
    started = time.monotonic()
    stalled = [stalled_body(server.port) for _ in range(STALLED)]
    drippers = [Dripper(server.port, interval=0.2) for _ in range(DRIPPING)]
    for dripper in drippers:
        dripper.start()
    idle = [connect(server.port) for _ in range(IDLE)]
    with traffic(server.port, clients=2) as ordinary:
        # each measured from when the hostile clients connected
        stalled_results = [
            wait_closed(s, HEADER_TIMEOUT + BODY_TIMEOUT + SLACK, started) for s in stalled
        ]
        idle_results = [wait_closed(s, HEADER_TIMEOUT + SLACK, started) for s in idle]
        drip_results = [wait_closed(d.sock, HEADER_TIMEOUT + SLACK, started) for d in drippers]
        # ordinary clients keep going a little after the hostile ones are gone
        time.sleep(0.5)  # a fixed stretch of traffic, not a wait for a race
    for dripper in drippers:
        dripper.stop.set()
    figures = merged(ordinary)
    for sock in [*stalled, *idle, *(d.sock for d in drippers)]:
        sock.close()

    not_closed = [i for i, (took, _) in enumerate(stalled_results) if took is None]
    assert not not_closed, f"stalled bodies still open: {not_closed}"
    assert all(got.startswith(b"HTTP/1.1 408 ") for _, got in stalled_results), stalled_results
    assert all(took is not None for took, _ in idle_results), "idle connections still open"
    assert all(took is not None for took, _ in drip_results), "header drippers still open"
    # every ordinary request was answered, and answered well
    assert figures["errors"] == 0, figures
    assert set(figures["statuses"]) == {"200"}, figures
    assert figures["requests"] > 0
    record(
        f"slow-clients-{server.name}",
        {
            "server": server.name,
            "stalled_bodies": STALLED,
            "header_drippers": DRIPPING,
            "idle_connections": IDLE,
            "header_timeout_s": HEADER_TIMEOUT,
            "body_timeout_s": BODY_TIMEOUT,
            "stalled_closed_max_s": round(max(t for t, _ in stalled_results if t), 2),
            "idle_closed_max_s": round(max(t for t, _ in idle_results if t), 2),
            "drippers_closed_max_s": round(max(t for t, _ in drip_results if t), 2),
            "ordinary": figures,
            "duration_s": round(time.monotonic() - started, 1),
        },
    )
