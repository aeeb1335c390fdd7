"""Hostile and ordinary clients, and the figures the report records.

Every client here has a deadline; figures go to ``results/`` beside this file, one
JSON file per case, which ``tests/reliability/report.py`` turns into
``docs/reliability.md``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

RESULTS = Path(
    os.environ.get("MODELDEPLOY_RELIABILITY_RESULTS", Path(__file__).parent / "results")
)

INFER_PATH = "/v2/models/demo/infer"
INFER_BODY = (
    b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], '
    b'"data": [5.9, 3.0, 4.2, 1.5]}]}'
)
STALLED_HEAD = (
    f"POST {INFER_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
).encode()


def record(case: str, figures: dict[str, Any]) -> None:
    """Write the figures of *case* for the report."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{case}.json").write_text(json.dumps(figures, indent=1, sort_keys=True))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def stalled_body(port: int) -> socket.socket:
    """Declare a 100,000-byte body, send 40 bytes of it, and stop."""
    sock = connect(port)
    sock.sendall(STALLED_HEAD + b"[" * 40)
    return sock


class Dripper(threading.Thread):
    """Send a request's headers one byte every *interval* seconds, until the server closes."""

    def __init__(self, port: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.sock = connect(port)
        self.interval = interval
        self.stop = threading.Event()

    def run(self) -> None:
        head = STALLED_HEAD * 100
        for byte in head:
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                return
            if self.stop.wait(self.interval):
                return


def wait_closed(
    sock: socket.socket, within: float, opened: float | None = None
) -> tuple[float | None, bytes]:
    """Read until the server closes *sock*; return (seconds since *opened* or None, bytes).

    None when *sock* is still open *within* seconds after *opened* (default: now).
    """
    started = time.monotonic() if opened is None else opened
    sock.settimeout(0.2)
    got = b""
    while time.monotonic() - started < within:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset: closed
            return time.monotonic() - started, got
        if not chunk:
            return time.monotonic() - started, got
        got += chunk
    return None, got


class Traffic(threading.Thread):
    """Ordinary clients: one request at a time on a new connection, latencies recorded."""

    def __init__(self, port: int, *, path: str = INFER_PATH, body: bytes | None = INFER_BODY):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.body = body
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.by_status: dict[int, list[float]] = {}
        self.without_retry_after = 0

    def one(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            method = "POST" if self.body is not None else "GET"
            headers = {"Content-Type": "application/json"} if self.body is not None else {}
            connection.request(method, self.path, body=self.body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 503 and response.getheader("Retry-After") is None:
                self.without_retry_after += 1
            return response.status
        finally:
            connection.close()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status = self.one()
            except (OSError, http.client.HTTPException) as exc:
                # a reset, or an answer cut short (IncompleteRead) by a killed worker
                self.errors.append(repr(exc))
                continue
            took = time.perf_counter() - started
            self.latencies.append(took)
            self.by_status.setdefault(status, []).append(took)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def figures(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies),
            "errors": len(self.errors),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 2),
            "max_ms": round(max(self.latencies, default=float("nan")) * 1000, 2),
        }


class Paced(Traffic):
    """Ordinary clients at a fixed rate: each latency counts from when the request was due.

    A closed loop (the next request once the last is answered) sends fewer requests
    while the server stalls, and a stall of seconds shows in one sample only; here a
    request due while an earlier one waits is late by that wait, and counted so.
    """

    def __init__(self, port: int, *, rate: float, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.interval = 1.0 / rate
        self.due: list[float] = []  # when each request of self.latencies was due (perf_counter)

    def run(self) -> None:
        due = time.perf_counter()
        while not self.stop.is_set():
            wait = due - time.perf_counter()
            if wait > 0 and self.stop.wait(wait):
                return
            try:
                status = self.one()
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                due += self.interval
                continue
            took = time.perf_counter() - due
            self.due.append(due)
            self.latencies.append(took)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            due += self.interval


class Attack(threading.Thread):
    """Hostile clients that come back: each one the server closes is replaced at once.

    *stalled* connections send a request's headers and 40 bytes of its 100,000-byte
    body, then stop; *dripping* ones send headers a byte every *interval* seconds.
    Each close is recorded as (kind, seconds from connecting, bytes received).
    """

    def __init__(self, port: int, *, stalled: int, dripping: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.stop = threading.Event()
        self.closed: list[tuple[str, float, bytes]] = []
        self.errors: list[str] = []
        self._open: dict[socket.socket, list[Any]] = {}  # sock -> [kind, opened, got, sent]
        for _ in range(stalled):
            self._connect("stalled")
        for _ in range(dripping):
            self._connect("dripping")

    def _connect(self, kind: str) -> None:
        try:
            sock = connect(self.port)
            if kind == "stalled":
                sock.sendall(STALLED_HEAD + b"[" * 40)
        except OSError as exc:
            self.errors.append(repr(exc))
            return
        sock.setblocking(False)
        self._open[sock] = [kind, time.monotonic(), b"", 0]

    def _closed(self, sock: socket.socket) -> None:
        kind, opened, got, _ = self._open.pop(sock)
        self.closed.append((kind, time.monotonic() - opened, got))
        sock.close()
        if not self.stop.is_set():
            self._connect(kind)

    def run(self) -> None:
        import selectors

        head = STALLED_HEAD * 100
        next_drip = time.monotonic()
        with selectors.DefaultSelector() as selector:
            while not self.stop.is_set():
                for sock in list(self._open):
                    with suppress(KeyError):
                        selector.register(sock, selectors.EVENT_READ)
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj  # type: ignore[assignment]
                    try:
                        chunk = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        self._open[sock][2] += chunk
                        continue
                    selector.unregister(sock)
                    self._closed(sock)
                if time.monotonic() >= next_drip:
                    next_drip += self.interval
                    for sock, state in list(self._open.items()):
                        if state[0] == "dripping" and state[3] < len(head):
                            with suppress(OSError):
                                sock.send(head[state[3] : state[3] + 1])
                                state[3] += 1
        for sock in list(self._open):
            sock.close()
        self._open.clear()


@contextmanager
def traffic(
    port: int, clients: int = 2, rate: float | None = None, **kwargs: Any
) -> Iterator[list[Traffic]]:
    """*clients* ordinary clients, in a closed loop or each at *rate* requests a second."""
    threads = [
        Traffic(port, **kwargs) if rate is None else Paced(port, rate=rate, **kwargs)
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        for thread in threads:
            thread.stop.set()
        for thread in threads:
            thread.join(timeout=15)


def merged(threads: list[Traffic]) -> dict[str, Any]:
    total = Traffic(0)
    for thread in threads:
        total.latencies += thread.latencies
        total.errors += thread.errors
        for status, count in thread.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + count
    return total.figures()


# -- processes, from /proc ----------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The processes whose parent is *pid*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (kB fields in bytes)."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            return int(parts[1]) * (1024 if parts[-1] == "kB" else 1)
    raise KeyError(field)


def rss(pid: int) -> int:
    return status(pid, "VmRSS")


def threads(pid: int) -> int:
    return status(pid, "Threads")


def fds(pid: int) -> int:
    return len(list((Path("/proc") / str(pid) / "fd").iterdir()))


def post(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of *name* in a Prometheus exposition whose labels match."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample_name = head.split("{", 1)[0]
        if sample_name != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
