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

from modeldeploy.errors import DecodeError, OverloadedError
from modeldeploy.events import (
    BatchExecuted,
    ModelLoaded,
    Predictions,
    RequestFinished,
    RequestStarted,
    StageTimings,
)
from modeldeploy.interfaces import Monitor
from modeldeploy.monitors import CompositeMonitor, MonitorFailed, PrometheusMonitor

START = RequestStarted(model="iris", version="1", request_id="r")
END = RequestFinished(
    model="iris", version="1", request_id="r", outcome="ok", code="ok", latency_s=0.001
)
BATCH = BatchExecuted(model="iris", version="1", size=4, queue_wait_s=0.001, compute_s=0.002)
LOADED = ModelLoaded(model="iris", version="1", load_s=0.5)
PREDICTIONS = Predictions(model="iris", version="1", inputs=[[1.0, 2.0]], outputs=[0])
EVENTS: list[tuple[str, object]] = [
    ("on_request_start", START),
    ("on_request_end", END),
    ("on_batch", BATCH),
    ("on_model_loaded", LOADED),
    ("on_predictions", PREDICTIONS),
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

    def on_predictions(self, event: Predictions, /) -> None:
        self.seen.append(("on_predictions", event))


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

    def on_predictions(self, event: Predictions, /) -> None:
        raise RuntimeError("predictions")


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

    def test_observes_predictions_only_when_a_monitor_has_the_hook(self) -> None:
        assert not CompositeMonitor([OnlyBatches()]).observes_predictions
        assert CompositeMonitor([OnlyBatches(), Recording()]).observes_predictions
        assert CompositeMonitor([CompositeMonitor([Recording()])]).observes_predictions

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
        assert counts == {"Broken": len(EVENTS), "PrometheusMonitor": 0}

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


class Calls:
    """A RequestRecorder that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def start(self) -> None:
        self.calls.append(("start",))

    def end(self, code: str, latency_s: float, /) -> None:
        self.calls.append(("end", code, latency_s))


class WithRecorder:
    """Offers a recorder, and event hooks it should only get when the recorder is missing."""

    def __init__(self, *, broken_factory: bool = False) -> None:
        self.broken_factory = broken_factory
        self.recorder = Calls()
        self.made: list[tuple[str, str]] = []
        self.events: list[object] = []

    def request_recorder(self, model: str, version: str) -> Calls:
        self.made.append((model, version))
        if self.broken_factory:
            raise RuntimeError("no recorder")
        return self.recorder

    def on_request_start(self, event: RequestStarted, /) -> None:
        self.events.append(event)

    def on_request_end(self, event: RequestFinished, /) -> None:
        self.events.append(event)


class BrokenStart(Calls):
    def start(self) -> None:
        raise RuntimeError("recorder start")


class BrokenEnd(Calls):
    def end(self, code: str, latency_s: float, /) -> None:
        raise RuntimeError("recorder end")


class Offers:
    """A monitor whose only hook is request_recorder, returning a given recorder."""

    def __init__(self, recorder: Calls) -> None:
        self.recorder = recorder

    def request_recorder(self, model: str, version: str) -> Calls:
        return self.recorder


# (error passed to end, the code recorders get, the outcome events get)
OUTCOMES: list[tuple[BaseException | None, str, str]] = [
    (None, "ok", "ok"),
    (DecodeError("bad body"), "decode_error", "error"),
    (OverloadedError(), "overloaded", "error"),
    (ValueError("a bug"), "internal", "error"),
]


class TestObserveRequests:
    def test_none_when_no_monitor_observes_requests(self) -> None:
        assert CompositeMonitor([]).observe_requests("iris", "1") is None
        assert CompositeMonitor([OnlyBatches()]).observe_requests("iris", "1") is None
        # one request hook is enough
        with_end = CompositeMonitor([OnlyBatches(), ErrorRecorder()])
        assert with_end.observe_requests("iris", "1") is not None

    def test_a_monitor_with_only_a_recorder_is_a_monitor(self) -> None:
        recorder = Calls()
        observer = CompositeMonitor([Offers(recorder)]).observe_requests("iris", "1")
        assert observer is not None
        observer.start("r")
        observer.end("r", 0.5, None)
        assert recorder.calls == [("start",), ("end", "ok", 0.5)]

    def test_the_factory_is_asked_once_per_call_with_the_model_version(self) -> None:
        monitor = WithRecorder()
        composite = CompositeMonitor([monitor])
        observer = composite.observe_requests("iris", "7")
        assert observer is not None
        assert (observer.model, observer.version) == ("iris", "7")
        for i in range(3):
            observer.start(f"r{i}")
            observer.end(f"r{i}", 0.001, None)
        assert monitor.made == [("iris", "7")]
        composite.observe_requests("mlp", "2")
        assert monitor.made == [("iris", "7"), ("mlp", "2")]

    @pytest.mark.parametrize(("error", "code", "outcome"), OUTCOMES)
    def test_a_recorder_gets_start_and_end_and_no_event(
        self, error: BaseException | None, code: str, outcome: str
    ) -> None:
        monitor = WithRecorder()
        observer = CompositeMonitor([monitor]).observe_requests("iris", "1")
        assert observer is not None
        observer.start("r1")
        observer.end("r1", 0.25, error)
        assert monitor.recorder.calls == [("start",), ("end", code, 0.25)]
        assert monitor.events == []

    @pytest.mark.parametrize(("error", "code", "outcome"), OUTCOMES)
    def test_other_monitors_get_the_events(
        self, error: BaseException | None, code: str, outcome: str
    ) -> None:
        with_recorder, recording = WithRecorder(), Recording()
        observer = CompositeMonitor([with_recorder, recording]).observe_requests("iris", "2")
        assert observer is not None
        observer.start("r1")
        observer.end("r1", 0.25, error)
        assert recording.seen == [
            ("on_request_start", RequestStarted("iris", "2", "r1")),
            ("on_request_end", RequestFinished("iris", "2", "r1", outcome, code, 0.25, error)),
        ]
        assert recording.seen[1][1].error is error  # type: ignore[attr-defined]
        assert with_recorder.recorder.calls == [("start",), ("end", code, 0.25)]
        assert with_recorder.events == []

    def test_headers_and_timings_reach_the_events(self) -> None:
        recording = Recording()
        observer = CompositeMonitor([recording]).observe_requests("iris", "2")
        assert observer is not None
        assert observer.observes_events
        headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        timings = StageTimings(decode_s=0.001, queue_s=0.002, predict_s=0.003, encode_s=0.004)
        observer.start("r1", headers)
        observer.end("r1", 0.01, None, timings)
        (_, started), (_, finished) = recording.seen
        assert started == RequestStarted("iris", "2", "r1", headers)
        assert finished.timings == timings  # type: ignore[attr-defined]

    def test_events_default_to_no_headers_and_no_timings(self) -> None:
        recording = Recording()
        observer = CompositeMonitor([recording]).observe_requests("iris", "2")
        assert observer is not None
        observer.start("r1")
        observer.end("r1", 0.01, None)
        (_, started), (_, finished) = recording.seen
        assert dict(started.headers) == {}  # type: ignore[attr-defined]
        assert finished.timings is None  # type: ignore[attr-defined]

    def test_recorders_alone_observe_no_events(self) -> None:
        recorder = Calls()
        observer = CompositeMonitor([Offers(recorder)]).observe_requests("iris", "1")
        assert observer is not None
        assert not observer.observes_events
        observer.start("r", {"traceparent": "x"})
        observer.end("r", 0.5, None, StageTimings())
        assert recorder.calls == [("start",), ("end", "ok", 0.5)]

    def test_no_event_is_built_when_only_recorders_listen(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_event(*args: object) -> None:
            raise AssertionError("an event was built")

        from modeldeploy.monitors import composite as composite_module

        monkeypatch.setattr(composite_module, "RequestStarted", no_event)
        monkeypatch.setattr(composite_module, "RequestFinished", no_event)
        first, second = WithRecorder(), WithRecorder()
        composite = CompositeMonitor([first, second])
        observer = composite.observe_requests("iris", "1")
        assert observer is not None
        observer.start("r")
        observer.end("r", 0.1, DecodeError())
        assert composite.errors == {}
        assert (
            first.recorder.calls
            == second.recorder.calls
            == [
                ("start",),
                ("end", "decode_error", 0.1),
            ]
        )

    def test_base_exceptions_from_a_recorder_propagate(self) -> None:
        class Interrupted(Calls):
            def start(self) -> None:
                raise KeyboardInterrupt

        observer = CompositeMonitor([Offers(Interrupted())]).observe_requests("iris", "1")
        assert observer is not None
        with pytest.raises(KeyboardInterrupt):
            observer.start("r")


class TestRecorderIsolation:
    @pytest.mark.parametrize(
        ("broken", "hook"),
        [(BrokenStart, "request_recorder.start"), (BrokenEnd, "request_recorder.end")],
    )
    def test_a_raising_recorder_never_stops_the_others(
        self, broken: type[Calls], hook: str
    ) -> None:
        before, after = Calls(), Calls()
        recording, errors = Recording(), ErrorRecorder()
        composite = CompositeMonitor(
            [Offers(before), Offers(broken()), Offers(after), recording, errors],
            logger=structlog.get_logger(),
        )
        observer = composite.observe_requests("iris", "1")
        assert observer is not None
        with capture_logs() as logs:
            observer.start("r")
            observer.end("r", 0.01, None)
        assert before.calls == after.calls == [("start",), ("end", "ok", 0.01)]
        assert [h for h, _ in recording.seen] == ["on_request_start", "on_request_end"]
        # ErrorRecorder's on_request_end still got its event
        assert composite.errors == {"Offers": 1}
        (failure,) = errors.failures
        assert (failure.monitor, failure.hook) == ("Offers", hook)
        assert isinstance(failure.error, RuntimeError)
        (line,) = logs
        assert (line["event"], line["monitor"], line["hook"]) == ("monitor_failed", "Offers", hook)

    @pytest.mark.parametrize(
        ("broken", "hook"),
        [(BrokenStart, "request_recorder.start"), (BrokenEnd, "request_recorder.end")],
    )
    def test_a_lone_raising_recorder_is_isolated_too(self, broken: type[Calls], hook: str) -> None:
        """One recorder and no event hook: the observer without loops isolates it alike."""
        composite = CompositeMonitor([Offers(broken())], logger=structlog.get_logger())
        observer = composite.observe_requests("iris", "1")
        assert observer is not None
        assert type(observer).__name__ == "_OneRecorder"
        with capture_logs() as logs:
            observer.start("r")
            observer.end("r", 0.01, None)
            observer.end("r", 0.01, ValueError("a bug"))
        calls = 1 if hook.endswith("start") else 2
        assert composite.errors == {"Offers": calls}
        assert [line["hook"] for line in logs] == [hook]  # then rate-limited

    def test_every_failing_call_is_counted(self) -> None:
        errors = ErrorRecorder()
        composite = CompositeMonitor([Offers(BrokenEnd()), errors])
        observer = composite.observe_requests("iris", "1")
        assert observer is not None
        with capture_logs():
            for i in range(5):
                observer.start(f"r{i}")
                observer.end(f"r{i}", 0.01, None)
        assert composite.errors == {"Offers": 5}
        assert [f.hook for f in errors.failures] == ["request_recorder.end"] * 5

    def test_a_raising_factory_falls_back_to_the_event_hooks(self) -> None:
        broken, errors = WithRecorder(broken_factory=True), ErrorRecorder()
        composite = CompositeMonitor([broken, errors], logger=structlog.get_logger())
        with capture_logs() as logs:
            observer = composite.observe_requests("iris", "1")
        assert observer is not None
        assert composite.errors == {"WithRecorder": 1}
        (failure,) = errors.failures
        assert (failure.monitor, failure.hook, str(failure.error)) == (
            "WithRecorder",
            "request_recorder",
            "no recorder",
        )
        assert [line["hook"] for line in logs] == ["request_recorder"]

        overloaded = OverloadedError()
        observer.start("r")
        observer.end("r", 0.3, overloaded)
        assert broken.events == [
            RequestStarted("iris", "1", "r"),
            RequestFinished("iris", "1", "r", "error", "overloaded", 0.3, overloaded),
        ]
        assert broken.recorder.calls == []
        assert composite.errors == {"WithRecorder": 1}

    @pytest.mark.parametrize("returned", [None, object(), "recorder"])
    def test_a_factory_returning_no_recorder_is_a_failure_of_its_own(
        self, returned: object
    ) -> None:
        errors = ErrorRecorder()
        composite = CompositeMonitor([Offers(returned), errors])  # type: ignore[arg-type]
        assert composite.observe_requests("iris", "1") is not None  # errors still listens
        (failure,) = errors.failures
        assert (failure.monitor, failure.hook) == ("Offers", "request_recorder")
        assert isinstance(failure.error, TypeError)
        assert "not a RequestRecorder" in str(failure.error)

    def test_a_raising_factory_without_event_hooks_observes_nothing(self) -> None:
        class OnlyFactory:
            def request_recorder(self, model: str, version: str) -> Calls:
                raise RuntimeError("no recorder")

        composite = CompositeMonitor([OnlyFactory()])
        with capture_logs():
            assert composite.observe_requests("iris", "1") is None
        assert composite.errors == {"OnlyFactory": 1}

    def test_a_raising_factory_is_counted_in_prometheus(self) -> None:
        registry = CollectorRegistry()
        composite = CompositeMonitor(
            [WithRecorder(broken_factory=True), PrometheusMonitor(registry)]
        )
        with capture_logs():
            observer = composite.observe_requests("iris", "1")
        assert observer is not None
        observer.start("r")
        observer.end("r", 0.01, None)
        text = generate_latest(registry).decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        errors = ("modeldeploy_monitor_errors_total", (("monitor", "WithRecorder"),))
        assert samples[errors] == 1
        ok = (
            "modeldeploy_requests_total",
            (("code", "ok"), ("model", "iris"), ("version", "1")),
        )
        assert samples[ok] == 1

    def test_an_object_with_a_recorder_beside_one_without_of_the_same_class(self) -> None:
        with_recorder, without = Recording(), Recording()
        recorder = Calls()
        # an instance attribute: only this object offers a recorder
        with_recorder.request_recorder = lambda model, version: recorder  # type: ignore[attr-defined]
        composite = CompositeMonitor([with_recorder, without])
        observer = composite.observe_requests("iris", "1")
        assert observer is not None
        observer.start("r")
        observer.end("r", 0.01, None)
        assert recorder.calls == [("start",), ("end", "ok", 0.01)]
        assert with_recorder.seen == []
        assert [h for h, _ in without.seen] == ["on_request_start", "on_request_end"]

    def test_each_object_of_one_class_falls_back_on_its_own(self) -> None:
        broken, working = WithRecorder(broken_factory=True), WithRecorder()
        composite = CompositeMonitor([broken, working])
        with capture_logs():
            observer = composite.observe_requests("iris", "1")
        assert observer is not None
        observer.start("r")
        observer.end("r", 0.01, None)
        assert [type(e).__name__ for e in broken.events] == ["RequestStarted", "RequestFinished"]
        assert broken.recorder.calls == []
        assert working.events == []
        assert working.recorder.calls == [("start",), ("end", "ok", 0.01)]
        assert composite.errors == {"WithRecorder": 1}

    @given(st.lists(st.tuples(st.sampled_from(OUTCOMES), st.booleans()), max_size=30))
    def test_random_failures_leave_recorders_and_events_in_step(
        self, steps: list[tuple[tuple[BaseException | None, str, str], bool]]
    ) -> None:
        class Flaky(Calls):
            fail = False

            def end(self, code: str, latency_s: float, /) -> None:
                if self.fail:
                    raise ValueError("flaky")
                super().end(code, latency_s)

        flaky, steady, recording, errors = Flaky(), Calls(), Recording(), ErrorRecorder()
        composite = CompositeMonitor([Offers(flaky), Offers(steady), recording, errors])
        observer = composite.observe_requests("iris", "1")
        assert observer is not None
        with capture_logs():
            for i, ((error, _, _), fail) in enumerate(steps):
                flaky.fail = fail
                observer.start(str(i))
                observer.end(str(i), float(i), error)
        expected = [code for (_, code, _), _ in steps]
        assert [c[1] for c in steady.calls if c[0] == "end"] == expected
        assert [e.code for h, e in recording.seen if h == "on_request_end"] == expected  # type: ignore[attr-defined]
        assert [c[1] for c in flaky.calls if c[0] == "end"] == [
            code for (_, code, _), fail in steps if not fail
        ]
        failures = sum(fail for _, fail in steps)
        assert composite.errors.get("Offers", 0) == failures
        assert [f.hook for f in errors.failures] == ["request_recorder.end"] * failures
