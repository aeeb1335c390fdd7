"""``modeldeploy serve`` as a real process: started on a free port, stopped by PID."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 20.0  # seconds a server may take to answer /v2/health/ready
STOP_WITHIN = 20.0  # seconds a graceful stop may take


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:*port*; header names come back lower-case."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        got = {k.lower(): v for k, v in response.getheaders()}
        return response.status, got, response.read()
    finally:
        connection.close()


def is_ready(port: int) -> bool:
    try:
        return request(port, "GET", "/v2/health/ready")[0] == 200
    except OSError:
        return False


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Process:
    """A command started in its own process group, its output in a temporary file."""

    def __init__(self, argv: Sequence[str], *, port: int, name: str, cwd: Path = ROOT) -> None:
        self.name = name
        self.port = port
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  # closed in kill()
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            list(argv), cwd=cwd, stdout=self._out, stderr=self._log, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        self._out.seek(0)
        return self._out.read().decode(errors="replace")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while not is_ready(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not become ready on port {self.port}:\n{self.log()}")
            time.sleep(0.05)  # polling interval of a bounded readiness loop

    def terminate(self) -> int:
        """SIGTERM to the process alone; return its exit status."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=STOP_WITHIN)

    def signal_group(self, signum: int) -> None:
        """Send *signum* to every process of the group, as a terminal's Ctrl-C does."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """Make sure nothing of the group survives the test; close the logs."""
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()
        self._out.close()


def serve(
    *args: str, port: int | None = None, name: str = "modeldeploy serve", cwd: Path = ROOT
) -> Process:
    """Start ``python -m modeldeploy serve ARGS --port PORT`` in *cwd*; return it once ready."""
    port = free_port() if port is None else port
    argv = [sys.executable, "-m", "modeldeploy", "serve", *args, "--port", str(port)]
    process = Process(argv, port=port, name=name, cwd=cwd)
    try:
        process.wait_ready()
    except BaseException:
        process.kill()
        raise
    return process


@contextlib.contextmanager
def uvicorn_thread(app: Any, **options: Any) -> Iterator[tuple[int, Any]]:
    """A real uvicorn serving *app* on a free port, in a thread: (port, its Server)."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):  # bounded: up to about 10 s for the server to listen
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started
        yield port, server
    finally:
        server.should_exit = True
        thread.join(15)
