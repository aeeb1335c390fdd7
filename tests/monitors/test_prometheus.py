"""PrometheusMonitor: values read back through prometheus_client's own parsers."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import prometheus_client
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted
from modeldeploy.interfaces import Monitor, RequestRecorder
from modeldeploy.monitors import (
    BATCH_SIZE_BUCKETS,
    LATENCY_BUCKETS,
    CompositeMonitor,
    MonitorFailed,
    PrometheusMonitor,
)
from modeldeploy.monitors import _multiprocess as multiprocess_module
from modeldeploy.monitors import prometheus as prometheus_module
from tests import strategies

# where the request metrics live: our own store in memory ("process", the
# default), or in this process's files ("files", what multiprocess mode uses),
# read back here through this process's own collector
STORES = ["process", "files"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the text exposition, keyed by (name, sorted labels)."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def started(model: str = "iris", version: str = "1", request_id: str = "r") -> RequestStarted:
    return RequestStarted(model=model, version=version, request_id=request_id)


def finished(
    model: str = "iris", version: str = "1", code: str = "ok", latency_s: float = 0.002
) -> RequestFinished:
    return RequestFinished(
        model=model,
        version=version,
        request_id="r",
        outcome="ok" if code == "ok" else "error",
        code=code,
        latency_s=latency_s,
    )


def request(monitor: PrometheusMonitor, **kwargs: object) -> None:
    event = finished(**kwargs)  # type: ignore[arg-type]
    monitor.on_request_start(started(event.model, event.version))
    monitor.on_request_end(event)


@contextmanager
def files_store(remove: bool = True) -> Iterator[str]:
    """While active, a new monitor keeps its request metrics in files of a fresh directory.

    The files are those of multiprocess mode; the other metrics stay in
    process (prometheus_client's value class is left as it is).
    """
    directory = tempfile.mkdtemp(prefix="modeldeploy-test-")
    try:
        with (
            mock.patch.object(prometheus_module, "_in_process", return_value=False),
            mock.patch.dict(os.environ, {"PROMETHEUS_MULTIPROC_DIR": directory}),
        ):
            yield directory
    finally:
        if remove:
            forget(directory)


def forget(directory: str) -> None:
    multiprocess_module._files.pop((directory, os.getpid()), None)
    shutil.rmtree(directory, ignore_errors=True)


def build(store: str, registry: CollectorRegistry, **kwargs: object) -> PrometheusMonitor:
    if store == "files":
        with files_store(remove=False) as directory:
            weakref.finalize(registry, forget, directory)  # the files live as long
            return PrometheusMonitor(registry, **kwargs)  # type: ignore[arg-type]
    return PrometheusMonitor(registry, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every monitor the test builds uses this store (patched before any is built)."""
    if request.param == "files":
        with files_store():
            yield request.param
    else:
        yield request.param


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def monitor(registry: CollectorRegistry) -> PrometheusMonitor:
    return PrometheusMonitor(registry)


def record(recorder: RequestRecorder, code: str = "ok", latency_s: float = 0.002) -> None:
    recorder.start()
    recorder.end(code, latency_s)


def parsed(registry: CollectorRegistry) -> dict[str, object]:
    """Both expositions, parsed back, without ``_created`` samples (timestamps differ)."""

    def samples(families: Iterable[object]) -> list[object]:
        return sorted(
            (
                family.name,  # type: ignore[attr-defined]
                family.type,  # type: ignore[attr-defined]
                family.documentation,  # type: ignore[attr-defined]
                getattr(family, "unit", ""),
                sample.name,
                tuple(sorted(sample.labels.items())),
                sample.value,
            )
            for family in families
            for sample in family.samples  # type: ignore[attr-defined]
            if not sample.name.endswith("_created")
        )

    text = generate_latest(registry).decode()
    openmetrics = om_exposition.generate_latest(registry).decode()
    return {
        "text": samples(text_string_to_metric_families(text)),
        "openmetrics": samples(om_parser.text_string_to_metric_families(openmetrics)),
    }


class TestImport:
    def test_importing_creates_no_metric_and_configures_no_logging(self) -> None:
        code = (
            "import prometheus_client, structlog\n"
            "before = {m.name for m in prometheus_client.REGISTRY.collect()}\n"
            "import modeldeploy, modeldeploy.monitors\n"
            "after = {m.name for m in prometheus_client.REGISTRY.collect()}\n"
            "assert after == before, after - before\n"
            "assert not structlog.is_configured()\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    def test_fits_the_monitor_protocol(self, monitor: PrometheusMonitor) -> None:
        assert isinstance(monitor, Monitor)


@pytest.mark.usefixtures("store")
class TestRequests:
    def test_the_store_fixture_selects_the_store(
        self, store: str, monitor: PrometheusMonitor
    ) -> None:
        # guards the parametrization: both params must not test the same store
        recorder = monitor.request_recorder("iris", "1")
        expected = {"process": "_Series", "files": "FileSeries"}[store]
        assert type(recorder).__name__ == expected

    def test_counts_by_code_and_returns_inflight_to_zero(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        for _ in range(3):
            request(monitor)
        request(monitor, code="decode_error")
        request(monitor, version="2", code="prediction_error")

        samples = scrape(registry)
        total = "modeldeploy_requests_total"
        assert value(samples, total, model="iris", version="1", code="ok") == 3
        assert value(samples, total, model="iris", version="1", code="decode_error") == 1
        assert value(samples, total, model="iris", version="2", code="prediction_error") == 1
        assert value(samples, total, model="iris", version="2", code="ok") is None
        inflight = "modeldeploy_inflight_requests"
        assert value(samples, inflight, model="iris", version="1") == 0
        assert value(samples, inflight, model="iris", version="2") == 0

    def test_inflight_counts_started_not_finished(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        for _ in range(3):
            monitor.on_request_start(started())
        monitor.on_request_end(finished())
        samples = scrape(registry)
        assert value(samples, "modeldeploy_inflight_requests", model="iris", version="1") == 2

    def test_duration_histogram_has_latency_buckets_count_and_sum(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        latencies = [0.00005, 0.0001, 0.003, 0.7, 30.0]
        for latency in latencies:
            request(monitor, latency_s=latency)

        samples = scrape(registry)
        name = "modeldeploy_request_duration_seconds"
        labels = {"model": "iris", "version": "1"}
        assert value(samples, f"{name}_count", **labels) == 5
        assert value(samples, f"{name}_sum", **labels) == pytest.approx(sum(latencies))
        buckets = {
            float(dict(key)["le"]): v
            for (sample, key), v in samples.items()
            if sample == f"{name}_bucket"
        }
        assert list(buckets) == [*LATENCY_BUCKETS, math.inf]
        # cumulative: le is inclusive, 30 s lands only in +Inf
        assert buckets[0.0001] == 2
        assert buckets[0.0025] == 2
        assert buckets[0.005] == 3
        assert buckets[1.0] == 4
        assert buckets[10.0] == 4
        assert buckets[math.inf] == 5

    def test_custom_buckets_and_namespace(self, registry: CollectorRegistry) -> None:
        monitor = PrometheusMonitor(registry, namespace="shop", buckets=[0.1, 1])
        request(monitor, latency_s=0.5)
        samples = scrape(registry)
        name = "shop_request_duration_seconds_bucket"
        assert value(samples, name, model="iris", version="1", le="0.1") == 0
        assert value(samples, name, model="iris", version="1", le="1.0") == 1
        assert value(samples, "shop_requests_total", model="iris", version="1", code="ok") == 1

    # the store fixture only names the store: each example builds on files of its own
    # (the files of one process are shared by every monitor of a namespace)
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(strategies.finished_requests(), max_size=60))
    def test_counters_equal_the_counts_of_a_random_sequence(
        self, store: str, events: list[RequestFinished]
    ) -> None:
        registry = CollectorRegistry()
        monitor = build(store, registry)
        for event in events:
            monitor.on_request_start(started(event.model, event.version))
        for event in events:
            monitor.on_request_end(event)

        samples = scrape(registry)
        by_code = Tally((e.model, e.version, e.code) for e in events)
        for (model, version, code), count in by_code.items():
            total = "modeldeploy_requests_total"
            assert value(samples, total, model=model, version=version, code=code) == count
        n_total = sum(v for (name, _), v in samples.items() if name.endswith("requests_total"))
        assert n_total == len(events)
        for model, version in {(e.model, e.version) for e in events}:
            mine = [e.latency_s for e in events if (e.model, e.version) == (model, version)]
            name = "modeldeploy_request_duration_seconds"
            assert value(samples, f"{name}_count", model=model, version=version) == len(mine)
            assert value(samples, f"{name}_sum", model=model, version=version) == pytest.approx(
                sum(mine)
            )
            inflight = "modeldeploy_inflight_requests"
            assert value(samples, inflight, model=model, version=version) == 0

    def test_concurrent_requests_lose_no_update(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        threads, per_thread = 8, 500
        barrier = threading.Barrier(threads)

        def work(i: int) -> None:
            barrier.wait()
            for _ in range(per_thread):
                request(monitor, version=str(i % 2))

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        samples = scrape(registry)
        for version in ("0", "1"):
            labels = {"model": "iris", "version": version}
            expected = threads // 2 * per_thread
            assert value(samples, "modeldeploy_requests_total", code="ok", **labels) == expected
            assert value(samples, "modeldeploy_inflight_requests", **labels) == 0


@pytest.mark.usefixtures("store")
class TestRecorder:
    def test_counts_what_the_event_hooks_count(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        recorder = monitor.request_recorder("iris", "1")
        assert isinstance(recorder, RequestRecorder)
        record(recorder, latency_s=0.003)
        record(recorder, "decode_error", latency_s=0.0001)
        recorder.start()
        request(monitor, latency_s=0.02)  # the event hooks feed the same series

        samples = scrape(registry)
        labels = {"model": "iris", "version": "1"}
        total = "modeldeploy_requests_total"
        assert value(samples, total, code="ok", **labels) == 2
        assert value(samples, total, code="decode_error", **labels) == 1
        assert value(samples, "modeldeploy_inflight_requests", **labels) == 1
        name = "modeldeploy_request_duration_seconds"
        assert value(samples, f"{name}_count", **labels) == 3
        assert value(samples, f"{name}_sum", **labels) == pytest.approx(0.0231)
        assert value(samples, f"{name}_bucket", le="0.0001", **labels) == 1
        assert value(samples, f"{name}_bucket", le="0.005", **labels) == 2

    def test_a_version_is_exposed_from_its_recorder_on(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        monitor.request_recorder("iris", "3")
        samples = scrape(registry)
        labels = {"model": "iris", "version": "3"}
        assert value(samples, "modeldeploy_inflight_requests", **labels) == 0
        assert value(samples, "modeldeploy_request_duration_seconds_count", **labels) == 0
        assert not [k for k in samples if k[0] == "modeldeploy_requests_total"]

    def test_one_recorder_per_version_shared_by_monitors_of_a_registry(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        other = PrometheusMonitor(registry)
        recorder = monitor.request_recorder("iris", "1")
        assert monitor.request_recorder("iris", "1") is recorder
        assert other.request_recorder("iris", "1") is recorder
        assert monitor.request_recorder("iris", "2") is not recorder
        assert monitor.request_recorder("mlp", "1") is not recorder

    def test_custom_buckets_and_namespace(self, registry: CollectorRegistry) -> None:
        monitor = PrometheusMonitor(registry, namespace="shop", buckets=[0.1, 1])
        recorder = monitor.request_recorder("iris", "1")
        for latency in (0.1, 0.5, 1.0, 1.5):
            record(recorder, latency_s=latency)
        samples = scrape(registry)
        name = "shop_request_duration_seconds_bucket"
        labels = {"model": "iris", "version": "1"}
        # le is inclusive
        assert value(samples, name, le="0.1", **labels) == 1
        assert value(samples, name, le="1.0", **labels) == 3
        assert value(samples, name, le="+Inf", **labels) == 4
        assert value(samples, "shop_requests_total", code="ok", **labels) == 4

    def test_concurrent_recorders_lose_no_update(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        threads, per_thread = 8, 500
        all_started = threading.Barrier(threads + 1)
        scraped = threading.Barrier(threads + 1)
        codes = ("ok", "overloaded")

        def work(i: int) -> None:
            # each thread resolves the recorder itself: the first lookups race
            recorder = monitor.request_recorder("m", "1")
            recorder.start()
            all_started.wait()
            scraped.wait()
            recorder.end(codes[i % 2], 0.5)
            for _ in range(per_thread - 1):
                record(recorder, codes[i % 2], 0.5)

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        all_started.wait()
        # every thread has one request in flight, none finished
        inflight = value(scrape(registry), "modeldeploy_inflight_requests", model="m", version="1")
        scraped.wait()
        for t in pool:
            t.join()
        assert inflight == threads

        samples = scrape(registry)
        labels = {"model": "m", "version": "1"}
        each = threads // 2 * per_thread
        assert value(samples, "modeldeploy_requests_total", code="ok", **labels) == each
        assert value(samples, "modeldeploy_requests_total", code="overloaded", **labels) == each
        name = "modeldeploy_request_duration_seconds"
        assert value(samples, f"{name}_count", **labels) == threads * per_thread
        assert value(samples, f"{name}_sum", **labels) == threads * per_thread * 0.5
        assert value(samples, f"{name}_bucket", le="0.25", **labels) == 0
        assert value(samples, f"{name}_bucket", le="0.5", **labels) == threads * per_thread
        assert value(samples, "modeldeploy_inflight_requests", **labels) == 0


class TestStores:
    @given(st.lists(strategies.recorded_requests, max_size=60))
    def test_both_stores_expose_the_same_samples(
        self, requests: list[tuple[str, str, str, float, bool]]
    ) -> None:
        exposed = []
        for store in STORES:
            registry = CollectorRegistry()
            monitor = build(store, registry)
            for model, version, code, latency, finished in requests:
                recorder = monitor.request_recorder(model, version)
                recorder.start()
                if finished:
                    recorder.end(code, latency)
            exposed.append(parsed(registry))
        process, files = exposed
        assert process == files

    def test_created_series_follow_prometheus_client_switch(self) -> None:
        # in process only: the files, as prometheus_client's, keep no creation time
        registry = CollectorRegistry()
        monitor = build("process", registry)
        record(monitor.request_recorder("iris", "1"))
        record(monitor.request_recorder("iris", "1"), "decode_error")

        samples = scrape(registry)
        created = {
            (name, dict(labels).get("code")): v
            for (name, labels), v in samples.items()
            if name.endswith("_created") and name.startswith("modeldeploy_request")
        }
        assert set(created) == {
            ("modeldeploy_requests_created", "ok"),
            ("modeldeploy_requests_created", "decode_error"),
            ("modeldeploy_request_duration_seconds_created", None),
        }
        # wall-clock timestamps (seconds since the epoch), not a monotonic clock
        assert all(abs(v - time.time()) < 3600 for v in created.values())

        prometheus_client.disable_created_metrics()
        try:
            without = scrape(registry)
        finally:
            prometheus_client.enable_created_metrics()
        assert not [name for name, _ in without if name.endswith("_created")]
        assert value(without, "modeldeploy_requests_total", model="iris", version="1", code="ok")
        assert set(scrape(registry)) == set(samples)

    @pytest.mark.parametrize(
        "buckets",
        [[], [-1.0, 0.0, 1.0], [0.1, 0.1], [0.2, 0.1], [0.1, math.nan], [math.inf]],
    )
    def test_latency_buckets_that_are_not_increasing_seconds_are_refused(
        self, buckets: list[float]
    ) -> None:
        with pytest.raises(ValueError, match="latency buckets"):
            PrometheusMonitor(CollectorRegistry(), buckets=buckets)

    def test_an_explicit_inf_bucket_is_the_implied_one(self) -> None:
        exposed = []
        for buckets in ([0.1, 1.0], [0.1, 1.0, math.inf]):
            registry = CollectorRegistry()
            record(PrometheusMonitor(registry, buckets=buckets).request_recorder("m", "1"))
            exposed.append(parsed(registry))
        assert exposed[0] == exposed[1]

    def test_a_nan_latency_is_exposed_the_same(self) -> None:
        """In no bucket, yet counted, in the sum, and out of flight: as prometheus_client."""
        exposed = []
        for store in STORES:
            registry = CollectorRegistry()
            recorder = build(store, registry).request_recorder("m", "1")
            record(recorder, latency_s=0.01)
            record(recorder, latency_s=math.nan)
            text = generate_latest(registry).decode()  # OpenMetrics refuses a NaN sum
            # the files are read in prometheus_client's order: _sum before the buckets
            exposed.append(
                sorted(line for line in text.splitlines() if line and "_created" not in line)
            )
        process, files = exposed
        assert process == files
        assert 'modeldeploy_requests_total{code="ok",model="m",version="1"} 2.0' in process
        assert 'modeldeploy_inflight_requests{model="m",version="1"} 0.0' in process
        assert 'modeldeploy_request_duration_seconds_count{model="m",version="1"} 1.0' in process


class TestQueueDepth:
    def test_reads_the_callable_at_every_scrape(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        queue: list[int] = []
        monitor.track_queue("iris", queue.__len__)
        assert value(scrape(registry), "modeldeploy_queue_depth", model="iris") == 0
        queue.extend([1, 2, 3])
        assert value(scrape(registry), "modeldeploy_queue_depth", model="iris") == 3

    def test_tracking_again_replaces_and_untrack_removes(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        monitor.track_queue("iris", lambda: 1)
        monitor.track_queue("iris", lambda: 7)
        monitor.track_queue("mlp", lambda: 2)
        samples = scrape(registry)
        assert value(samples, "modeldeploy_queue_depth", model="iris") == 7
        assert value(samples, "modeldeploy_queue_depth", model="mlp") == 2
        monitor.untrack_queue("iris")
        monitor.untrack_queue("never-tracked")
        samples = scrape(registry)
        assert value(samples, "modeldeploy_queue_depth", model="iris") is None
        assert value(samples, "modeldeploy_queue_depth", model="mlp") == 2

    def test_a_raising_callable_is_left_out_and_counted(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        def broken() -> int:
            raise RuntimeError("queue gone")

        monitor.track_queue("iris", broken)
        monitor.track_queue("mlp", lambda: 4)
        samples = scrape(registry)
        assert value(samples, "modeldeploy_queue_depth", model="iris") is None
        assert value(samples, "modeldeploy_queue_depth", model="mlp") == 4
        errors = "modeldeploy_monitor_errors_total"
        assert value(samples, errors, monitor="PrometheusMonitor") == 1


class TestModelInfo:
    def test_switches_to_the_new_version_on_swap(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        monitor.on_model_loaded(ModelLoaded(model="iris", version="1", load_s=0.5))
        monitor.on_model_loaded(ModelLoaded(model="mlp", version="7", load_s=0.25))
        samples = scrape(registry)
        assert value(samples, "modeldeploy_model_info", model="iris", version="1") == 1
        assert value(samples, "modeldeploy_model_load_seconds", model="iris") == 0.5

        monitor.on_model_loaded(ModelLoaded(model="iris", version="2", load_s=1.5))
        samples = scrape(registry)
        assert value(samples, "modeldeploy_model_info", model="iris", version="1") is None
        assert value(samples, "modeldeploy_model_info", model="iris", version="2") == 1
        assert value(samples, "modeldeploy_model_info", model="mlp", version="7") == 1
        assert value(samples, "modeldeploy_model_load_seconds", model="iris") == 1.5

        # a reload of the same version keeps its one series
        monitor.on_model_loaded(ModelLoaded(model="iris", version="2", load_s=1.0))
        info = [k for k in scrape(registry) if k[0] == "modeldeploy_model_info"]
        assert sorted(info) == [
            ("modeldeploy_model_info", (("model", "iris"), ("version", "2"))),
            ("modeldeploy_model_info", (("model", "mlp"), ("version", "7"))),
        ]


class TestBatches:
    def test_observes_size_wait_and_compute(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        for size in (1, 3, 64, 2000):
            monitor.on_batch(
                BatchExecuted(
                    model="mlp", version="1", size=size, queue_wait_s=0.001, compute_s=0.01
                )
            )
        samples = scrape(registry)
        size_buckets = {
            float(dict(key)["le"]): v
            for (name, key), v in samples.items()
            if name == "modeldeploy_batch_size_bucket"
        }
        assert list(size_buckets) == [*BATCH_SIZE_BUCKETS, math.inf]
        assert size_buckets[1.0] == 1
        assert size_buckets[2.0] == 1
        assert size_buckets[4.0] == 2
        assert size_buckets[64.0] == 3
        assert size_buckets[1024.0] == 3
        assert size_buckets[math.inf] == 4
        assert value(samples, "modeldeploy_batch_size_sum", model="mlp") == 2068
        assert value(samples, "modeldeploy_queue_wait_seconds_count", model="mlp") == 4
        assert value(samples, "modeldeploy_queue_wait_seconds_sum", model="mlp") == pytest.approx(
            0.004
        )
        assert value(samples, "modeldeploy_batch_compute_seconds_count", model="mlp") == 4
        assert value(
            samples, "modeldeploy_batch_compute_seconds_sum", model="mlp"
        ) == pytest.approx(0.04)

    @given(st.lists(strategies.batches_executed, max_size=40))
    def test_histograms_count_every_batch(self, batches: list[BatchExecuted]) -> None:
        registry = CollectorRegistry()
        monitor = PrometheusMonitor(registry)
        for batch in batches:
            monitor.on_batch(batch)
        samples = scrape(registry)
        for model in {b.model for b in batches}:
            mine = [b for b in batches if b.model == model]
            assert value(samples, "modeldeploy_batch_size_count", model=model) == len(mine)
            assert value(samples, "modeldeploy_batch_size_sum", model=model) == sum(
                b.size for b in mine
            )
            assert value(
                samples, "modeldeploy_batch_compute_seconds_sum", model=model
            ) == pytest.approx(sum(b.compute_s for b in mine))


class TestMonitorErrors:
    def test_on_monitor_error_counts_by_monitor(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        for name in ("LogMonitor", "LogMonitor", "Custom"):
            monitor.on_monitor_error(MonitorFailed(name, "on_request_end", RuntimeError()))
        samples = scrape(registry)
        errors = "modeldeploy_monitor_errors_total"
        assert value(samples, errors, monitor="LogMonitor") == 2
        assert value(samples, errors, monitor="Custom") == 1

    def test_its_own_failure_is_counted_through_a_composite(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        composite = CompositeMonitor([monitor])
        bad = RequestFinished(
            model="iris", version="1", request_id="r", outcome="ok", code="ok",
            latency_s="slow",  # type: ignore[arg-type]
        )  # fmt: skip
        composite.on_request_end(bad)
        samples = scrape(registry)
        errors = "modeldeploy_monitor_errors_total"
        assert value(samples, errors, monitor="PrometheusMonitor") == 1
        assert composite.errors == {"PrometheusMonitor": 1}


class TestRegistration:
    def test_two_monitors_on_one_registry_share_the_metrics(
        self, registry: CollectorRegistry
    ) -> None:
        first, second = PrometheusMonitor(registry), PrometheusMonitor(registry)
        request(first)
        request(second)
        first.track_queue("iris", lambda: 5)
        samples = scrape(registry)
        total = "modeldeploy_requests_total"
        assert value(samples, total, model="iris", version="1", code="ok") == 2
        assert value(samples, "modeldeploy_queue_depth", model="iris") == 5

    def test_other_buckets_on_the_same_registry_raise_a_clear_error(
        self, registry: CollectorRegistry
    ) -> None:
        PrometheusMonitor(registry)
        with pytest.raises(ValueError, match="other buckets"):
            PrometheusMonitor(registry, buckets=[1, 2])
        PrometheusMonitor(registry, namespace="other", buckets=[1, 2])

    def test_a_foreign_metric_of_the_same_name_raises_and_leaves_the_registry_clean(
        self, registry: CollectorRegistry
    ) -> None:
        Counter("modeldeploy_monitor_errors", "someone else's", registry=registry)
        with pytest.raises(ValueError, match="something other than a PrometheusMonitor"):
            PrometheusMonitor(registry)
        names = {family.name for family in registry.collect()}
        assert names == {"modeldeploy_monitor_errors"}
        PrometheusMonitor(registry, namespace="app")

    def test_default_registry(self) -> None:
        # a namespace of its own: the default registry lives as long as the process
        first = PrometheusMonitor(namespace="modeldeploy_test_default")
        second = PrometheusMonitor(namespace="modeldeploy_test_default")
        assert first.registry is REGISTRY
        request(first)
        request(second)
        samples = scrape(REGISTRY)
        total = "modeldeploy_test_default_requests_total"
        assert value(samples, total, model="iris", version="1", code="ok") == 2


@pytest.mark.usefixtures("store")
class TestExposition:
    def families(self, registry: CollectorRegistry) -> Iterable[om_parser.Metric]:
        text = om_exposition.generate_latest(registry).decode()
        return om_parser.text_string_to_metric_families(text)

    def test_openmetrics_types_units_and_values(
        self, registry: CollectorRegistry, monitor: PrometheusMonitor
    ) -> None:
        request(monitor, latency_s=0.02)
        request(monitor, code="overloaded", latency_s=0.0001)
        monitor.on_batch(BatchExecuted("iris", "1", size=8, queue_wait_s=0.001, compute_s=0.01))
        monitor.on_model_loaded(ModelLoaded("iris", "1", load_s=2.0))
        monitor.track_queue("iris", lambda: 3)

        families = {f.name: f for f in self.families(registry)}
        expected = {
            "modeldeploy_requests": ("counter", ""),
            "modeldeploy_request_duration_seconds": ("histogram", "seconds"),
            "modeldeploy_inflight_requests": ("gauge", ""),
            "modeldeploy_queue_depth": ("gauge", ""),
            "modeldeploy_model_info": ("gauge", ""),
            "modeldeploy_model_load_seconds": ("gauge", "seconds"),
            "modeldeploy_batch_size": ("histogram", ""),
            "modeldeploy_queue_wait_seconds": ("histogram", "seconds"),
            "modeldeploy_batch_compute_seconds": ("histogram", "seconds"),
            "modeldeploy_monitor_errors": ("counter", ""),
        }
        assert {name: (f.type, f.unit) for name, f in families.items()} == expected
        for family in families.values():
            assert family.documentation

        ok = [
            s.value
            for s in families["modeldeploy_requests"].samples
            if s.name == "modeldeploy_requests_total" and s.labels["code"] == "ok"
        ]
        assert ok == [1]
        counts = [
            s.value
            for s in families["modeldeploy_request_duration_seconds"].samples
            if s.name.endswith("_count")
        ]
        assert counts == [2]
        depth = families["modeldeploy_queue_depth"].samples
        assert [(s.labels, s.value) for s in depth] == [({"model": "iris"}, 3)]


class TestMultiprocessMode:
    """What a process writes for the others to read, in prometheus_client's multiprocess mode."""

    @pytest.fixture
    def directory(self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
        from prometheus_client import values

        from modeldeploy.monitors import prometheus as module

        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        monkeypatch.setattr(values, "ValueClass", values.get_value_class())
        monkeypatch.setattr(module, "_reporter", None)
        yield tmp_path
        if module._reporter is not None:
            module._reporter.stop()

    def read(self, directory: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect()
            for s in family.samples
        }

    def test_queue_depth_and_process_metrics_reach_the_files(self, directory: Any) -> None:
        from modeldeploy.monitors import prometheus as module

        monitor = PrometheusMonitor(CollectorRegistry())
        monitor.track_queue("iris", lambda: 3)
        assert module._reporter is not None
        module._reporter.refresh()
        found = self.read(directory)
        assert found["modeldeploy_queue_depth", (("model", "iris"),)] == 3.0
        pid = str(os.getpid())
        assert found["process_resident_memory_bytes", (("pid", pid),)] > 0
        assert ("process_cpu_seconds_total", (("pid", pid),)) in found
        monitor.untrack_queue("iris")
        module._reporter.refresh()
        assert self.read(directory)["modeldeploy_queue_depth", (("model", "iris"),)] == 0.0

    def test_a_swapped_version_reports_0_in_the_files(self, directory: Any) -> None:
        monitor = PrometheusMonitor(CollectorRegistry())
        monitor.on_model_loaded(ModelLoaded("iris", "1", 0.1))
        monitor.on_model_loaded(ModelLoaded("iris", "2", 0.1))
        info = {
            dict(labels)["version"]: value
            for (name, labels), value in self.read(directory).items()
            if name == "modeldeploy_model_info"
        }
        assert info == {"1": 0.0, "2": 1.0}

    def test_a_forked_child_reports_too(self, directory: Any) -> None:
        from modeldeploy.monitors import prometheus as module

        monitor = PrometheusMonitor(CollectorRegistry())
        monitor.track_queue("iris", lambda: 5)
        parent = module._reporter
        assert parent is not None
        read, write = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns that a process with threads forks: the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: a reporter of its own, watching the same queues
            try:
                child = module._reporter
                ok = child is not None and child is not parent and child.pid == os.getpid()
                if ok:
                    child.refresh()
                    child.stop()
                os.write(write, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"1"
        os.waitpid(pid, 0)
        os.close(read)
        found = self.read(directory)
        assert ("process_resident_memory_bytes", (("pid", str(pid)),)) in found

    @settings(max_examples=30, deadline=None)
    @given(st.lists(strategies.recorded_requests, max_size=30))
    @example(
        [
            ("iris", "1", "ok", 0.002, True),
            ("iris", "1", "ok", 0.00025, True),
            ("iris", "1", "overloaded", 5.0, True),
            ("iris", "2", "ok", math.nan, True),
            ("mlp", "1", "decode_error", 100.0, True),
            ("mlp", "1", "ok", 0.0, True),
            ("iris", "1", "ok", 0.0, False),
        ]
    )
    def test_request_files_read_as_prometheus_clients_own(
        self, requests: list[tuple[str, str, str, float, bool]]
    ) -> None:
        """The request files merge as prometheus_client's objects' files would."""
        from prometheus_client import Gauge, Histogram, multiprocess, values

        def exposed(directory: str) -> list[str]:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            lines = generate_latest(registry).decode().splitlines()
            return sorted(line for line in lines if line.startswith("modeldeploy_"))

        with tempfile.TemporaryDirectory() as mine, tempfile.TemporaryDirectory() as theirs:
            store = multiprocess_module.FileStore("modeldeploy", LATENCY_BUCKETS, mine)
            for model, version, code, latency, finished in requests:
                recorder = store.series(model, version)
                recorder.start()
                if finished:
                    recorder.end(code, latency)

            value_class = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            with (
                mock.patch.dict(os.environ, {"PROMETHEUS_MULTIPROC_DIR": theirs}),
                mock.patch.object(values, "ValueClass", value_class),
            ):
                counter = Counter(
                    "requests", "Requests answered, by outcome code (ok or the error code).",
                    ("model", "version", "code"), namespace="modeldeploy", registry=None,
                )  # fmt: skip
                histogram = Histogram(
                    "request_duration", "Time from request start to end.", ("model", "version"),
                    namespace="modeldeploy", unit="seconds", registry=None,
                    buckets=LATENCY_BUCKETS,
                )  # fmt: skip
                gauge = Gauge(
                    "inflight_requests", "Requests started and not yet finished.",
                    ("model", "version"), namespace="modeldeploy", registry=None,
                    multiprocess_mode="livesum",
                )  # fmt: skip
                for model, version, code, latency, finished in requests:
                    # what the monitor's recorder did with these objects before #10
                    histogram.labels(model, version)
                    gauge.labels(model, version).inc()
                    if finished:
                        counter.labels(model, version, code).inc()
                        histogram.labels(model, version).observe(latency)
                        gauge.labels(model, version).dec()
            try:
                found = exposed(mine)
                assert found == exposed(theirs)
            finally:
                multiprocess_module._files.pop((mine, os.getpid()), None)
        assert not [line for line in found if "_created" in line]

    def test_every_process_counts_and_a_dead_ones_inflight_goes(self, directory: Any) -> None:
        """Requests of two processes, four threads each, in one read; then one ends."""
        child = (
            "import os, sys, threading\n"
            "from prometheus_client import CollectorRegistry\n"
            "from modeldeploy.monitors import PrometheusMonitor\n"
            "recorder = PrometheusMonitor(CollectorRegistry()).request_recorder('iris', '1')\n"
            "def work(code):\n"
            "    for _ in range(250):\n"
            "        recorder.start()\n"
            "        recorder.end(code, 0.003)\n"
            "codes = ('ok', 'ok', 'ok', 'bad')\n"
            "threads = [threading.Thread(target=work, args=(c,)) for c in codes]\n"
            "for t in threads: t.start()\n"
            "for t in threads: t.join()\n"
            "recorder.start()  # in flight when the process ends\n"
            "print(os.getpid())\n"
        )
        pids = [
            int(subprocess.run(
                [sys.executable, "-c", child], check=True, capture_output=True, text=True,
                env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            ).stdout)
            for _ in range(2)
        ]  # fmt: skip
        for pid in pids:  # each process's files, in the shared directory
            for kind in ("counter", "histogram", "gauge_livesum"):
                assert (directory / f"{kind}_{pid}-requests.db").exists()
        labels = {"model": "iris", "version": "1"}
        before = self.read(directory)
        assert value(before, "modeldeploy_requests_total", code="ok", **labels) == 2 * 750
        assert value(before, "modeldeploy_requests_total", code="bad", **labels) == 2 * 250
        name = "modeldeploy_request_duration_seconds"
        assert value(before, f"{name}_count", **labels) == 2 * 1000
        assert value(before, f"{name}_bucket", le="0.0025", **labels) == 0
        assert value(before, f"{name}_bucket", le="0.005", **labels) == 2 * 1000
        assert value(before, "modeldeploy_inflight_requests", **labels) == 2

        prometheus_module.mark_process_dead(pids[0])
        after = self.read(directory)
        assert value(after, "modeldeploy_inflight_requests", **labels) == 1
        assert {k: v for k, v in after.items() if "inflight" not in k[0]} == {
            k: v for k, v in before.items() if "inflight" not in k[0]
        }

    def test_a_forked_child_writes_files_of_its_own(self, directory: Any) -> None:
        registry = CollectorRegistry()
        recorder = PrometheusMonitor(registry).request_recorder("iris", "1")
        for _ in range(3):
            record(recorder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # a process with threads forks
            pid = os.fork()
        if pid == 0:  # the child: the recorder made before the fork, its own files
            try:
                record(recorder)
                record(recorder, "bad")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        record(recorder)
        labels = {"model": "iris", "version": "1"}
        found = self.read(directory)
        assert value(found, "modeldeploy_requests_total", code="ok", **labels) == 5
        assert value(found, "modeldeploy_requests_total", code="bad", **labels) == 1
        assert (directory / f"counter_{pid}-requests.db").exists()
        own = scrape(registry)  # the monitor's registry: this process's files only
        assert value(own, "modeldeploy_requests_total", code="ok", **labels) == 4
        assert value(own, "modeldeploy_requests_total", code="bad", **labels) is None

    def test_a_file_reopened_goes_on_from_its_values(self, directory: Any) -> None:
        from prometheus_client import multiprocess

        """A process that gets a dead one's pid goes on counting in its files."""
        path = str(directory / "counter_1-requests.db")
        first = multiprocess_module._ValueFile(path)
        keys = [f'["c", "c_total", {{"code": "{i}"}}, "{"x" * i * 97}"]' for i in range(40)]
        early = first.view
        slots = [first.slot(key) for key in keys]  # keys of every padding
        assert os.path.getsize(path) > 1 << 16  # it grew
        for n, slot in enumerate(slots[1:], 1):
            first.view[slot] = float(n)
        early[slots[0]] = 40.0  # a view taken before it grew still writes to the file
        again = multiprocess_module._ValueFile(path)
        assert [again.slot(key) for key in keys] == slots
        assert [again.view[slot] for slot in slots] == [40.0, *map(float, range(1, 40))]
        read = multiprocess.MultiProcessCollector.merge([path])  # type: ignore[no-untyped-call]
        assert sorted(s.value for family in read for s in family.samples) == list(range(1, 41))
