"""
What each monitor adds to a request (issue #13), in one run, beside no monitor.

``service.handle`` of a msgpack request (one row of four floats) for a model
that sums the row, inline (``workers=0``): the whole request path, so every hook
runs as it does in production. Configurations: no monitor (the limit), then
PrometheusMonitor, LogMonitor (default sampling, lines rendered to /dev/null),
DriftMonitor (default sampling, a reference of four features and the output),
OpenTelemetryMonitor (SDK tracer provider, batch span processor, spans discarded
by the exporter), the
three of the target together, and all four. Target: Prometheus + logs + drift
add < 5 us per request.

Then the PrometheusMonitor's own ``start()`` + ``end(code, latency)`` per
request, in process and in prometheus_client's multiprocess mode (what
``modeldeploy serve --workers N`` uses), beside what prometheus_client's own
objects take there; each in a process of its own (the mode is chosen when
prometheus_client is imported), the processes interleaved.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile

import msgpack
import structlog
from _harness import QUICK, machine, per_call, per_calls, table, us, write_section
from prometheus_client import CollectorRegistry

import modeldeploy as md
from modeldeploy.monitors import DriftMonitor, LogMonitor, OpenTelemetryMonitor, PrometheusMonitor

TARGET_S = 5e-6  # Prometheus + logs + drift, added per request


def total(rows):
    return [sum(row) for row in rows]


def reference():
    rng = random.Random(0)
    training = [[rng.gauss(0.0, 1.0) for _ in range(4)] for _ in range(10_000)]
    return md.reference_statistics(training, total(training))


def tracing(stages=True):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    # as in production: spans queued, exported by a background thread (here, dropped)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return OpenTelemetryMonitor(provider, stages=stages)


# (label, multiprocess mode, prometheus_client's objects instead of the monitor)
RECORDERS = [
    ("PrometheusMonitor, one process", False, False),
    ("PrometheusMonitor, multiprocess mode", True, False),
    ("prometheus_client's objects, multiprocess mode (the monitor before #10)", True, True),
]


def recorder_cost(client: bool) -> float:
    """Seconds per request of the request metrics, in this process's mode."""
    if not client:
        recorder = PrometheusMonitor(CollectorRegistry()).request_recorder("m", "1")
        start, end = recorder.start, recorder.end

        def request() -> None:
            start()
            end("ok", 0.002)

        return per_call(request, repeats=15)
    from prometheus_client import Counter, Gauge, Histogram

    counter = Counter("c", "c", ("model", "version", "code"), registry=None)
    histogram = Histogram("h", "h", ("model", "version"), registry=None)
    gauge = Gauge("g", "g", ("model", "version"), registry=None, multiprocess_mode="livesum")
    inc, observe = counter.labels("m", "1", "ok").inc, histogram.labels("m", "1").observe
    inflight = gauge.labels("m", "1")

    def client_request() -> None:
        inflight.inc()
        inc()
        observe(0.002)
        inflight.dec()

    return per_call(client_request, repeats=15)


def recorder_rows() -> list[list[str]]:
    best = [float("inf")] * len(RECORDERS)
    for _ in range(1 if QUICK else 3):
        for i, (_, multiprocess, client) in enumerate(RECORDERS):
            env = dict(os.environ)
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            with tempfile.TemporaryDirectory() as directory:
                if multiprocess:
                    env["PROMETHEUS_MULTIPROC_DIR"] = directory
                done = subprocess.run(
                    [sys.executable, __file__, "--recorder", "client" if client else "monitor"],
                    capture_output=True, text=True, timeout=300, env=env, check=True,
                )  # fmt: skip
            best[i] = min(best[i], json.loads(done.stdout))
    limit = best[0]
    return [
        [label, us(seconds), f"{seconds / limit:.2f}x"]
        for (label, *_), seconds in zip(RECORDERS, best, strict=True)
    ]


def main() -> None:
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the whole run
    logger = structlog.wrap_logger(
        structlog.PrintLogger(devnull),
        processors=[
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
    )
    ref = reference()

    def prometheus():
        return PrometheusMonitor(CollectorRegistry())

    def logs():
        return LogMonitor(logger=logger)

    def drift():
        return DriftMonitor(ref, registry=CollectorRegistry())

    configs = {
        "no monitor (the limit)": [],
        "PrometheusMonitor": [prometheus()],
        "LogMonitor (sample_rate=0.01)": [logs()],
        "DriftMonitor (sample_rate=0.1)": [drift()],
        "OpenTelemetryMonitor": [tracing()],
        "OpenTelemetryMonitor(stages=False)": [tracing(stages=False)],
        "Prometheus + logs + drift": [prometheus(), logs(), drift()],
        "all four": [prometheus(), logs(), drift(), tracing()],
    }
    body = msgpack.packb([0.1, -0.4, 1.2, 0.3])
    request = md.Request(body, content_type="application/msgpack", accept="application/msgpack")
    services = [
        md.Service(md.predictor(total, batched=True, name="m", version="1"),
                   serializers=[md.MsgPack()], monitors=monitors, workers=0).start()
        for monitors in configs.values()
    ]  # fmt: skip
    for service in services:
        response = service.handle(request)
        assert response.status == 200, response.body
    calls = [lambda s=s: s.handle(request) for s in services]
    times = per_calls(*calls, repeats=15)
    for service in services:
        service.close()
    limit = times[0]
    rows = []
    for (name, _), seconds in zip(configs.items(), times, strict=True):
        added = seconds - limit
        target = ""
        if name == "Prometheus + logs + drift":
            target = f"< {us(TARGET_S)} added: {added / TARGET_S:.2f}x of it"
        rows.append([name, us(seconds), us(added), f"{seconds / limit:.2f}x", target])
    write_section(
        "monitors",
        "## Monitors (`benchmarks/monitors.py`)\n\n"
        f"{machine()}; `handle` of a msgpack request (one row of four floats), model summing "
        "the row, inline; microseconds per request, the best of 15 runs, all configurations "
        "alternating in one run. The machine is shared and was busy with other work: the "
        "ratios carry, the absolute times less so.\n\n"
        + table(["monitors", "per request (us)", "added (us)", "ratio to none", "target"], rows)
        + "\n\nThe drift monitor counts one request in ten (its default `sample_rate`); the "
        "others pay a counter and a modulo. The log monitor renders one successful request "
        "in a hundred, and every failure (none here). The tracing monitor builds five spans "
        "per request (the request and its four stages) with the SDK at the end of the "
        "request, one with `stages=False`; a batch span processor queues them and the "
        "exporter discards them. OpenTelemetry's SDK costs tens of microseconds per span "
        "here: trace a sample of requests (the SDK's `TraceIdRatioBased` sampler) where "
        "that matters.\n\n"
        "The request metrics alone, `start()` + `end(code, latency)` on the recorder, each "
        "mode in a process of its own, best of 3 interleaved processes. In multiprocess "
        "mode the monitor writes each process's values in place in files of its own, under "
        "one lock per request; prometheus_client's objects take a lock and check the pid "
        "for each of the five values a request changes.\n\n"
        + table(["request metrics", "per request (us)", "ratio to one process"], recorder_rows()),
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--recorder"]:
        print(json.dumps(recorder_cost(sys.argv[2] == "client")))
    else:
        main()
