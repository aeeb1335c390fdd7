"""CompositeMonitor: dispatch by hook, and isolation of a monitor that raises."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from modeldeploy.events import BatchExecuted, ModelLoaded, RequestFinished, RequestStarted
from modeldeploy.interfaces import Monitor
from modeldeploy.monitors import CompositeMonitor, MonitorFailed, PrometheusMonitor

START = RequestStarted(model="iris", version="1", request_id="r")
END = RequestFinished(
    model="iris", version="1", request_id="r", outcome="ok", code="ok", latency_s=0.001
)
BATCH = BatchExecuted(model="iris", version="1", size=4, queue_wait_s=0.001, compute_s=0.002)
LOADED = ModelLoaded(model="iris", version="1", load_s=0.5)
EVENTS: list[tuple[str, object]] = [
    ("on_request_start", START),
    ("on_request_end", END),
    ("on_batch", BATCH),
    ("on_model_loaded", LOADED),
]


class Recording:
    """Implements every hook; records (hook, event)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def on_request_start(self, event: RequestStarted, /) -> None:
        self.seen.append(("on_request_start", event))

    def on_request_end(self, event: RequestFinished, /) -> None:
        self.seen.append(("on_request_end", event))

    def on_batch(self, event: BatchExecuted, /) -> None:
        self.seen.append(("on_batch", event))

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        self.seen.append(("on_model_loaded", event))


class OnlyBatches:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch(self, event: BatchExecuted, /) -> None:
        self.sizes.append(event.size)


class Broken:
    """Raises from every hook."""

    def on_request_start(self, event: RequestStarted, /) -> None:
        raise RuntimeError("start")

    def on_request_end(self, event: RequestFinished, /) -> None:
        raise RuntimeError("end")

    def on_batch(self, event: BatchExecuted, /) -> None:
        raise RuntimeError("batch")

    def on_model_loaded(self, event: ModelLoaded, /) -> None:
        raise RuntimeError("loaded")


class ErrorRecorder:
    def __init__(self) -> None:
        self.failures: list[MonitorFailed] = []

    def on_monitor_error(self, event: MonitorFailed, /) -> None:
        self.failures.append(event)

    def on_request_end(self, event: RequestFinished, /) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def dispatch(composite: CompositeMonitor, hook: str, event: object) -> None:
    getattr(composite, hook)(event)


def test_fits_the_monitor_protocol() -> None:
    assert isinstance(CompositeMonitor([]), Monitor)


class TestDispatch:
    def test_every_hook_reaches_every_monitor_in_order(self) -> None:
        first, second = Recording(), Recording()
        composite = CompositeMonitor([first, second])
        for hook, event in EVENTS:
            dispatch(composite, hook, event)
        assert first.seen == EVENTS
        assert second.seen == EVENTS

    def test_a_monitor_with_one_hook_gets_only_that_hook(self) -> None:
        batches, everything = OnlyBatches(), Recording()
        composite = CompositeMonitor([batches, everything])
        for hook, event in EVENTS:
            dispatch(composite, hook, event)
        assert batches.sizes == [4]
        assert everything.seen == EVENTS

    def test_hooks_are_resolved_once_at_construction(self) -> None:
        monitor = OnlyBatches()
        composite = CompositeMonitor([monitor])
        # an attribute added later is not picked up: dispatch uses the bound methods
        monitor.on_request_end = lambda event: pytest.fail("resolved late")  # type: ignore[attr-defined]
        composite.on_request_end(END)
        composite.on_batch(BATCH)
        assert monitor.sizes == [4]

    def test_rejects_a_monitor_without_hooks(self) -> None:
        class Typo:
            def on_request_finish(self, event: object) -> None:
                pass

        with pytest.raises(TypeError, match="Typo implements no monitor hook"):
            CompositeMonitor([Typo()])

    def test_rejects_a_hook_that_is_not_callable(self) -> None:
        class NotCallable:
            on_batch = 3

        with pytest.raises(TypeError, match=r"NotCallable\.on_batch is not callable"):
            CompositeMonitor([NotCallable()])

    def test_composites_nest(self) -> None:
        inner_recording = Recording()
        outer = CompositeMonitor([CompositeMonitor([inner_recording]), OnlyBatches()])
        for hook, event in EVENTS:
            dispatch(outer, hook, event)
        assert inner_recording.seen == EVENTS


class TestIsolation:
    @pytest.mark.parametrize(("hook", "event"), EVENTS)
    def test_a_raising_monitor_never_reaches_the_caller_nor_stops_the_others(
        self, hook: str, event: object
    ) -> None:
        before, after = Recording(), Recording()
        composite = CompositeMonitor([before, Broken(), after], logger=structlog.get_logger())
        with capture_logs() as logs:
            dispatch(composite, hook, event)
        assert before.seen == [(hook, event)]
        assert after.seen == [(hook, event)]
        assert composite.errors == {"Broken": 1}
        (line,) = logs
        assert line["event"] == "monitor_failed"
        assert line["log_level"] == "error"
        assert line["monitor"] == "Broken"
        assert line["hook"] == hook
        assert isinstance(line["exc_info"], RuntimeError)

    def test_failures_are_passed_to_on_monitor_error(self) -> None:
        recorder = ErrorRecorder()
        composite = CompositeMonitor([Broken(), recorder])
        with capture_logs():
            composite.on_batch(BATCH)
            composite.on_request_end(END)
        assert [(f.monitor, f.hook, str(f.error)) for f in recorder.failures] == [
            ("Broken", "on_batch", "batch"),
            ("Broken", "on_request_end", "end"),
        ]

    def test_counted_in_prometheus(self) -> None:
        registry = CollectorRegistry()
        composite = CompositeMonitor([Broken(), PrometheusMonitor(registry)])
        with capture_logs():
            for hook, event in EVENTS:
                dispatch(composite, hook, event)
        text = generate_latest(registry).decode()
        counts = {
            s.labels["monitor"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "modeldeploy_monitor_errors_total"
        }
        assert counts == {"Broken": 4, "PrometheusMonitor": 0}

    def test_a_raising_error_hook_is_counted_and_not_reported_again(self) -> None:
        class BrokenErrorHook(ErrorRecorder):
            def on_monitor_error(self, event: MonitorFailed, /) -> None:
                raise RuntimeError("error hook")

        composite = CompositeMonitor([Broken(), BrokenErrorHook()])
        with capture_logs() as logs:
            composite.on_batch(BATCH)
        assert composite.errors == {"Broken": 1, "BrokenErrorHook": 1}
        assert [(line["monitor"], line["hook"]) for line in logs] == [
            ("Broken", "on_batch"),
            ("BrokenErrorHook", "on_monitor_error"),
        ]

    def test_a_broken_logger_is_swallowed(self) -> None:
        class BrokenLogger:
            def error(self, event: str, **kw: Any) -> None:
                raise OSError("disk full")

        composite = CompositeMonitor([Broken()], logger=BrokenLogger())
        composite.on_request_end(END)
        assert composite.errors == {"Broken": 1}

    def test_base_exceptions_propagate(self) -> None:
        class Interrupted:
            def on_batch(self, event: BatchExecuted, /) -> None:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            CompositeMonitor([Interrupted()]).on_batch(BATCH)

    def test_log_lines_are_rate_limited_per_monitor(self) -> None:
        clock = Clock()
        composite = CompositeMonitor(
            [Broken(), Recording()], logger=structlog.get_logger(), log_interval=60.0, clock=clock
        )
        with capture_logs() as logs:
            for _ in range(5):
                composite.on_request_end(END)
            clock.now = 59.9
            composite.on_request_end(END)
            clock.now = 60.0
            composite.on_request_end(END)
            composite.on_request_end(END)
            clock.now = 500.0
            composite.on_request_end(END)
        assert composite.errors == {"Broken": 9}
        assert [line["suppressed"] for line in logs] == [0, 5, 1]

    @given(st.lists(st.tuples(st.sampled_from(EVENTS), st.booleans()), max_size=30))
    def test_random_failures_leave_the_others_whole(
        self, steps: list[tuple[tuple[str, object], bool]]
    ) -> None:
        class Flaky(Recording):
            fail = False

            def on_request_end(self, event: RequestFinished, /) -> None:
                if self.fail:
                    raise ValueError("flaky")
                super().on_request_end(event)

            def on_batch(self, event: BatchExecuted, /) -> None:
                if self.fail:
                    raise ValueError("flaky")
                super().on_batch(event)

        flaky, steady, recorder = Flaky(), Recording(), ErrorRecorder()
        composite = CompositeMonitor([flaky, steady, recorder], logger=structlog.get_logger())
        expected_failures = 0
        with capture_logs():
            for (hook, event), fail in steps:
                flaky.fail = fail
                dispatch(composite, hook, event)
                expected_failures += fail and hook in ("on_request_end", "on_batch")
        assert steady.seen == [step for step, _ in steps]
        assert composite.errors.get("Flaky", 0) == expected_failures
        assert len(recorder.failures) == expected_failures

    def test_concurrent_failures_are_all_counted(self) -> None:
        composite = CompositeMonitor([Broken()], logger=structlog.get_logger(), clock=Clock())
        threads, per_thread = 8, 200
        barrier = threading.Barrier(threads)

        def work() -> None:
            barrier.wait()
            for _ in range(per_thread):
                composite.on_request_end(END)

        with capture_logs() as logs:
            pool = [threading.Thread(target=work) for _ in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        assert composite.errors == {"Broken": threads * per_thread}
        assert len(logs) == 1
