"""Prometheus metrics for a service, through prometheus_client.

Metric objects are created when a :class:`PrometheusMonitor` is built, never at
import. Every instance built on the same registry with the same namespace
shares one set of metrics, so two services in one process can each make their
own monitor on the default registry.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from ._multiprocess import FileStore, mark_process_dead

if TYPE_CHECKING:
    from modeldeploy.events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted
    from modeldeploy.interfaces import RequestRecorder

    from .composite import MonitorFailed

__all__ = ["BATCH_SIZE_BUCKETS", "LATENCY_BUCKETS", "PrometheusMonitor", "mark_process_dead"]

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
        self.name = name
        self._on_error = on_error
        self._depths: dict[str, Callable[[], int]] = {}
        self._untracked: set[str] = set()  # reported as 0 once more in multiprocess mode
        self._lock = threading.Lock()

    def track(self, model: str, depth: Callable[[], int]) -> None:
        with self._lock:
            self._depths[model] = depth
            self._untracked.discard(model)

    def untrack(self, model: str) -> None:
        with self._lock:
            if self._depths.pop(model, None) is not None:
                self._untracked.add(model)

    def read(self, *, include_untracked: bool = False) -> list[tuple[str, float]]:
        """``(model, depth)`` of each tracked queue whose callable answers."""
        with self._lock:
            depths = tuple(self._depths.items())
            gone = tuple(self._untracked) if include_untracked else ()
            if include_untracked:
                self._untracked.clear()
        found = [(model, 0.0) for model in gone]
        for model, depth in depths:
            try:
                found.append((model, float(depth())))
            except Exception:  # noqa: PERF203 - one bad callable must not hide the others
                self._on_error()
        return found

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name, "Requests waiting in the queue of a model.", labels=("model",)
        )

    def describe(self) -> Iterable[Metric]:
        # lets the registry reject a duplicate name without calling the callables
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for model, value in self.read():
            family.add_metric((model,), value)
        return [family]


MULTIPROCESS_REFRESH_S: float = 1.0
"""
Seconds between two writes of the queue depths and process metrics of a
process in prometheus_client's multiprocess mode.

.. versionadded:: 0.1.0
"""


class _ProcessReporter:
    """Writes what a scrape of one process cannot read in another: multiprocess mode only.

    ``/metrics`` of any process reads every process's files, so a value that
    lives in a callable (queue depth) or in ``/proc/self`` (CPU, memory) must be
    written to this process's files to be seen. One daemon thread per process
    does it every :data:`MULTIPROCESS_REFRESH_S`; the request path pays nothing.
    """

    def __init__(self) -> None:
        from prometheus_client import ProcessCollector

        self.pid = os.getpid()
        self._collector = ProcessCollector(registry=None)
        # queue depths add up across processes; process metrics keep one series per pid
        self._depth_gauges: dict[str, Gauge] = {}
        self._process_gauges: dict[str, Gauge] = {}
        self._tracked: weakref.WeakSet[_QueueDepthCollector] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modeldeploy-metrics", daemon=True)
        self._thread.start()

    def watch(self, collector: _QueueDepthCollector) -> None:
        with self._lock:
            self._tracked.add(collector)

    def refresh(self) -> None:
        """Write every tracked queue depth and this process's metrics now."""
        with self._lock:
            collectors = list(self._tracked)
        for collector in collectors:
            gauge = self._depth_gauges.get(collector.name)
            if gauge is None:
                gauge = self._depth_gauges[collector.name] = Gauge(
                    collector.name, "Requests waiting in the queue of a model.", ("model",),
                    registry=None, multiprocess_mode="livesum",
                )  # fmt: skip
            for model, value in collector.read(include_untracked=True):
                gauge.labels(model).set(value)
        for family in self._collector.collect():
            for sample in family.samples:
                gauge = self._process_gauges.get(sample.name)
                if gauge is None:
                    gauge = self._process_gauges[sample.name] = Gauge(
                        sample.name, family.documentation, registry=None,
                        multiprocess_mode="liveall",
                    )  # fmt: skip
                gauge.set(sample.value)

    def stop(self) -> None:
        """End the thread (tests; a server's process ends it by exiting)."""
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._wake.wait(MULTIPROCESS_REFRESH_S):
            try:
                self.refresh()
            except Exception:  # noqa: PERF203, S112 - the thread must outlive a bad tick
                continue


_reporter: _ProcessReporter | None = None
_reporter_lock = threading.Lock()


def _process_reporter() -> _ProcessReporter:
    """This process's reporter, started at first use."""
    global _reporter
    with _reporter_lock:
        if _reporter is None or _reporter.pid != os.getpid():
            _reporter = _ProcessReporter()
        return _reporter


def _restart_in_child() -> None:
    # a fork copies no thread: a server that imports the app, then forks its
    # workers (gunicorn --preload), gets a reporter per worker all the same
    global _reporter, _reporter_lock
    parent = _reporter
    _reporter_lock = threading.Lock()  # it may have been held by another thread
    if parent is None:
        return
    _reporter = None
    child = _process_reporter()
    for collector in list(parent._tracked):
        child.watch(collector)


os.register_at_fork(after_in_child=_restart_in_child)


def _in_process() -> bool:
    """Whether metric values live in this process (not prometheus_client's multiprocess mode)."""
    return values.ValueClass is values.MutexValue


def _created_series() -> bool:
    # prometheus_client.disable_created_metrics() turns these off for its own metrics
    from prometheus_client import metrics

    return bool(getattr(metrics, "_use_created", True))


class _Series:
    """The request counts of one model version, every update of a request under one lock.

    prometheus_client takes a lock per value (the counter, the histogram's sum
    and bucket, the gauge twice); one lock for all of them makes the request
    path about three times cheaper (measured in benchmarks/overhead.py).
    """

    __slots__ = (
        "_bounds", "_lock", "_reads", "_starts", "buckets", "code_created", "codes", "created",
        "start", "total",
    )  # fmt: skip

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self.codes: dict[str, int] = {}
        self.code_created: dict[str, float] = {}
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.created = time.time()
        # starts are counted without the lock: next() on a count is one atomic C
        # call; a scrape reads it with next() too and subtracts its own reads
        self._starts = itertools.count()
        self._reads = 0
        self.start: Callable[[], object] = self._starts.__next__

    def end(self, code: str, latency_s: float, /) -> None:
        bounds = self._bounds
        index = bisect_left(bounds, latency_s)  # le is inclusive, as bisect_left
        # a NaN goes in no bucket (still in the sum and the count), as prometheus_client
        counted = index != 0 or latency_s <= bounds[0]
        with self._lock:
            if counted:
                self.buckets[index] += 1
            self.total += latency_s
            codes = self.codes
            if code in codes:
                codes[code] += 1
            else:
                codes[code] = 1
                self.code_created[code] = time.time()

    def snapshot(self) -> tuple[dict[str, int], dict[str, float], list[int], float, int]:
        """Counts by code, their creation times, bucket counts, sum, and requests in flight."""
        with self._lock:
            started = next(self._starts) - self._reads
            self._reads += 1
            codes = dict(self.codes)
            return (
                codes, dict(self.code_created), list(self.buckets), self.total,
                started - sum(codes.values()),
            )  # fmt: skip


class _RequestStore(Collector):
    """The request metrics, kept in process by :class:`_Series`, exposed at scrape time.

    ``requests_total``, ``request_duration_seconds`` and ``inflight_requests``
    with the names, types and labels prometheus_client's own objects expose.
    """

    def __init__(self, namespace: str, buckets: tuple[float, ...]) -> None:
        self._names = (
            f"{namespace}_requests",
            f"{namespace}_request_duration_seconds",
            f"{namespace}_inflight_requests",
        )
        self._bounds = buckets
        go_string: Callable[[float], str] = floatToGoString
        self._les = [go_string(b) for b in buckets] + ["+Inf"]
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()

    def series(self, model: str, version: str) -> _Series:
        with self._lock:
            series = self._series.get((model, version))
            if series is None:
                series = self._series[model, version] = _Series(self._bounds)
            return series

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily, GaugeMetricFamily]:
        requests, duration, inflight = self._names
        return (
            CounterMetricFamily(
                requests, "Requests answered, by outcome code (ok or the error code).",
                labels=("model", "version", "code"),
            ),
            HistogramMetricFamily(
                duration, "Time from request start to end.", labels=("model", "version"),
                unit="seconds",
            ),
            GaugeMetricFamily(
                inflight, "Requests started and not yet finished.", labels=("model", "version")
            ),
        )  # fmt: skip

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        requests, duration, inflight = families = self._families()
        created = _created_series()
        with self._lock:
            all_series = sorted(self._series.items())
        for (model, version), series in all_series:
            codes, code_created, buckets, total, running = series.snapshot()
            for code, count in sorted(codes.items()):
                requests.add_metric(
                    (model, version, code), count, created=code_created[code] if created else None
                )
            cumulative = 0
            points = []
            for le, count in zip(self._les, buckets, strict=True):
                cumulative += count
                points.append((le, float(cumulative)))
            duration.add_metric((model, version), points, total)
            if created:
                duration.samples.append(
                    Sample(
                        f"{duration.name}_created",
                        {"model": model, "version": version},
                        series.created,
                    )
                )
            inflight.add_metric((model, version), running)
        return families


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
        # request metrics: our own store, in process or (multiprocess mode) in
        # this process's files, which every process's /metrics reads
        self.store: _RequestStore | FileStore = (
            _RequestStore(ns, buckets) if _in_process() else FileStore(ns, buckets)
        )
        self.model_info = Gauge(
            "model_info", "1 for the version of each model that is currently loaded.",
            ("model", "version"), namespace=ns, registry=None, multiprocess_mode="livemax",
        )  # fmt: skip
        self.load_seconds = Gauge(
            "model_load", "Time the latest load and warm-up of the model took.",
            ("model",), namespace=ns, unit="seconds", registry=None, multiprocess_mode="livemax",
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
        if not _in_process():
            # the scraping process cannot call another's callables nor read its /proc
            _process_reporter().watch(self.queue_depth)
        # the version each model currently reports in model_info; guarded by lock
        self.current_version: dict[str, str] = {}
        self.lock = threading.Lock()
        self.recorders: dict[tuple[str, str], RequestRecorder] = {}

        collectors: tuple[Collector, ...] = (
            self.store, self.model_info, self.load_seconds,
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

    def recorder(self, model: str, version: str) -> RequestRecorder:
        """The one recorder of a model version, shared by every monitor on these metrics."""
        with self.lock:
            recorder = self.recorders.get((model, version))
            if recorder is None:
                recorder = self.recorders[model, version] = self.store.series(model, version)
            return recorder


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


def _bounds(points: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in points)


def _latency_bounds(points: Iterable[float]) -> tuple[float, ...]:
    """Latency bucket bounds, checked: increasing, finite, >= 0 (``+Inf`` is implied)."""
    bounds = _bounds(points)
    if bounds and bounds[-1] == math.inf:
        bounds = bounds[:-1]
    valid = (
        bool(bounds)
        and bounds[0] >= 0
        and bounds[-1] < math.inf
        and all(a < b for a, b in itertools.pairwise(bounds))
    )
    if not valid:
        raise ValueError(f"latency buckets must be increasing, finite seconds >= 0: {bounds}")
    return bounds


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

    The request metrics are kept by one recorder per model version (see
    :meth:`request_recorder`), one lock per request instead of
    prometheus_client's lock per value; in prometheus_client's multiprocess
    mode each process writes them to files of its own in prometheus_client's
    format, which ``/metrics`` of any process sums (a dead worker's
    ``inflight_requests`` leaves the sum through :func:`mark_process_dead`).
    The batch metrics use label children bound once. Every
    ``on_request_start`` must be followed by one ``on_request_end`` with the
    same model and version, or ``inflight_requests`` drifts. Label values
    must be bounded: model and version names the service serves, never a name
    a client asked for.

    Args:
        registry: Where the metrics live; ``prometheus_client.REGISTRY`` when
            ``None``.
        namespace: Prefix of every metric name.
        buckets: Upper bounds, in seconds, of the three latency histograms:
            increasing, finite and not negative (``+Inf`` is always added).
        batch_size_buckets: Upper bounds of ``batch_size``.

    Raises:
        ValueError: The registry already holds these metric names from
            something other than a PrometheusMonitor, or from one with other
            buckets; or the latency buckets are not increasing, finite
            seconds >= 0.

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
            self.registry, namespace, _latency_bounds(buckets), _bounds(batch_size_buckets)
        )
        # bound once: labels() takes a lock and allocates; a racing double bind
        # stores the same child twice, which is harmless
        self._batch: dict[str, _BatchChildren] = {}
        self._errors: dict[str, Callable[[], None]] = {}

    def request_recorder(self, model: str, version: str) -> RequestRecorder:
        """The recorder a service calls for each request of this model version.

        It counts what ``on_request_start`` and ``on_request_end`` count,
        without an event per request.

        .. versionadded:: 0.1.0
        """
        # read without the lock: the metrics' dict only ever gains entries
        recorder = self._m.recorders.get((model, version))
        return recorder if recorder is not None else self._m.recorder(model, version)

    def on_request_start(self, event: RequestStarted, /) -> None:
        """Count the request as in flight.

        .. versionadded:: 0.1.0
        """
        self.request_recorder(event.model, event.version).start()

    def on_request_end(self, event: RequestFinished, /) -> None:
        """Count the request by code, observe its latency, and take it out of flight.

        .. versionadded:: 0.1.0
        """
        self.request_recorder(event.model, event.version).end(event.code, event.latency_s)

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
        exactly one version per model reports 1 (in multiprocess mode, where
        prometheus_client cannot remove a series, it reports 0).

        .. versionadded:: 0.1.0
        """
        m = self._m
        with m.lock:
            previous = m.current_version.get(event.model)
            if previous is not None and previous != event.version:
                if _in_process():
                    m.model_info.remove(event.model, previous)
                else:
                    # prometheus_client cannot remove a series from the files: 0 in
                    # this process's file lets another process's 1 decide (livemax)
                    m.model_info.labels(event.model, previous).set(0)
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

    def _bind_batch(self, model: str) -> _BatchChildren:
        m = self._m
        children = self._batch[model] = (
            m.batch_size.labels(model).observe,
            m.queue_wait.labels(model).observe,
            m.compute.labels(model).observe,
        )
        return children
