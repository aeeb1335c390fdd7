"""
Serving over HTTP (issue #10): `modeldeploy serve` as a user runs it, against a raw ASGI app.

wrk (from Debian) on loopback drives real servers started here on free 127.0.0.1
ports, each in its own process group, stopped by it. All servers run 2 processes
on the same 2 cores as wrk, c=64. Contestants (``benchmarks/apps/``):

* the limit: a hand-written raw ASGI app under uvicorn with uvloop and httptools,
  ``--workers 2``, no framework (read the body, orjson, predict, orjson, send);
* the same app on the uvicorn protocol ``modeldeploy serve`` runs
  (``modeldeploy.servers.uvicorn``: read deadlines, and one write per answer), to
  show what of the CLI's figure comes from the server and what from the app;
* ``modeldeploy serve modeldeploy_app:service --workers 2``: the CLI as a user runs
  it (uvicorn, uvloop and httptools from the ``asgi`` extra; a ``workers=0`` service
  computes on the event loop), with JSON on ``/predict`` and V2 JSON;
* ``modeldeploy serve modeldeploy_app:service --server gunicorn --workers 2`` (WSGI,
  the CLI's gthread workers) against a naive Flask app on gunicorn with the same
  processes, worker class and threads.

Two models (``benchmarks/apps/models.py``): a tiny MLP 64 -> 256 -> 10 (``workers=0``)
and a heavy 512 -> 2048 -> 512 (dynamic batching, ``workers=1, max_batch_size=64``).
Every request is one instance; each server's answer is checked against the model
before it is measured. The contestants of a model take turns, ROUNDS times, and each
cell is the run of median req/s. The heavy model is reported against two limits of
the same run: the raw unbatched app, and the model's own batch-64 loop plus the
transport's cost per request (the raw app answering the same body without computing
anything, on modeldeploy's protocol: an echo of the input),
``1 / (1 / echo req/s + 1 / bare batch-64 samples/s on the 2 cores)``.

Targets: tiny, CLI >= 0.8x the raw app's req/s and p99 <= 1.2x; V2 JSON >= 0.7x; WSGI
>= the Flask app; heavy with batching >= 0.6x the second limit.

``BENCH_QUICK=1`` runs one short round (a smoke run, nothing written).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# the bare model's batch loop, measured here, runs on one BLAS thread like each server
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import orjson
from _harness import QUICK, machine, table, write_section

import modeldeploy as md

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
MODELS = ("tiny", "heavy")
PROCESSES = 2
CONNECTIONS = 64
SECONDS = 1 if QUICK else 3  # one wrk run
WARMUP_SECONDS = 1
ROUNDS = 1 if QUICK else 5  # interleaved runs per cell
BATCH = 64
THREADS = 4  # gunicorn threads per process: the CLI's default, given to Flask too
READY_WITHIN = 60.0  # seconds a server may take to answer its first request
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# every server alike: one BLAS thread per process, so 2 processes on 2 cores do not
# run 4 BLAS threads (a 2-thread GEMM waits for its slower half on a busy machine)
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SPEC = "modeldeploy_app:service"


# modeldeploy's uvicorn protocol: httptools with read deadlines and one write per answer
OUR_PROTOCOL = "modeldeploy.servers.uvicorn:HttpToolsProtocol"


def _uvicorn(target: str, port: int, http: str = "httptools") -> list[str]:
    return ["-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(PROCESSES), "--log-level", "warning", "--no-access-log",
            "--loop", "uvloop", "--http", http]  # fmt: skip


def _gunicorn(target: str, port: int) -> list[str]:
    return ["-m", "gunicorn", target, "--bind", f"127.0.0.1:{port}",
            "--workers", str(PROCESSES), "--worker-class", "gthread",
            "--threads", str(THREADS), "--log-level", "warning"]  # fmt: skip


def _serve(port: int, *extra: str) -> list[str]:
    return ["-m", "modeldeploy", "serve", SPEC, "--port", str(port),
            "--workers", str(PROCESSES), "--log-level", "warning", *extra]  # fmt: skip


@dataclass(frozen=True)
class Contestant:
    key: str
    label: str
    argv: object = field(repr=False)  # port -> argv after the interpreter
    env: tuple[tuple[str, str], ...] = ()
    payload: str = "JSON"  # which request it is sent


RAW = Contestant("raw", "raw ASGI app, uvicorn (the limit)", lambda p: _uvicorn("raw_asgi:app", p))
RAW_OURS = Contestant(
    "raw-ours",
    "raw ASGI app, uvicorn with modeldeploy's protocol",
    lambda p: _uvicorn("raw_asgi:app", p, OUR_PROTOCOL),
)
# the transport as the CLI runs it (modeldeploy's protocol): the stricter limit
ECHO = Contestant(
    "echo",
    "raw ASGI app, no model (the transport), modeldeploy's protocol",
    lambda p: _uvicorn("raw_asgi:app", p, OUR_PROTOCOL),
    (("BENCH_ECHO", "1"),),
)
CLI = Contestant("cli", "**`modeldeploy serve --workers 2`**", lambda p: _serve(p))
CLI_V2 = Contestant("cli-v2", "**`modeldeploy serve --workers 2`, V2 JSON**", lambda p: _serve(p),
                    payload="V2 JSON")  # fmt: skip
CLI_WSGI = Contestant(
    "cli-wsgi",
    "**`modeldeploy serve --server gunicorn --workers 2`**",
    lambda p: _serve(p, "--server", "gunicorn", "--threads", str(THREADS)),
)
FLASK = Contestant(
    "flask", "naive Flask, gunicorn gthread", lambda p: _gunicorn("naive_flask:app", p)
)
CONTESTANTS = {
    "tiny": (RAW, RAW_OURS, CLI, CLI_V2, CLI_WSGI, FLASK),
    "heavy": (RAW, ECHO, CLI),
}


@dataclass(frozen=True)
class Payload:
    """One request every wrk connection repeats, and how to read its answer."""

    name: str
    path: str
    headers: dict[str, str]
    body: bytes
    decode: object = field(repr=False)  # (headers, body) -> np.ndarray


@dataclass
class Cell:
    rate: float  # requests per second
    requests: int
    p50: float  # seconds
    p99: float
    cpu_us: float  # server CPU per request
    errors: int  # socket errors wrk counted


# -- requests ----------------------------------------------------------------------


def payloads(x: np.ndarray) -> dict[str, Payload]:
    """The JSON request every contestant gets, and the other formats modeldeploy speaks."""
    import tritonclient.http as triton

    msgpack = md.MsgPack()

    def from_json(headers: dict[str, str], body: bytes) -> np.ndarray:
        return np.asarray(orjson.loads(body), dtype=np.float32)

    def from_msgpack(headers: dict[str, str], body: bytes) -> np.ndarray:
        return np.asarray(msgpack.loads(body))

    def from_v2(headers: dict[str, str], body: bytes) -> np.ndarray:
        length = headers.get("inference-header-content-length")
        result = triton.InferenceServerClient.parse_response_body(
            body, header_length=None if length is None else int(length)
        )
        return result.as_numpy("y").astype(np.float32)

    json_body = orjson.dumps(x, option=orjson.OPT_SERIALIZE_NUMPY)
    v2_json = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [x.size], "data": x}]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    # the binary tensor extension both ways, built by the official client
    tensor = triton.InferInput("x", [x.size], "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    v2_binary, header_length = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=[triton.InferRequestedOutput("y", binary_data=True)]
    )
    v2_path = "/v2/models/mlp/infer"
    return {
        "JSON": Payload(
            "JSON", "/predict", {"Content-Type": "application/json"}, json_body, from_json
        ),
        "msgpack": Payload(
            "msgpack",
            "/predict",
            {"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
            msgpack.dumps(x),
            from_msgpack,
        ),
        "V2 JSON": Payload(
            "V2 JSON", v2_path, {"Content-Type": "application/json"}, v2_json, from_v2
        ),
        "V2 binary": Payload(
            "V2 binary",
            v2_path,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(header_length),
            },
            v2_binary,
            from_v2,
        ),
    }


def post(port: int, payload: Payload) -> tuple[int, dict[str, str], bytes]:
    # imported here: by now _harness has put the standard library's http first on sys.path
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", payload.path, body=payload.body, headers=payload.headers)
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def check_answer(port: int, payload: Payload, want: np.ndarray, label: str) -> int:
    """Send *payload* once; fail unless the answer is the model's; return its size."""
    status, headers, body = post(port, payload)
    if status != 200:
        raise RuntimeError(f"{label}, {payload.name}: HTTP {status}: {body[:200]!r}")
    got = payload.decode(headers, body)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=label)
    return len(body)


# -- servers -----------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One contestant's server: its own process group on a free loopback port."""

    def __init__(self, contestant: Contestant, model: str) -> None:
        self.contestant = contestant
        self.port = free_port()
        env = {**os.environ, **SERVER_ENV, **dict(contestant.env), "BENCH_MODEL": model}
        env["PYTHONPATH"] = str(APPS)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, *contestant.argv(self.port)],
            cwd=APPS,
            env=env,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,  # a process group of its own, stopped as one
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def wait_ready(self, payload: Payload) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while True:
            try:
                status, _, _ = post(self.port, payload)
            except OSError:
                status = 0
            if status == 200:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.contestant.label} did not answer on port {self.port} "
                    f"(last status {status}):\n{self.output()}"
                )
            time.sleep(0.1)  # polling interval of a bounded readiness loop

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.log.close()


def process_tree(root: int) -> list[int]:
    """*root* and every process below it, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ")"
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, ()))
    return tree


def cpu_ticks(root: int) -> int:
    """utime + stime, in clock ticks, of every thread of every process in the tree."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


def pss_mib(root: int) -> float:
    """Proportional set size of the tree: a page shared by n processes counts 1/n each."""
    kib = 0
    for pid in process_tree(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
        kib += int(found.group(1)) if found else 0
    return kib / 1024


# -- wrk ---------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def lua_script(payload: Payload, directory: Path, *, checked: bool = False) -> Path:
    """
    A wrk script sending *payload*; the body is read from a file, so it may be binary.

    *checked* prints the status and body of every answer but a 200: for warm-ups
    only, since a Lua call per response slows wrk down.
    """
    name = payload.name.replace(" ", "-")
    body = directory / f"{name}.body"
    body.write_bytes(payload.body)
    lines = [
        f'local file = assert(io.open("{body}", "rb"))',
        'wrk.method = "POST"',
        'wrk.body = file:read("*a")',
        "file:close()",
        *(f'wrk.headers["{k}"] = "{v}"' for k, v in payload.headers.items()),
    ]
    if checked:
        lines += [
            "response = function(status, headers, body)",
            '  if status ~= 200 then io.write("ANSWER ", status, " ", body, "\\n") end',
            "end",
        ]
    script = directory / f"{name}{'-checked' if checked else ''}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def parse_wrk(output: str, label: str) -> tuple[float, int, float, float, int]:
    """(req/s, requests, p50 s, p99 s, socket errors) from ``wrk --latency`` output."""
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{label}: {non_2xx.group(1)} error responses:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    latency = {
        q: float(v) * _UNITS[unit]
        for q, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    found = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = sum(map(int, found.groups())) if found else 0
    return rate, requests, latency["50"], latency["99"], errors


def wrk(server: Server, script: Path, path: str, connections: int, seconds: float) -> Cell:
    argv = [
        "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{server.port}{path}",
    ]  # fmt: skip
    before = cpu_ticks(server.pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    after = cpu_ticks(server.pid)
    failed = [line for line in done.stdout.splitlines() if line.startswith("ANSWER ")]
    if failed:
        raise RuntimeError(f"{server.contestant.label}: {len(failed)} failed, e.g. {failed[0]}")
    rate, requests, p50, p99, errors = parse_wrk(done.stdout, server.contestant.label)
    if requests == 0:
        raise RuntimeError(f"wrk got no answer from {server.contestant.label}:\n{done.stdout}")
    cpu_us = (after - before) / CLOCK_TICKS * 1e6 / requests
    return Cell(rate, requests, p50, p99, cpu_us, errors)


def median_cell(cells: list[Cell]) -> Cell:
    """The run of median req/s, whole: its latencies and CPU belong with its rate."""
    ordered = sorted(cells, key=lambda cell: cell.rate)
    return ordered[(len(ordered) - 1) // 2]


# -- the run -----------------------------------------------------------------------


@contextlib.contextmanager
def servers(model: str, requests: dict[str, Payload], want: np.ndarray) -> Iterator[dict]:
    """Every contestant's server for *model*, started together, checked, warmed up."""
    started = {}
    try:
        for contestant in CONTESTANTS[model]:
            # the CLI's V2 contestant is the CLI's server, sent another request
            if contestant is not CLI_V2:
                started[contestant.key] = Server(contestant, model)
        started[CLI_V2.key] = started.get(CLI.key)
        for contestant in CONTESTANTS[model]:
            server = started[contestant.key]
            payload = requests[contestant.payload]
            server.wait_ready(payload)
            if contestant is ECHO:
                status, _, _ = post(server.port, payload)
                assert status == 200
            else:
                check_answer(server.port, payload, want, contestant.label)
        yield started
    finally:
        for key, server in started.items():
            if server is not None and key != CLI_V2.key:
                server.stop()


def bare_batches(mlp, x: np.ndarray) -> float:
    """Samples per second of the bare model on ready-made batches of 64, one thread."""
    batch = np.stack([x] * BATCH)
    mlp(batch)
    best = 0.0
    for _ in range(5):
        calls = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < 0.2:
            mlp(batch)
            calls += 1
        best = max(best, calls * BATCH / elapsed)
    return best


def measure_model(model: str, directory: Path) -> tuple[dict[str, Cell], dict, float]:
    """The cells of every contestant of *model*, their memory, and the bare batch rate."""
    sys.path.insert(0, str(APPS))
    from models import MLP

    mlp = MLP(model)
    x = mlp.instance()
    want = mlp(x)
    requests = payloads(x)
    scripts = {
        name: (lua_script(p, directory), lua_script(p, directory, checked=True))
        for name, p in requests.items()
    }
    runs: dict[str, list[Cell]] = {c.key: [] for c in CONTESTANTS[model]}
    bare: list[float] = []
    memory = {}
    with servers(model, requests, want) as running:
        order = list(CONTESTANTS[model])
        for contestant in order:
            payload = requests[contestant.payload]
            checked = scripts[payload.name][1]
            wrk(running[contestant.key], checked, payload.path, CONNECTIONS, WARMUP_SECONDS)
        for round_ in range(ROUNDS):
            if model == "heavy":
                bare.append(bare_batches(mlp, x))
            turn = order[round_ % len(order) :] + order[: round_ % len(order)]
            for contestant in turn:
                payload = requests[contestant.payload]
                script = scripts[payload.name][0]
                cell = wrk(running[contestant.key], script, payload.path, CONNECTIONS, SECONDS)
                runs[contestant.key].append(cell)
            print(
                f"  {model}, round {round_ + 1}: "
                + ", ".join(f"{k} {v[-1].rate:,.0f}" for k, v in runs.items()),
                flush=True,
            )
        for key, server in running.items():
            if server is not None:
                memory[key] = pss_mib(server.pid)
    cells = {key: median_cell(done) for key, done in runs.items()}
    rate = sorted(bare)[(len(bare) - 1) // 2] if bare else 0.0
    return cells, memory, rate


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f}"


def versions() -> str:
    from importlib.metadata import version

    names = ["uvicorn", "gunicorn", "flask", "orjson", "uvloop", "httptools"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:
            found.append(f"{name} not installed")
    return ", ".join(found)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) when the run ended"


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for model in MODELS:
            results[model] = measure_model(model, Path(scratch))
    print(f"measured in {time.perf_counter() - started:.0f}s; {load()}")
    report(results)


SIZES = {"tiny": "64 -> 256 -> 10", "heavy": "512 -> 2048 -> 512"}
CELL_HEADER = ["server", "req/s", "vs limit", "p50 (ms)", "p99 (ms)", "p99 vs limit",
               "CPU (us/req)", "memory (MiB)"]  # fmt: skip


def method() -> str:
    return (
        f"{machine()}; {versions()}; {load()}. wrk {SECONDS} s per run, `-t2 -c{CONNECTIONS}`, "
        "on loopback, on the same machine as the servers: wrk and the servers share the 2 "
        f"cores. Every server runs {PROCESSES} processes with `OPENBLAS_NUM_THREADS=1` (one "
        "BLAS thread per process, every contestant alike). The raw app runs under `uvicorn "
        "--loop uvloop --http httptools`; the CLI picks them itself (the `asgi` extra). "
        f"Gunicorn contestants run gthread workers with {THREADS} threads each (the CLI's "
        "default). Each server's answer is checked against the model first; the "
        f"contestants of a model take turns after a warm-up, {ROUNDS} times, and a cell is "
        "the run of median req/s (its latencies and CPU with it). CPU is the server process "
        "tree's utime + stime per request; memory the tree's PSS after the run.\n\n"
        "modeldeploy's contestant is `modeldeploy serve modeldeploy_app:service` "
        "(`benchmarks/apps/modeldeploy_app.py`): a Service with a signature and a "
        "PrometheusMonitor. Tiny model: `workers=0`, so the CLI computes on the event loop, "
        "as the raw app does. Heavy model: dynamic batching, `workers=1, max_batch_size=64, "
        "max_batch_delay=0`. The raw app decodes and encodes with orjson and computes on "
        "the event loop; it cannot batch.\n"
    )


BLANK = [""] * 6


def row(label: str, cell: Cell, limit: Cell | None, memory: float | None) -> list[str]:
    return [
        label,
        f"{cell.rate:,.0f}",
        f"**{cell.rate / limit.rate:.2f}x**" if limit is not None else "1.00x",
        ms(cell.p50),
        ms(cell.p99),
        f"{cell.p99 / limit.p99:.2f}x" if limit is not None else "1.00x",
        f"{cell.cpu_us:,.0f}",
        f"{memory:,.0f}" if memory is not None else "",
    ]


def report(results: dict) -> None:
    cells, memory, _ = results["tiny"]
    raw, cli, v2 = cells[RAW.key], cells[CLI.key], cells[CLI_V2.key]
    wsgi, flask = cells[CLI_WSGI.key], cells[FLASK.key]
    ours = cells[RAW_OURS.key]
    tiny_rows = [
        row(RAW.label, raw, None, memory[RAW.key]),
        row(RAW_OURS.label, ours, raw, memory[RAW_OURS.key]),
        row(CLI.label, cli, raw, memory[CLI.key]),
        row(CLI.label + ", vs the raw app on its protocol", cli, ours, None),
        row(CLI_V2.label, v2, raw, None),
        row(FLASK.label, flask, None, memory[FLASK.key]),
        row(CLI_WSGI.label + ", vs Flask", wsgi, flask, memory[CLI_WSGI.key]),
    ]
    hcells, hmemory, bare = results["heavy"]
    hraw, echo, hcli = hcells[RAW.key], hcells[ECHO.key], hcells[CLI.key]
    # the model's own loop on both cores, plus the transport's cost of each request
    bound = 1 / (1 / echo.rate + 1 / (PROCESSES * bare))
    heavy_rows = [
        row(RAW.label + " (limit 1)", hraw, None, hmemory[RAW.key]),
        row(ECHO.label, echo, None, hmemory[ECHO.key]),
        [
            f"bare model, batches of {BATCH}, one thread x {PROCESSES}",
            f"{PROCESSES * bare:,.0f}",
            *BLANK,
        ],
        ["limit 2: 1 / (1 / transport + 1 / bare batches)", f"{bound:,.0f}", *BLANK],
        row(CLI.label + ", batching, vs limit 1", hcli, hraw, hmemory[CLI.key]),
        [
            CLI.label + ", batching, vs limit 2",
            f"{hcli.rate:,.0f}",
            f"**{hcli.rate / bound:.2f}x**",
            *BLANK[1:],
        ],
    ]

    def verdict(ratio: float, target: float) -> str:
        return f"{ratio:.2f}x (target >= {target:g}x {'met' if ratio >= target else 'missed'})"

    checks = [
        (
            f"tiny, CLI: {verdict(cli.rate / raw.rate, 0.8)}, p99 {cli.p99 / raw.p99:.2f}x "
            f"(target <= 1.2x {'met' if cli.p99 <= 1.2 * raw.p99 else 'missed'})"
        ),
        f"the CLI against the raw app on the CLI's own protocol: {cli.rate / ours.rate:.2f}x",
        f"V2 JSON: {verdict(v2.rate / raw.rate, 0.7)}",
        f"WSGI under gunicorn vs Flask: {verdict(wsgi.rate / flask.rate, 1.0)}",
        (
            f"heavy with batching: {verdict(hcli.rate / bound, 0.6)} of limit 2, "
            f"{hcli.rate / hraw.rate:.2f}x the raw unbatched app"
        ),
    ]
    sections = [
        "## HTTP serving (`benchmarks/http.py`)\n",
        method(),
        f"### Tiny MLP {SIZES['tiny']}, c={CONNECTIONS}, {PROCESSES} processes\n",
        (
            "*vs limit* is against the raw ASGI app's cell, but for the gunicorn row, which "
            "is against the Flask app on gunicorn.\n"
        ),
        table(CELL_HEADER, tiny_rows),
        "",
        f"### Heavy MLP {SIZES['heavy']}, c={CONNECTIONS}, {PROCESSES} processes\n",
        table(CELL_HEADER, heavy_rows),
        "\nMeasured: " + "; ".join(checks) + ".\n",
        COST,
    ]
    write_section("http", "\n".join(sections))


COST = """\
Before the direct lane (2026-12-04, b3c5afc, one run at 20:28 UTC, load average about 1-2):
the CLI 0.69x the raw app's req/s (p99 1.15x; 83 us of server CPU a request against the
raw app's 50), V2 JSON 0.61x, the CLI's gunicorn 1.40x the Flask app, heavy with batching
0.58x of limit 2. Before the work of 2026-12-04 (16c2201): 0.59x, 0.42x, 1.32x and 0.43x.

What changed since, all on the served path: `modeldeploy serve`'s uvicorn protocol answers
a model route from the HTTP parser's callbacks (the direct lane, `docs/cli.md`), on the
event loop for the tiny model and through `Service.handle_then` for the batched heavy one,
with no ASGI task, `receive`, `send` or message dicts (the tiny model's server CPU went
from 68 to 59 us a request, the heavy model from about 10,500 to 12,100 req/s); the idle
keep-alive timeout rides on the read deadline's timer instead of a `call_later` and
`cancel` every answer (2-3 us in process); uvicorn's scope dict is built only for requests
the ASGI app takes, and a connection remembers its last route (1-2 us); V2 JSON bodies go
to the bulk decoder at once (8.2 -> 7.1 us) and the common answer is built from cached
bytes (2.1 -> 1.3 us); `/predict` writes float32 outputs in float32's shortest digits, as
V2 does (a 512-float answer is 5.4 KB instead of 9.8 KB).

Each microsecond in process (`benchmarks/app.py`, below) costs about two in the server,
whose caches are colder between requests. What keeps the CLI from the raw app is the
pipeline's work: request ids, the version header, validation, the monitor, admission and
error mapping, about 3 us in process on `/predict`; V2 adds the protocol's own structure
and strict datatypes, about 10 us. For the heavy model, the batches average about 20
requests at c=64 over 2 processes (never more than 32 in a process), and small batches
cost this model more a row than a batch of 64 (OpenBLAS repacks the weights on every
call); limit 2 assumes batches of 64.
"""


if __name__ == "__main__":
    main()
