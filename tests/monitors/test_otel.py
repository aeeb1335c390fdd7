"""OpenTelemetryMonitor: spans from the SDK's in-memory exporter, traceparent, log ids."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import modeldeploy as md
from modeldeploy.errors import OverloadedError, ValidationError
from modeldeploy.events import RequestFinished, RequestStarted, StageTimings
from modeldeploy.monitors import CompositeMonitor, LogMonitor, OpenTelemetryMonitor, add_trace_ids

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TIMINGS = StageTimings(decode_s=0.001, queue_s=0.002, predict_s=0.003, encode_s=0.0005)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def monitor(provider: TracerProvider) -> OpenTelemetryMonitor:
    return OpenTelemetryMonitor(provider)


def request(
    monitor: OpenTelemetryMonitor,
    *,
    request_id: str = "r1",
    headers: dict[str, str] | None = None,
    error: BaseException | None = None,
    timings: StageTimings | None = TIMINGS,
) -> None:
    monitor.on_request_start(RequestStarted("iris", "2", request_id, headers or {}))
    code = "ok" if error is None else getattr(error, "code", "internal")
    outcome = "ok" if error is None else "error"
    monitor.on_request_end(
        RequestFinished("iris", "2", request_id, outcome, code, 0.01, error, timings)
    )


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


class TestSpans:
    def test_a_span_per_request_with_the_model_version(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        request(monitor)
        span = by_name(exporter)["modeldeploy.request"]
        assert span.kind is SpanKind.SERVER
        assert dict(span.attributes or {}) == {
            "modeldeploy.model": "iris",
            "modeldeploy.model_version": "2",
            "modeldeploy.request_id": "r1",
            "modeldeploy.code": "ok",
        }
        assert span.start_time is not None and span.end_time is not None
        assert span.end_time - span.start_time == 10_000_000  # latency_s=0.01
        assert span.status.status_code is StatusCode.UNSET
        assert span.parent is None

    def test_child_spans_follow_the_stages(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        request(monitor)
        spans = by_name(exporter)
        parent = spans["modeldeploy.request"]
        at = parent.start_time
        assert at is not None
        for name, seconds in zip(("decode", "queue", "predict", "encode"), TIMINGS, strict=True):
            child = spans[name]
            assert child.parent is not None
            assert child.parent.span_id == parent.context.span_id
            assert child.context.trace_id == parent.context.trace_id
            assert child.start_time == at
            assert child.end_time == at + round(seconds * 1e9)
            at = child.end_time

    def test_stages_that_took_no_time_have_no_span(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        request(monitor, timings=StageTimings(decode_s=0.001, predict_s=0.002))
        assert set(by_name(exporter)) == {"modeldeploy.request", "decode", "predict"}

    def test_stages_can_be_left_out(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        request(OpenTelemetryMonitor(provider, stages=False))
        assert [s.name for s in exporter.get_finished_spans()] == ["modeldeploy.request"]

    def test_without_timings_one_span(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        request(monitor, timings=None)
        assert [s.name for s in exporter.get_finished_spans()] == ["modeldeploy.request"]

    def test_the_incoming_traceparent_is_honoured(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        request(monitor, headers={"traceparent": TRACEPARENT})
        span = by_name(exporter)["modeldeploy.request"]
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == PARENT_ID
        assert span.parent.is_remote

    def test_a_malformed_traceparent_starts_a_new_trace(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        request(monitor, headers={"traceparent": "00-zz-yy-01"})
        span = by_name(exporter)["modeldeploy.request"]
        assert span.parent is None
        assert format(span.context.trace_id, "032x") != TRACE_ID

    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (ValidationError("bad"), StatusCode.UNSET),  # the client's fault
            (OverloadedError(), StatusCode.ERROR),
            (RuntimeError("bug"), StatusCode.ERROR),
        ],
    )
    def test_server_errors_set_the_status(
        self,
        monitor: OpenTelemetryMonitor,
        exporter: InMemorySpanExporter,
        error: BaseException,
        status: StatusCode,
    ) -> None:
        request(monitor, error=error)
        span = by_name(exporter)["modeldeploy.request"]
        assert span.status.status_code is status
        if status is StatusCode.ERROR:
            assert span.status.description is not None
            assert "bug" not in span.status.description  # a foreign message may hold data

    def test_repeated_request_ids_each_get_their_span(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        for _ in range(2):
            monitor.on_request_start(RequestStarted("iris", "2", "same"))
        for _ in range(2):
            monitor.on_request_end(RequestFinished("iris", "2", "same", "ok", "ok", 0.01))
        assert len(exporter.get_finished_spans()) == 2
        assert monitor._open == {}

    def test_an_end_without_a_start_is_ignored(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        monitor.on_request_end(RequestFinished("iris", "2", "r", "ok", "ok", 0.01))
        assert exporter.get_finished_spans() == ()


class TestLogIds:
    def test_log_monitor_lines_carry_the_request_span_ids(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        structlog.configure(processors=[monitor.add_trace_ids, structlog.testing.LogCapture()])
        capture = structlog.get_config()["processors"][-1]
        try:
            logs = LogMonitor(logger=structlog.get_logger(), sample_rate=1.0)
            # the log monitor after the tracing one: the span has ended when it logs
            composite = CompositeMonitor([monitor, logs])
            observer = composite.observe_requests("iris", "2")
            assert observer is not None
            observer.start("r9", {"traceparent": TRACEPARENT})
            observer.end("r9", 0.01, None, TIMINGS)
        finally:
            structlog.reset_defaults()
        (line,) = capture.entries
        span = by_name(exporter)["modeldeploy.request"]
        assert line["trace_id"] == TRACE_ID
        assert line["span_id"] == format(span.context.span_id, "016x")

    def test_the_current_span_wins(self, provider: TracerProvider) -> None:
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("handler") as span:
            event = add_trace_ids(None, "info", {"event": "x"})
        assert event["trace_id"] == format(span.get_span_context().trace_id, "032x")
        assert event["span_id"] == format(span.get_span_context().span_id, "016x")

    def test_no_span_no_ids(self, monitor: OpenTelemetryMonitor) -> None:
        assert monitor.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
        assert monitor.add_trace_ids(None, "info", {"request_id": "unknown"}) == {
            "request_id": "unknown"
        }

    def test_remembers_a_bounded_number_of_ended_requests(self, provider: TracerProvider) -> None:
        monitor = OpenTelemetryMonitor(provider, remember=3)
        for i in range(5):
            request(monitor, request_id=f"r{i}")
        assert list(monitor._ids) == ["r2", "r3", "r4"]


class TestService:
    def test_end_to_end_through_handle(
        self, monitor: OpenTelemetryMonitor, exporter: InMemorySpanExporter
    ) -> None:
        service = md.Service(lambda x: x * 2, monitors=[monitor], workers=1, name="double")
        with service:
            response = service.handle(
                md.Request(b"21", content_type="application/json",
                           headers={"traceparent": TRACEPARENT})
            )  # fmt: skip
        assert response.status == 200
        spans = by_name(exporter)
        request_span = spans["modeldeploy.request"]
        assert format(request_span.context.trace_id, "032x") == TRACE_ID
        assert (request_span.attributes or {})["modeldeploy.model"] == "double"
        assert {"decode", "predict", "encode"} <= set(spans)

    def test_the_global_provider_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[Any] = []

        class Provider:
            def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
                seen.append(args)
                return trace.NoOpTracer()

        monkeypatch.setattr(trace, "get_tracer_provider", Provider)
        OpenTelemetryMonitor()
        assert seen and seen[0][0] == "modeldeploy"


def test_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(md.ModelDeployError, match=r"modeldeploy\[otel\]"):
        OpenTelemetryMonitor()
