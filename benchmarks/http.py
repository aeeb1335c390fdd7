"""
Serving over HTTP (issue #6): modeldeploy against a hand-written ASGI app and naive frameworks.

wrk (from Debian) on loopback drives real servers started here on free 127.0.0.1
ports, each in its own process group, stopped by it. Contestants (``benchmarks/apps/``):

* the limit: a hand-written raw ASGI app under uvicorn, no framework (read the
  body, orjson, predict, orjson, send);
* modeldeploy under uvicorn (``modeldeploy.adapters.asgi``) and under gunicorn
  with gthread workers (``modeldeploy.adapters.wsgi``);
* a naive FastAPI app under uvicorn and a naive Flask app under gunicorn.

Two models (``benchmarks/apps/models.py``): a tiny MLP 64 -> 256 -> 10 and a heavier
512 -> 2048 -> 512, float32, fixed seed, the same weights in every server. Every
request is the same JSON body, one instance, ``POST /predict``; each server's answer
is checked against the model before it is measured.

For each model and 1 and 2 server processes, every contestant's server is started,
warmed up, and then the contestants take turns at each concurrency (1, 16, 64), so
neighbours on this shared machine weigh on all of them alike. A cell is one wrk run;
at c=64 with 2 processes (where the targets are) each cell is the median of several
interleaved runs. Reported: req/s, the ratio to the raw ASGI app in the same cell,
p50 and p99 latency (wrk ``--latency``), server CPU microseconds per request (utime +
stime of the server's process tree from /proc, over the requests wrk counted), and
the server tree's memory (PSS, so pages shared by forked workers count once).
Then modeldeploy under uvicorn with msgpack and V2 (JSON and binary tensor) requests.

Targets at c=64, 2 processes: tiny model, modeldeploy >= 0.8x the raw ASGI app's
req/s and p99 no worse; heavier model with dynamic batching, >= 2x the raw app.

``BENCH_QUICK=1`` runs fewer, shorter cells (a smoke run, nothing written).
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

import numpy as np
import orjson
from _harness import QUICK, machine, table, write_section

import modeldeploy as md

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
BIN = Path(sys.executable).parent
MODELS = ("tiny", "heavy")
PROCESSES = (2,) if QUICK else (1, 2)
CONCURRENCY = (1, 64) if QUICK else (1, 16, 64)
SECONDS = 1 if QUICK else 2  # one wrk run
WARMUP_SECONDS = 1
TARGET_ROUNDS = 1 if QUICK else 5  # interleaved runs per cell at c=64, 2 processes
FORMAT_ROUNDS = 3  # JSON / other format pairs per request format (none when QUICK)
GUNICORN_THREADS = 32  # per worker: enough to hold c=64 over 2 workers, so requests can batch
READY_WITHIN = 30.0  # seconds a server may take to answer its first request
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# every server alike: one BLAS thread per process, so 2 processes on 2 cores do not
# run 4 BLAS threads (a 2-thread GEMM waits for its slower half on a busy machine)
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


TINY_COST = """\
Where the tiny model's time goes: called in a loop in one process, the raw app answers in
7 us and ours in 16.5 us (`HTTPApp`, the ASGI adapter, `Service.handle` with JSON,
validation of the signature, the Prometheus monitor). Under a real server the gap is three
times wider, about 30 us a request (compare the server CPU columns): the kernel and
the server evict the CPU's caches between two requests, and with caches evicted before
each call (a 4 MiB write) the same loop measures 17.5 us for the raw app and 48 us for
ours. A cold cache charges for every distinct function and object a request touches, and
ours touches some 25 Python functions where the raw app runs one. The largest cold costs
are the signature validation (6.5 us cold: a float64 array from the list, then a checked
cast to float32 under `np.errstate`), the JSON decode with its size and depth checks
(4.4 us against 2.2 us for bare orjson) and the model itself (8 to 10 us cold, the same
for both). Cutting the hot path (`handle` from 7.9 to 2.4 us over bare msgpack, see the
service overhead below) moved the tiny model from 0.65x to 0.68x of the raw app; 0.8x
needs fewer layers per request, not cheaper ones.
"""


@dataclass(frozen=True)
class Contestant:
    key: str
    label: str
    server: str  # uvicorn or gunicorn
    target: str  # module:attribute in benchmarks/apps


RAW = Contestant("raw", "raw ASGI app, uvicorn (the limit)", "uvicorn", "raw_asgi:app")
OURS_ASGI = Contestant(
    "md-asgi", "**modeldeploy, uvicorn (ASGI)**", "uvicorn", "modeldeploy_app:asgi_app"
)
OURS_WSGI = Contestant(
    "md-wsgi", "modeldeploy, gunicorn gthread (WSGI)", "gunicorn", "modeldeploy_app:wsgi_app"
)
CONTESTANTS = (
    RAW,
    OURS_ASGI,
    OURS_WSGI,
    Contestant("fastapi", "naive FastAPI, uvicorn", "uvicorn", "naive_fastapi:app"),
    Contestant("flask", "naive Flask, gunicorn gthread", "gunicorn", "naive_flask:app"),
)


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

    def __init__(self, contestant: Contestant, model: str, processes: int) -> None:
        self.contestant = contestant
        self.port = free_port()
        if contestant.server == "uvicorn":
            # with --workers 1 uvicorn serves in its own process; N > 1 adds a supervisor
            argv = ["-m", "uvicorn", contestant.target, "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", str(processes),
                    "--log-level", "warning", "--no-access-log"]  # fmt: skip
        else:
            argv = ["-m", "gunicorn", contestant.target, "--bind", f"127.0.0.1:{self.port}",
                    "--workers", str(processes), "--worker-class", "gthread",
                    "--threads", str(GUNICORN_THREADS), "--log-level", "warning"]  # fmt: skip
        env = {**os.environ, **SERVER_ENV, "BENCH_MODEL": model, "PYTHONPATH": str(APPS)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, *argv],
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
            self.process.wait(timeout=15)
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
def servers(model: str, processes: int, payload: Payload, want: np.ndarray) -> Iterator[dict]:
    """Every contestant's server for *model*, started together, checked, warmed up."""
    started = {c.key: Server(c, model, processes) for c in CONTESTANTS}
    try:
        for server in started.values():
            server.wait_ready(payload)
            check_answer(server.port, payload, want, server.contestant.label)
        yield started
    finally:
        for server in started.values():
            server.stop()


def measure_model(model: str, directory: Path) -> tuple[dict, dict, dict]:
    """Cells, memory and request formats for one model."""
    sys.path.insert(0, str(APPS))
    from models import MLP

    mlp = MLP(model)
    x = mlp.instance()
    want = mlp(x)
    requests = payloads(x)
    json = requests["JSON"]
    script = lua_script(json, directory)
    checked = lua_script(json, directory, checked=True)
    cells: dict[tuple[str, int, int], Cell] = {}
    memory: dict[tuple[str, int], float] = {}
    formats: dict[str, tuple[Cell, Cell, int]] = {}
    for processes in PROCESSES:
        with servers(model, processes, json, want) as running:
            for server in running.values():
                wrk(server, checked, json.path, 64, WARMUP_SECONDS)
            for connections in CONCURRENCY:
                target = connections == 64 and processes == 2
                runs: dict[str, list[Cell]] = {key: [] for key in running}
                for round_ in range(TARGET_ROUNDS if target else 1):
                    order = list(running.values())
                    order = order[round_ % len(order) :] + order[: round_ % len(order)]
                    for server in order:
                        runs[server.contestant.key].append(
                            wrk(server, script, json.path, connections, SECONDS)
                        )
                for key, done in runs.items():
                    cells[key, processes, connections] = median_cell(done)
                print(
                    f"  {model}, {processes} proc, c={connections}: "
                    + ", ".join(f"{k} {cells[k, processes, connections].rate:,.0f}" for k in runs),
                    flush=True,
                )
            if processes == max(PROCESSES):
                ours = running[OURS_ASGI.key]
                for name in ("msgpack", "V2 JSON", "V2 binary"):
                    payload = requests[name]
                    size = check_answer(ours.port, payload, want, f"modeldeploy {name}")
                    other = lua_script(payload, directory, checked=QUICK)
                    if QUICK:  # one checked run, beside the JSON cell: a smoke test
                        cell = wrk(ours, other, payload.path, 64, SECONDS)
                        formats[name] = (cell, cells[OURS_ASGI.key, processes, 64], size)
                        continue
                    wrk(ours, lua_script(payload, directory, checked=True), payload.path, 64, 1)
                    # the JSON run beside it, so the ratio is of one moment
                    pairs = [
                        (
                            wrk(ours, script, json.path, 64, SECONDS),
                            wrk(ours, other, payload.path, 64, SECONDS),
                        )
                        for _ in range(FORMAT_ROUNDS)
                    ]
                    pairs.sort(key=lambda pair: pair[1].rate)
                    base, cell = pairs[(len(pairs) - 1) // 2]
                    formats[name] = (cell, base, size)
                formats["JSON"] = (
                    cells[OURS_ASGI.key, processes, 64],
                    cells[OURS_ASGI.key, processes, 64],
                    check_answer(ours.port, json, want, "modeldeploy JSON"),
                )
            for key, server in running.items():
                memory[key, processes] = pss_mib(server.pid)
    sizes = {name: len(p.body) for name, p in requests.items()}
    return cells, memory, {name: (*v, sizes[name]) for name, v in formats.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f}"


def versions() -> str:
    from importlib.metadata import version

    names = ["uvicorn", "gunicorn", "fastapi", "flask", "orjson", "uvloop", "httptools"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:
            found.append(f"{name} not installed")
    return ", ".join(found)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for model in MODELS:
            results[model] = measure_model(model, Path(scratch))
    print(f"measured in {time.perf_counter() - started:.0f}s")
    report(results)


SIZES = {"tiny": "64 -> 256 -> 10", "heavy": "512 -> 2048 -> 512"}
CELL_HEADER = ["server", "processes", "c", "req/s", "vs raw", "p50 (ms)", "p99 (ms)",
               "CPU (us/req)", "memory (MiB)"]  # fmt: skip
FORMAT_HEADER = ["request", "bytes in / out", "req/s", "vs JSON", "vs raw", "p50 (ms)",
                 "p99 (ms)", "CPU (us/req)"]  # fmt: skip
TARGET_HEADER = ["model", "server", "req/s", "raw ASGI req/s", "vs raw", "p99 ours / raw (ms)"]


def method() -> str:
    return (
        f"{machine()}; {versions()}. wrk {SECONDS} s per run (`-t2`, `-t1` at c=1) on "
        "loopback, on the same machine as the servers: client and servers share the 2 cores. "
        "**Every server runs with `OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`** (one BLAS "
        "thread per process, every contestant alike). uvicorn picks uvloop and httptools when "
        f"they are installed; gunicorn runs gthread workers with {GUNICORN_THREADS} threads "
        "each. Same JSON body for every contestant: one instance, float32 values written by "
        "orjson, `POST /predict`; each server's answer is checked against the model first. "
        "The contestants take turns at each concurrency after a warm-up; at c=64 with 2 "
        f"processes a cell is the median of {TARGET_ROUNDS} interleaved runs. *vs raw* is "
        "the ratio to the raw ASGI app's req/s in the same cell. CPU is the server process "
        "tree's utime + stime per request; memory the tree's PSS after the run.\n\n"
        "modeldeploy's app (`benchmarks/apps/modeldeploy_app.py`) is a Service with a "
        "signature and a PrometheusMonitor. Tiny model: `workers=0` and, under uvicorn, "
        "`asgi(..., inline=True)`: the model runs on the event loop, as in the raw app. "
        "Heavier model: dynamic batching, `workers=1, max_batch_size=64, max_batch_delay=0`. "
        "The raw ASGI app decodes and encodes with orjson, as modeldeploy's JSON serializer "
        "does, and computes on the event loop; it cannot batch.\n"
    )


def report(results: dict) -> None:
    procs = max(PROCESSES)
    checks = []
    summary = []
    for model in MODELS:
        cells = results[model][0]
        raw = cells[RAW.key, procs, 64]
        for contestant in (OURS_ASGI, OURS_WSGI):
            ours = cells[contestant.key, procs, 64]
            summary.append(
                [
                    f"{model} ({SIZES[model]})",
                    contestant.label,
                    f"{ours.rate:,.0f}",
                    f"{raw.rate:,.0f}",
                    f"**{ours.rate / raw.rate:.2f}x**",
                    f"{ms(ours.p99)} / {ms(raw.p99)}",
                ]
            )
        ours = cells[OURS_ASGI.key, procs, 64]
        if model == "tiny":
            checks.append(
                f"tiny: {ours.rate / raw.rate:.2f}x the raw ASGI app (target >= 0.8x), "
                f"p99 {ms(ours.p99)} ms against {ms(raw.p99)} ms (target: no worse)"
            )
        else:
            checks.append(
                f"heavy, batching: {ours.rate / raw.rate:.2f}x the raw ASGI app (target >= 2x)"
            )
    sections = [
        "## HTTP serving (`benchmarks/http.py`)\n",
        method(),
        f"### Targets: c=64, {procs} server processes\n",
        table(TARGET_HEADER, summary),
        "\nMeasured: " + "; ".join(checks) + ".\n",
        TINY_COST,
    ]
    for model in MODELS:
        sections += model_tables(model, *results[model])
    write_section("http", "\n".join(sections))


def model_tables(model: str, cells: dict, memory: dict, formats: dict) -> list[str]:
    rows = []
    for processes in PROCESSES:
        for connections in CONCURRENCY:
            raw = cells[RAW.key, processes, connections]
            for contestant in CONTESTANTS:
                cell = cells[contestant.key, processes, connections]
                rows.append(
                    [
                        contestant.label,
                        str(processes),
                        str(connections),
                        f"{cell.rate:,.0f}",
                        f"{cell.rate / raw.rate:.2f}x",
                        ms(cell.p50),
                        ms(cell.p99),
                        f"{cell.cpu_us:,.0f}",
                        f"{memory[contestant.key, processes]:,.0f}",
                    ]
                )
    procs = max(PROCESSES)
    raw = cells[RAW.key, procs, 64]
    format_rows = []
    for name in ("JSON", "msgpack", "V2 JSON", "V2 binary"):
        cell, base, response_size, request_size = formats[name]
        format_rows.append(
            [
                name,
                f"{request_size:,} / {response_size:,}",
                f"{cell.rate:,.0f}",
                f"{cell.rate / base.rate:.2f}x",
                f"{cell.rate / raw.rate:.2f}x",
                ms(cell.p50),
                ms(cell.p99),
                f"{cell.cpu_us:,.0f}",
            ]
        )
    formats_text = (
        f"Request formats, modeldeploy under uvicorn, {model} MLP, c=64, {procs} processes. "
        "*vs JSON* is against a JSON run on the same server right before it (the median pair "
        f"of {FORMAT_ROUNDS}); *vs raw* against the raw ASGI app's JSON cell above. V2 binary "
        "uses the binary tensor extension both ways (request built by tritonclient).\n"
    )
    return [
        f"### {model.capitalize()} MLP {SIZES[model]}, JSON\n",
        table(CELL_HEADER, rows),
        "",
        formats_text,
        table(FORMAT_HEADER, format_rows),
        "",
    ]


if __name__ == "__main__":
    main()
