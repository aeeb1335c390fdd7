"""Traces of requests through OpenTelemetry (the ``otel`` extra).

:class:`OpenTelemetryMonitor` turns each request into a span, its stages into
child spans, and honours an incoming W3C ``traceparent``; its
:meth:`~OpenTelemetryMonitor.add_trace_ids` is a structlog processor that puts
the trace and span ids on log lines. Where spans go (an OTLP exporter, the
console, a test's in-memory exporter) is the application's
``TracerProvider``'s business: modeldeploy configures none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final

from modeldeploy._version import __version__
from modeldeploy.errors import ModelDeployError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from modeldeploy.events import RequestFinished, RequestStarted

__all__ = ["SPAN_NAME", "OpenTelemetryMonitor", "add_trace_ids"]

SPAN_NAME: Final = "modeldeploy.request"
"""
The name of a request's span; its stages' spans are ``decode``, ``queue``,
``predict`` and ``encode``.

.. versionadded:: 0.1.0
"""

_STAGES: Final = ("decode", "queue", "predict", "encode")


def _otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ModelDeployError(
            "tracing needs OpenTelemetry: pip install 'modeldeploy[otel]'"
        ) from exc
    return trace


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """
    A structlog processor: add ``trace_id`` and ``span_id`` of the current span.

    Lines logged while an OpenTelemetry span is current (in a handler an
    instrumented web framework traces, say) carry its ids, in the hex form
    trace backends show. Lines logged outside any span are left alone.

    .. versionadded:: 0.1.0
    """
    context = _otel().get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


class OpenTelemetryMonitor:
    """Traces each request as a span, with a child span per stage.

    The request's span (``modeldeploy.request``, kind ``SERVER``) continues
    the trace of the request's ``traceparent`` header when it has one (W3C
    Trace Context), and carries ``modeldeploy.model``,
    ``modeldeploy.model_version``, ``modeldeploy.request_id`` and
    ``modeldeploy.code``. A server error (5xx) sets its status to error; a
    client error (4xx) does not, as OpenTelemetry's HTTP conventions say for
    server spans. When the service measured the stages
    (:attr:`RequestFinished.timings <modeldeploy.events.RequestFinished.timings>`),
    ``decode``, ``queue``, ``predict`` and ``encode`` spans cover them, one
    after the other from the request's start; a stage that took no time
    (an inline call has no queue) has no span.

    Spans are built when the request ends, with explicit start and end
    times, so the request path pays one dict entry per request until then.

    Args:
        tracer_provider: Where spans go; OpenTelemetry's global provider
            (``opentelemetry.trace.set_tracer_provider``) when ``None``.
        stages: Whether to record the stages' spans; each costs about as
            much as the request's own (see docs/benchmarks.md).
        remember: How many ended requests' trace ids :meth:`add_trace_ids`
            still finds by ``request_id``, for log lines written after the
            span ended.

    Raises:
        ModelDeployError: The ``otel`` extra is not installed.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        stages: bool = True,
        remember: int = 1024,
    ) -> None:
        trace = _otel()
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        provider = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
        self._tracer = provider.get_tracer("modeldeploy", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._server = trace.SpanKind.SERVER
        self._stages = stages
        self._remember = remember
        self._lock = threading.Lock()
        # request id -> (start time in ns, incoming trace context) of each of its
        # open requests: a client may send one id twice
        self._open: dict[str, list[tuple[int, Any]]] = {}
        # request id -> (trace id, span id), for log lines; oldest first
        self._ids: dict[str, tuple[int, int]] = {}

    def on_request_start(self, event: RequestStarted, /) -> None:
        """Note when the request started.

        .. versionadded:: 0.1.0
        """
        now = time.time_ns()
        headers = event.headers
        parent = self._propagator.extract(carrier=headers) if "traceparent" in headers else None
        with self._lock:
            self._open.setdefault(event.request_id, []).append((now, parent))

    def on_request_end(self, event: RequestFinished, /) -> None:
        """Record the request's span and its stages' spans.

        .. versionadded:: 0.1.0
        """
        with self._lock:
            starts = self._open.get(event.request_id)
            if not starts:
                return  # started before this monitor was watching
            start, parent = starts.pop(0)
            if not starts:
                del self._open[event.request_id]
        trace = self._trace
        end = start + round(event.latency_s * 1e9)
        span = self._tracer.start_span(
            SPAN_NAME,
            context=parent,
            kind=self._server,
            start_time=start,
            attributes={
                "modeldeploy.model": event.model,
                "modeldeploy.model_version": event.version,
                "modeldeploy.request_id": event.request_id,
                "modeldeploy.code": event.code,
            },
        )
        context = span.get_span_context()
        self._keep_ids(event.request_id, context.trace_id, context.span_id)
        timings = event.timings
        if timings is not None and self._stages:
            inside = trace.set_span_in_context(span)
            at = start
            for name, seconds in zip(_STAGES, timings, strict=False):
                if seconds > 0:
                    took = round(seconds * 1e9)
                    child: Span = self._tracer.start_span(name, context=inside, start_time=at)
                    child.end(end_time=min(at + took, end))
                    at += took
        error = event.error
        if error is not None and _is_server_error(error):
            from opentelemetry.trace import Status, StatusCode

            message = (
                error.message if isinstance(error, ModelDeployError) else type(error).__name__
            )
            span.set_status(Status(StatusCode.ERROR, f"{event.code}: {message}"))
        span.end(end_time=end)

    def add_trace_ids(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A structlog processor: add ``trace_id`` and ``span_id`` to a line.

        From the current span, as :func:`add_trace_ids` does; otherwise, for
        a line with the ``request_id`` of a request this monitor traced (the
        lines of :class:`~modeldeploy.monitors.LogMonitor`), from that
        request's span.

        .. versionadded:: 0.1.0
        """
        add_trace_ids(logger, method_name, event_dict)
        if "trace_id" not in event_dict:
            request_id = event_dict.get("request_id")
            ids = self._ids.get(request_id) if isinstance(request_id, str) else None
            if ids is not None:
                event_dict["trace_id"] = format(ids[0], "032x")
                event_dict["span_id"] = format(ids[1], "016x")
        return event_dict

    # -- internals -------------------------------------------------------------------

    def _keep_ids(self, request_id: str, trace_id: int, span_id: int) -> None:
        with self._lock:
            ids = self._ids
            ids.pop(request_id, None)
            ids[request_id] = (trace_id, span_id)
            while len(ids) > self._remember:
                del ids[next(iter(ids))]


def _is_server_error(error: BaseException) -> bool:
    return not isinstance(error, ModelDeployError) or error.http_status >= 500
