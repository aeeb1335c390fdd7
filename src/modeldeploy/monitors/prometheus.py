"""Prometheus metrics for a service, through prometheus_client.

Metric objects are created when a :class:`PrometheusMonitor` is built, never at
import. Every instance built on the same registry with the same namespace
shares one set of metrics, so two services in one process can each make their
own monitor on the default registry.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from modeldeploy.events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted

    from .composite import MonitorFailed

__all__ = ["BATCH_SIZE_BUCKETS", "LATENCY_BUCKETS", "PrometheusMonitor"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""
Default upper bounds, in seconds, of the latency histograms: 100 us to 10 s.

.. versionadded:: 0.1.0
"""

BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(11))
"""
Default upper bounds of ``modeldeploy_batch_size``: 1, 2, 4, ..., 1024.

.. versionadded:: 0.1.0
"""

# the composite reports a failing monitor under this name when it is this one
_SELF = "PrometheusMonitor"


class _QueueDepthCollector(Collector):
    """Reads each tracked queue's depth at scrape time, so enqueue pays nothing."""

    def __init__(self, name: str, on_error: Callable[[], None]) -> None:
        self._name = name
        self._on_error = on_error
        self._depths: dict[str, Callable[[], int]] = {}
        self._lock = threading.Lock()

    def track(self, model: str, depth: Callable[[], int]) -> None:
        with self._lock:
            self._depths[model] = depth

    def untrack(self, model: str) -> None:
        with self._lock:
            self._depths.pop(model, None)

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name, "Requests waiting in the queue of a model.", labels=("model",)
        )

    def describe(self) -> Iterable[Metric]:
        # lets the registry reject a duplicate name without calling the callables
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        with self._lock:
            depths = tuple(self._depths.items())
        for model, depth in depths:
            try:
                value = float(depth())
            except Exception:
                self._on_error()
                continue
            family.add_metric((model,), value)
        return [family]


class _Metrics:
    """One set of metric objects per (registry, namespace), shared by monitors."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        buckets: tuple[float, ...],
        batch_size_buckets: tuple[float, ...],
    ) -> None:
        self.buckets = buckets
        self.batch_size_buckets = batch_size_buckets
        ns = namespace
        self.requests = Counter(
            "requests", "Requests answered, by outcome code (ok or the error code).",
            ("model", "version", "code"), namespace=ns, registry=None,
        )  # fmt: skip
        self.duration = Histogram(
            "request_duration", "Time from request start to end.",
            ("model", "version"), namespace=ns, unit="seconds", buckets=buckets, registry=None,
        )  # fmt: skip
        self.inflight = Gauge(
            "inflight_requests", "Requests started and not yet finished.",
            ("model", "version"), namespace=ns, registry=None,
        )  # fmt: skip
        self.model_info = Gauge(
            "model_info", "1 for the version of each model that is currently loaded.",
            ("model", "version"), namespace=ns, registry=None,
        )  # fmt: skip
        self.load_seconds = Gauge(
            "model_load", "Time the latest load and warm-up of the model took.",
            ("model",), namespace=ns, unit="seconds", registry=None,
        )  # fmt: skip
        self.batch_size = Histogram(
            "batch_size", "Requests computed together in one predict call.",
            ("model",), namespace=ns, buckets=batch_size_buckets, registry=None,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "queue_wait", "Time the oldest request of a batch waited in the queue.",
            ("model",), namespace=ns, unit="seconds", buckets=buckets, registry=None,
        )  # fmt: skip
        self.compute = Histogram(
            "batch_compute", "Time one predict call on a batch took.",
            ("model",), namespace=ns, unit="seconds", buckets=buckets, registry=None,
        )  # fmt: skip
        self.monitor_errors = Counter(
            "monitor_errors", "Exceptions a monitor raised, caught before reaching a request.",
            ("monitor",), namespace=ns, registry=None,
        )  # fmt: skip
        own_errors = self.monitor_errors.labels(_SELF)
        self.queue_depth = _QueueDepthCollector(f"{ns}_queue_depth", own_errors.inc)
        # the version each model currently reports in model_info; guarded by lock
        self.current_version: dict[str, str] = {}
        self.lock = threading.Lock()

        collectors: tuple[Collector, ...] = (
            self.requests, self.duration, self.inflight, self.model_info, self.load_seconds,
            self.batch_size, self.queue_wait, self.compute,
            # before monitor_errors: a depth callable that raises counts in this scrape
            self.queue_depth, self.monitor_errors,
        )  # fmt: skip
        registered: list[Collector] = []
        try:
            for collector in collectors:
                registry.register(collector)
                registered.append(collector)
        except ValueError as exc:
            # leave the registry as we found it, so a retry with another namespace works
            for collector in registered:
                registry.unregister(collector)
            raise ValueError(
                f"metric names of namespace {namespace!r} are already registered on this "
                "registry by something other than a PrometheusMonitor; pass another "
                "registry or namespace"
            ) from exc


_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)
_shared_lock = threading.Lock()


def _metrics_for(
    registry: CollectorRegistry,
    namespace: str,
    buckets: tuple[float, ...],
    batch_size_buckets: tuple[float, ...],
) -> _Metrics:
    with _shared_lock:
        by_namespace = _shared.setdefault(registry, {})
        metrics = by_namespace.get(namespace)
        if metrics is None:
            metrics = _Metrics(registry, namespace, buckets, batch_size_buckets)
            by_namespace[namespace] = metrics
        elif (metrics.buckets, metrics.batch_size_buckets) != (buckets, batch_size_buckets):
            raise ValueError(
                f"a PrometheusMonitor with namespace {namespace!r} and other buckets is "
                "already registered on this registry; use the same buckets, or another "
                "namespace or registry"
            )
        return metrics


def _bounds(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


_EndChildren = tuple[Callable[[], None], Callable[[float], None], Callable[[], None]]
_BatchChildren = tuple[Callable[[float], None], Callable[[float], None], Callable[[float], None]]


class PrometheusMonitor:
    """Exports request, batch and model metrics to a Prometheus registry.

    Metrics (with the default ``namespace``):

    * ``modeldeploy_requests_total{model,version,code}``: counter; ``code`` is
      ``"ok"`` or the error's stable code.
    * ``modeldeploy_request_duration_seconds{model,version}``: histogram.
    * ``modeldeploy_inflight_requests{model,version}``: gauge.
    * ``modeldeploy_queue_depth{model}``: gauge read at scrape time from the
      callables given to :meth:`track_queue`.
    * ``modeldeploy_model_info{model,version}``: 1 for the loaded version;
      the series of the version it replaced is removed.
    * ``modeldeploy_model_load_seconds{model}``: gauge, the latest load.
    * ``modeldeploy_batch_size{model}``, ``modeldeploy_queue_wait_seconds{model}``,
      ``modeldeploy_batch_compute_seconds{model}``: histograms, one
      observation per batch.
    * ``modeldeploy_monitor_errors_total{monitor}``: counter, fed by
      :class:`~modeldeploy.monitors.CompositeMonitor` through
      :meth:`on_monitor_error`.

    Monitors built on the same registry with the same namespace share these
    metric objects (a second one neither fails nor double-registers); with
    different buckets they cannot, and the second raises ``ValueError``.

    Label children are bound on first use and cached per label tuple, so a
    hook costs a dict lookup plus the metric updates themselves. Every
    ``on_request_start`` must be followed by one ``on_request_end`` with the
    same model and version, or ``inflight_requests`` drifts. Label values
    must be bounded: model and version names the service serves, never a name
    a client asked for.

    Args:
        registry: Where the metrics live; ``prometheus_client.REGISTRY`` when
            ``None``.
        namespace: Prefix of every metric name.
        buckets: Upper bounds, in seconds, of the three latency histograms.
        batch_size_buckets: Upper bounds of ``batch_size``.

    Raises:
        ValueError: The registry already holds these metric names from
            something other than a PrometheusMonitor, or from one with other
            buckets.

    Attributes:
        registry: The registry the metrics are registered on, for a
            ``/metrics`` endpoint to expose.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "modeldeploy",
        buckets: Sequence[float] = LATENCY_BUCKETS,
        batch_size_buckets: Sequence[float] = BATCH_SIZE_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self._m = _metrics_for(
            self.registry, namespace, _bounds(buckets), _bounds(batch_size_buckets)
        )
        # bound once: labels() takes a lock and allocates; a racing double bind
        # stores the same child twice, which is harmless
        self._start: dict[tuple[str, str], Callable[[], None]] = {}
        self._end: dict[tuple[str, str, str], _EndChildren] = {}
        self._batch: dict[str, _BatchChildren] = {}
        self._errors: dict[str, Callable[[], None]] = {}

    def on_request_start(self, event: RequestStarted, /) -> None:
        """Count the request as in flight.

        .. versionadded:: 0.1.0
        """
        try:
            inc = self._start[event.model, event.version]
        except KeyError:
            inc = self._bind_start(event.model, event.version)
        inc()

    def on_request_end(self, event: RequestFinished, /) -> None:
        """Count the request by code, observe its latency, and take it out of flight.

        .. versionadded:: 0.1.0
        """
        try:
            inc, observe, dec = self._end[event.model, event.version, event.code]
        except KeyError:
            inc, observe, dec = self._bind_end(event.model, event.version, event.code)
        inc()
        observe(event.latency_s)
        dec()

    def on_batch(self, event: BatchExecuted, /) -> None:
        """Observe the batch's size, queue wait and compute time.

        .. versionadded:: 0.1.0
        """
        try:
            size, wait, compute = self._batch[event.model]
        except KeyError:
            size, wait, compute = self._bind_batch(event.model)
        size(event.size)
        wait(event.queue_wait_s)
        compute(event.compute_s)

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        """Mark the loaded version in ``model_info`` and record its load time.

        The ``model_info`` series of the version it replaces is removed, so
        exactly one version per model reports 1.

        .. versionadded:: 0.1.0
        """
        m = self._m
        with m.lock:
            previous = m.current_version.get(event.model)
            if previous is not None and previous != event.version:
                m.model_info.remove(event.model, previous)
            m.current_version[event.model] = event.version
            m.model_info.labels(event.model, event.version).set(1)
        m.load_seconds.labels(event.model).set(event.load_s)

    def on_monitor_error(self, event: MonitorFailed, /) -> None:
        """Count a monitor's exception in ``monitor_errors_total{monitor}``.

        :class:`~modeldeploy.monitors.CompositeMonitor` calls this for every
        monitor that raised, this one included.

        .. versionadded:: 0.1.0
        """
        try:
            inc = self._errors[event.monitor]
        except KeyError:
            inc = self._errors[event.monitor] = self._m.monitor_errors.labels(event.monitor).inc
        inc()

    def track_queue(self, model: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as ``queue_depth{model}`` at every scrape.

        Calling it again for the same model replaces the callable. A callable
        that raises leaves its sample out of that scrape and counts in
        ``monitor_errors_total{monitor="PrometheusMonitor"}``.

        Args:
            model: The ``model`` label value.
            depth: Returns the number of queued requests; cheap and thread-safe
                (it runs on the scraping thread).

        .. versionadded:: 0.1.0
        """
        self._m.queue_depth.track(model, depth)

    def untrack_queue(self, model: str) -> None:
        """Stop reporting ``queue_depth{model}``; unknown models are ignored.

        .. versionadded:: 0.1.0
        """
        self._m.queue_depth.untrack(model)

    def _bind_start(self, model: str, version: str) -> Callable[[], None]:
        inc = self._start[model, version] = self._m.inflight.labels(model, version).inc
        return inc

    def _bind_end(self, model: str, version: str, code: str) -> _EndChildren:
        m = self._m
        children = self._end[model, version, code] = (
            m.requests.labels(model, version, code).inc,
            m.duration.labels(model, version).observe,
            m.inflight.labels(model, version).dec,
        )
        return children

    def _bind_batch(self, model: str) -> _BatchChildren:
        m = self._m
        children = self._batch[model] = (
            m.batch_size.labels(model).observe,
            m.queue_wait.labels(model).observe,
            m.compute.labels(model).observe,
        )
        return children
