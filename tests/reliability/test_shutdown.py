"""Graceful shutdown under load: SIGTERM stops intake, readiness turns false, every
accepted request completes, and the server exits within its grace period.

Counted client-side: every request either gets an answer (200, or 503 while draining)
or is refused at connect (intake stopped). A request lost in flight (reset, or a closed
connection without an answer) fails the case.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

import pytest

from tests.integration.servers import is_ready
from tests.reliability.clients import record
from tests.reliability.test_faults import SERVE, started

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

GRACE_S = 30.0  # modeldeploy serve's grace period
CLIENTS = 8


class Client(threading.Thread):
    """Send requests one after another until the server refuses the connection."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.outcomes: dict[str, int] = {}
        self.lost: list[str] = []

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def run(self) -> None:
        deadline = time.monotonic() + GRACE_S + 10
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=GRACE_S)
            try:
                connection.connect()
            except ConnectionRefusedError:
                self.count("refused at connect")
                return
            try:
                connection.request("POST", "/models/steady/predict", body=b"1",
                                   headers={"Content-Type": "application/json"})  # fmt: skip
                response = connection.getresponse()
                response.read()
                self.count(str(response.status))
            except (OSError, http.client.HTTPException) as exc:  # reset, cut short: lost
                self.lost.append(repr(exc))
            finally:
                connection.close()


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_sigterm_under_load_loses_no_accepted_request(server: str) -> None:
    threads = ["--threads", str(CLIENTS * 2)] if server == "gunicorn" else []
    process = started(
        [*SERVE, "tests.reliability.apps:steady", "--server", server, *threads],
        f"steady on {server}",
    )
    try:
        clients = [Client(process.port) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # a fixed stretch of load before the signal
        os.kill(process.pid, signal.SIGTERM)
        signalled = time.monotonic()
        not_ready_after = None
        while process.process.poll() is None and time.monotonic() - signalled < GRACE_S:
            if not_ready_after is None and not is_ready(process.port):
                not_ready_after = time.monotonic() - signalled
            time.sleep(0.01)  # polling interval of the readiness probe
        code = process.process.wait(timeout=GRACE_S)
        exited_after = time.monotonic() - signalled
        for client in clients:
            client.join(timeout=GRACE_S)
        log = process.log()
    finally:
        process.kill()
    outcomes: dict[str, int] = {}
    for client in clients:
        for outcome, count in client.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    lost = [x for client in clients for x in client.lost]
    assert code == 0, log[-2000:]
    assert exited_after < GRACE_S
    assert not_ready_after is not None
    assert not lost, (lost, outcomes)
    assert set(outcomes) <= {"200", "503", "refused at connect"}, outcomes
    assert outcomes.get("200", 0) > 0
    record(
        f"shutdown-{server}",
        {
            "server": server,
            "clients": CLIENTS,
            "answered_200": outcomes.get("200", 0),
            "answered_503": outcomes.get("503", 0),
            "refused_at_connect": outcomes.get("refused at connect", 0),
            "lost": len(lost),
            "not_ready_after_s": round(not_ready_after, 3),
            "exited_after_s": round(exited_after, 2),
            "grace_s": GRACE_S,
        },
    )
