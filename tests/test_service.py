"""Service: calling APIs, concurrency, overload, deadlines, close, failures, monitors."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import modeldeploy as md
from modeldeploy.monitors import PrometheusMonitor
from modeldeploy.testing import EchoPredictor, GatedPredictor, RecordingMonitor

WORKERS = [0, 1, 4]


def double(x):
    return [2 * v for v in x]


@pytest.fixture(params=WORKERS, ids=lambda w: f"workers={w}")
def workers(request):
    return request.param


class TestCalling:
    def test_predict_submit_apredict_agree(self, workers):
        with md.Service(EchoPredictor(double), workers=workers) as service:
            assert service.predict([1, 2]) == [2, 4]
            assert service.submit([3]).result(timeout=5) == [6]
            assert asyncio.run(service.apredict([4])) == [8]

    def test_plain_function_is_wrapped(self, workers):
        with md.Service(lambda x: x + 1, workers=workers) as service:
            assert service.predict(41) == 42

    def test_not_ready_before_start_and_after_close(self):
        service = md.Service(EchoPredictor(), workers=1)
        assert not service.ready() and service.health()
        with pytest.raises(md.NotReadyError):
            service.predict(1)
        service.start()
        assert service.ready()
        assert service.close() is True
        assert not service.ready() and not service.health()
        with pytest.raises(md.NotReadyError):
            service.submit(1)
        with pytest.raises(md.NotReadyError):
            service.start()

    def test_load_runs_once_per_replica_and_warmup_predicts(self):
        model = EchoPredictor()
        with md.Service(model, workers=2, replicas=3, warmup=[0.0]):
            pass
        assert model.loads == 1  # the other two replicas are copies
        assert model.batches == [[[0.0]]]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"workers": -1},
            {"replicas": 0},
            {"max_queue": 0},
            {"max_queue": md.MAX_QUEUE + 1},
            {"timeout": 0},
        ],
    )
    def test_bad_configuration_is_refused(self, kwargs):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            md.Service(EchoPredictor(), **kwargs)


class TestConcurrency:
    def test_many_threads_each_get_their_own_answer(self, workers):
        with md.Service(EchoPredictor(double), workers=workers) as service:

            def caller(n):
                return [service.predict([n, i]) == [2 * n, 2 * i] for i in range(50)]

            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(caller, range(32)))
        assert all(all(r) for r in results)

    def test_many_asyncio_tasks_each_get_their_own_answer(self, workers):
        async def main(service):
            return await asyncio.gather(*(service.apredict([n]) for n in range(300)))

        with md.Service(EchoPredictor(double), workers=workers) as service:
            assert asyncio.run(main(service)) == [[2 * n] for n in range(300)]

    def test_apredict_does_not_block_the_event_loop(self):
        model = GatedPredictor()
        with md.Service(model, workers=1) as service:

            async def main():
                task = asyncio.ensure_future(service.apredict(7))
                # the loop keeps running while the model holds the request
                await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 5)
                assert not task.done()
                model.open()
                return await task

            assert asyncio.run(main()) == 7

    def test_replicas_are_used_one_worker_at_a_time(self):
        both_inside = threading.Barrier(2, timeout=10)

        class NotThreadSafe(EchoPredictor):
            def __init__(self):
                super().__init__()
                self.busy = False

            def predict(self, batch):
                assert not self.busy, "two workers inside one replica"
                self.busy = True
                try:
                    both_inside.wait()  # proves two replicas compute at once
                    return super().predict(batch)
                finally:
                    self.busy = False

        with md.Service(NotThreadSafe(), workers=4, replicas=2) as service:
            futures = [service.submit(i) for i in range(20)]
            assert [f.result(timeout=10) for f in futures] == list(range(20))


class TestOverload:
    def test_full_queue_fails_at_once_then_recovers(self):
        model = GatedPredictor()
        with md.Service(model, workers=1, max_queue=3, retry_after=2.0) as service:
            futures = [service.submit(i) for i in range(3)]
            assert model.entered.wait(5)
            with pytest.raises(md.OverloadedError) as info:
                service.submit(99)
            assert info.value.retry_after == 2.0
            assert info.value.http_status == 503
            model.open()
            assert [f.result(timeout=5) for f in futures] == [0, 1, 2]
            assert service.predict(3) == 3  # capacity is back

    def test_inline_mode_keeps_the_concurrency_limit(self):
        model = GatedPredictor()
        with md.Service(model, workers=0, max_queue=1) as service:
            holder = threading.Thread(target=service.predict, args=(1,))
            holder.start()
            assert model.entered.wait(5)
            with pytest.raises(md.OverloadedError):
                service.predict(2)
            model.open()
            holder.join(5)
            assert service.predict(3) == 3


class TestDeadlines:
    def test_request_past_its_deadline_is_never_computed(self):
        model = GatedPredictor()
        with md.Service(model, workers=1) as service:
            first = service.submit("a")
            assert model.entered.wait(5)
            queued = service.submit("b", timeout=0.01)
            # waiting for a later deadline proves the earlier one has passed
            with pytest.raises(md.DeadlineExceededError):
                service.predict("c", timeout=0.05)
            model.open()
            assert first.result(timeout=5) == "a"
            assert isinstance(queued.exception(timeout=5), md.DeadlineExceededError)
        assert model.batches == [["a"]]

    def test_hanging_model_times_out_and_close_gives_up(self):
        model = GatedPredictor()
        service = md.Service(model, workers=1).start()
        try:
            with pytest.raises(md.DeadlineExceededError) as info:
                service.predict(1, timeout=0.05)
            assert isinstance(info.value, TimeoutError)
            assert service.close(timeout=0.05) is False
        finally:
            model.open()

    def test_service_timeout_is_the_default_deadline(self):
        model = GatedPredictor()
        with md.Service(model, workers=1, timeout=0.05) as service:
            with pytest.raises(md.DeadlineExceededError):
                service.predict(1)
            model.open()

    def test_apredict_deadline(self):
        model = GatedPredictor()
        with md.Service(model, workers=1) as service:
            with pytest.raises(md.DeadlineExceededError):
                asyncio.run(service.apredict(1, timeout=0.05))
            model.open()


class TestClose:
    def test_close_drains_every_accepted_request(self):
        model = GatedPredictor()
        service = md.Service(model, workers=2).start()
        futures = [service.submit(i) for i in range(10)]
        assert model.entered.wait(5)
        closer = threading.Thread(target=service.close)
        closer.start()
        # intake stops at once, while accepted requests are still held in the model
        while service.state is not md.State.CLOSING:
            assert closer.is_alive()
        assert not service.ready()
        with pytest.raises(md.NotReadyError):
            service.submit(11)
        model.open()
        closer.join(10)
        assert not closer.is_alive()
        assert [f.result(timeout=0) for f in futures] == list(range(10))
        assert service.state is md.State.CLOSED

    def test_cancelled_future_is_not_computed_and_frees_its_slot(self):
        model = GatedPredictor()
        with md.Service(model, workers=1, max_queue=2) as service:
            first = service.submit(1)
            assert model.entered.wait(5)
            second = service.submit(2)
            assert second.cancel()
            model.open()
            assert first.result(timeout=5) == 1
            with pytest.raises(CancelledError):
                second.result(timeout=5)
            assert service.predict(3) == 3
        assert model.batches == [[1], [3]]


class TestFailures:
    def test_raising_model_gives_prediction_error_and_worker_lives(self, workers):
        def flaky(x):
            if x < 0:
                raise ArithmeticError("negative input")
            return x

        with md.Service(flaky, workers=workers) as service:
            with pytest.raises(md.PredictionError) as info:
                service.predict(-1)
            assert isinstance(info.value.__cause__, ArithmeticError)
            assert "negative input" not in info.value.message
            assert [service.predict(i) for i in range(5)] == list(range(5))

    def test_wrong_length_batch_is_a_prediction_error(self, workers):
        class Broken(EchoPredictor):
            def predict(self, batch):
                return [*batch, "extra"]

        with (
            md.Service(Broken(), workers=workers) as service,
            pytest.raises(md.PredictionError, match="2 results for a batch of 1"),
        ):
            service.predict(1)

    def test_failed_load_is_typed_and_not_ready(self):
        class Unloadable(EchoPredictor):
            def load(self):
                raise FileNotFoundError("weights.bin")

        service = md.Service(Unloadable(), workers=1)
        with pytest.raises(md.ModelLoadError) as info:
            service.start()
        assert isinstance(info.value.__cause__, FileNotFoundError)
        assert not service.ready() and not service.health()
        assert service.state is md.State.FAILED

    def test_slow_loading_model_is_live_but_not_ready(self):
        release = threading.Event()
        loading = threading.Event()

        class Slow(EchoPredictor):
            def load(self):
                loading.set()
                assert release.wait(5)

        service = md.Service(Slow(), workers=1)
        starter = threading.Thread(target=service.start)
        starter.start()
        assert loading.wait(5)
        assert service.health() and not service.ready()
        with pytest.raises(md.NotReadyError):
            service.predict(1)
        release.set()
        starter.join(5)
        assert service.ready()
        assert service.predict(1) == 1
        service.close()

    def test_a_raising_monitor_never_reaches_the_request(self, workers):
        class Broken:
            def on_request_start(self, event):
                raise RuntimeError("monitor bug")

            on_request_end = on_batch = on_model_loaded = on_request_start

        recorder = RecordingMonitor()
        with md.Service(EchoPredictor(), monitors=[Broken(), recorder], workers=workers) as s:
            assert s.predict(1) == 1
            assert s.handle(md.Request(b"[1]")).status == 200
        assert len(recorder.finished) == 2


class TestMonitoring:
    def test_events_for_success_and_each_error(self, workers):
        monitor = RecordingMonitor()

        def model(x):
            if x == "boom":
                raise ValueError("boom")
            return x

        with md.Service(model, name="m", version="7", monitors=[monitor], workers=workers) as s:
            s.predict("ok")
            with pytest.raises(md.PredictionError):
                s.predict("boom")
            s.handle(md.Request(b"not json"))
        assert [(e.model, e.version) for e in monitor.loaded] == [("m", "7")]
        assert [e.code for e in monitor.finished] == ["ok", "prediction_error", "decode_error"]
        assert [e.outcome for e in monitor.finished] == ["ok", "error", "error"]
        assert {e.request_id for e in monitor.started} == {e.request_id for e in monitor.finished}
        assert all(e.latency_s >= 0 for e in monitor.finished)
        # inline calls have no queue, so no batch to observe
        assert [b.size for b in monitor.batches] == ([] if workers == 0 else [1, 1])
        assert isinstance(monitor.finished[1].error, md.PredictionError)

    def test_overload_is_observed(self):
        monitor = RecordingMonitor()
        model = GatedPredictor()
        with md.Service(model, workers=1, max_queue=1, monitors=[monitor]) as service:
            held = service.submit(1)
            with pytest.raises(md.OverloadedError):
                service.submit(2)
            model.open()
            held.result(timeout=5)
        assert sorted(e.code for e in monitor.finished) == ["ok", "overloaded"]

    def test_queue_depth_is_tracked(self):
        model = GatedPredictor()
        seen = {}

        class Tracker:
            def track_queue(self, name, depth):
                seen[name] = depth

            def on_model_loaded(self, event):
                pass

        with md.Service(model, name="q", workers=1, monitors=[Tracker()]) as service:
            futures = [service.submit(i) for i in range(3)]
            assert seen["q"]() == 3
            model.open()
            for f in futures:
                f.result(timeout=5)
            assert seen["q"]() == 0


SERIALIZER_NAMES = ["json", "msgpack", "pickle", "protobuf", "xml"]


@pytest.fixture(scope="module")
def every_format_service():
    codecs = [md.serializers.get(name) for name in SERIALIZER_NAMES]
    with md.Service(
        EchoPredictor(lambda x: {"sum": sum(x["values"]), "label": x["label"]}),
        serializers=codecs,
        workers=2,
        max_body_size=4096,
    ) as service:
        yield service


class TestHandle:
    @pytest.fixture
    def service(self, every_format_service):
        return every_format_service

    @pytest.mark.parametrize("name", SERIALIZER_NAMES)
    @pytest.mark.parametrize("answer_in", [None, *SERIALIZER_NAMES])
    def test_round_trip_for_every_serializer_pair(self, service, name, answer_in):
        decoder = md.serializers.get(name)
        encoder = md.serializers.get(answer_in or name)
        body = decoder.dumps({"values": [1.5, 2.5, -1.0], "label": "é"})
        response = service.handle(
            md.Request(body, content_type=decoder.media_type, accept=encoder.media_type)
        )
        assert response.status == 200, response.body
        assert response.headers["content-type"] == encoder.media_type
        assert encoder.loads(response.body) == {"sum": 3.0, "label": "é"}

    def test_accept_anything_answers_in_kind(self, service):
        codec = md.serializers.get("msgpack")
        response = service.handle(
            md.Request(codec.dumps({"values": [1], "label": ""}), "application/msgpack")
        )
        assert response.headers["content-type"] == "application/msgpack"

    @pytest.mark.parametrize(
        ("request_", "status", "code"),
        [
            (md.Request(b"{}", content_type="text/csv"), 415, "unsupported_media_type"),
            (md.Request(b"{}", accept="image/png"), 406, "not_acceptable"),
            (md.Request(b"{nope"), 400, "decode_error"),
            (md.Request(b"[" + b"1," * 3000 + b"1]"), 413, "payload_too_large"),
            (md.Request(b"{}"), 500, "prediction_error"),
            (
                md.Request(b"\x80\x04cos\nsystem\n.", content_type="application/python-pickle"),
                400,
                "untrusted_payload",
            ),
        ],
        ids=["415", "406", "400", "413", "500", "pickle refused"],
    )
    def test_errors_become_typed_json_responses(self, service, request_, status, code):
        response = service.handle(request_)
        assert response.status == status
        assert response.headers["content-type"] == "application/json"
        error = json.loads(response.body)["error"]
        assert error["code"] == code
        assert "Traceback" not in error["message"]
        assert response.headers["x-request-id"]

    def test_validation_error_is_422(self):
        signature = md.Signature([md.TensorSpec("x", "float32", (3,))])
        with md.Service(EchoPredictor(signature=signature), workers=0) as service:
            ok = service.handle(md.Request(b"[1, 2, 3]"))
            bad = service.handle(md.Request(b"[1, 2]"))
        assert ok.status == 200
        assert bad.status == 422
        assert "x" in json.loads(bad.body)["error"]["message"]

    def test_overload_answers_503_with_retry_after(self):
        model = GatedPredictor()
        with md.Service(model, workers=1, max_queue=1, retry_after=3.0) as service:
            held = service.submit(1)
            assert model.entered.wait(5)
            response = service.handle(md.Request(b"1"))
            model.open()
            held.result(timeout=5)
        assert response.status == 503
        assert response.headers["Retry-After"] == "3"

    def test_request_id_is_echoed(self, service):
        response = service.handle(md.Request(b"{}", headers={"x-request-id": "abc-123"}))
        assert response.headers["x-request-id"] == "abc-123"


def _request_samples(registry):
    """The request metric samples of a scrape, keyed by (name, sorted labels)."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("modeldeploy_request", "modeldeploy_inflight"))
    }


def _codes(samples, model="m", version="3"):
    return {
        dict(labels)["code"]: count
        for (name, labels), count in samples.items()
        if name == "modeldeploy_requests_total"
        and dict(labels)["model"] == model
        and dict(labels)["version"] == version
    }


class _EventKeepingPrometheus(PrometheusMonitor):
    """Keeps any request event it is handed: the service should hand it none."""

    def __init__(self, registry):
        super().__init__(registry)
        self.events = []

    def on_request_start(self, event, /):
        self.events.append(event)

    def on_request_end(self, event, /):
        self.events.append(event)


class TestRequestRecorder:
    """A PrometheusMonitor counts requests through its recorder: no event per request."""

    @staticmethod
    def prometheus(registry):
        return _EventKeepingPrometheus(registry)

    @staticmethod
    def model(x):
        if x == "boom":
            raise ValueError("boom")
        return x

    @pytest.mark.parametrize("workers", [0, 2], ids=lambda w: f"workers={w}")
    def test_counts_every_calling_api_by_code(self, workers):
        registry = CollectorRegistry()
        monitor = self.prometheus(registry)

        async def both_async(service):
            assert await service.apredict("ok") == "ok"
            return await service.ahandle(md.Request(b'"boom"'))

        with md.Service(
            self.model, name="m", version="3", monitors=[monitor], workers=workers
        ) as service:
            assert service.predict("ok") == "ok"
            with pytest.raises(md.PredictionError):
                service.predict("boom")
            assert service.submit("ok").result(timeout=5) == "ok"
            assert isinstance(service.submit("boom").exception(timeout=5), md.PredictionError)
            assert service.handle(md.Request(b'"ok"')).status == 200
            assert service.handle(md.Request(b"not json")).status == 400
            assert service.handle(md.Request(b'"boom"')).status == 500
            assert asyncio.run(both_async(service)).status == 500

        samples = _request_samples(registry)
        assert _codes(samples) == {"ok": 4, "prediction_error": 4, "decode_error": 1}
        labels = (("model", "m"), ("version", "3"))
        assert samples["modeldeploy_request_duration_seconds_count", labels] == 9
        assert samples["modeldeploy_inflight_requests", labels] == 0
        assert monitor.events == []

    def test_inflight_and_overload_through_the_recorder(self):
        registry = CollectorRegistry()
        model = GatedPredictor()
        labels = (("model", "m"), ("version", "3"))
        monitor = self.prometheus(registry)
        with md.Service(
            model, name="m", version="3", monitors=[monitor], workers=1, max_queue=1
        ) as service:
            held = service.submit(1)
            assert model.entered.wait(5)
            assert _request_samples(registry)["modeldeploy_inflight_requests", labels] == 1
            with pytest.raises(md.OverloadedError):
                service.predict(2)
            assert service.handle(md.Request(b"2")).status == 503
            model.open()
            assert held.result(timeout=5) == 1
        samples = _request_samples(registry)
        assert _codes(samples) == {"ok": 1, "overloaded": 2}
        assert samples["modeldeploy_inflight_requests", labels] == 0
        assert monitor.events == []

    @pytest.mark.parametrize("workers", [0, 2], ids=lambda w: f"workers={w}")
    def test_an_event_monitor_beside_it_still_gets_events(self, workers):
        registry = CollectorRegistry()
        prometheus, recording = self.prometheus(registry), RecordingMonitor()
        with md.Service(
            self.model, name="m", version="3", monitors=[prometheus, recording], workers=workers
        ) as service:
            service.predict("ok")
            service.submit("boom").exception(timeout=5)
            service.handle(md.Request(b"not json", headers={"x-request-id": "abc"}))
        assert [(e.model, e.version, e.code) for e in recording.finished] == [
            ("m", "3", "ok"),
            ("m", "3", "prediction_error"),
            ("m", "3", "decode_error"),
        ]
        assert [e.outcome for e in recording.finished] == ["ok", "error", "error"]
        assert [e.request_id for e in recording.started] == [
            e.request_id for e in recording.finished
        ]
        assert recording.finished[2].request_id == "abc"
        assert isinstance(recording.finished[1].error, md.PredictionError)
        assert [e.model for e in recording.loaded] == ["m"]
        assert _codes(_request_samples(registry)) == {
            "ok": 1,
            "prediction_error": 1,
            "decode_error": 1,
        }
        assert prometheus.events == []

    def watched(self, model, registry, recording):
        """One worker, a PrometheusMonitor on *registry* and *recording* beside it."""
        return md.Service(
            model,
            name="m",
            version="3",
            monitors=[self.prometheus(registry), recording],
            workers=1,
        )

    def test_a_cancelled_submit_leaves_nothing_in_flight(self):
        registry = CollectorRegistry()
        model = GatedPredictor()
        recording = RecordingMonitor()
        with self.watched(model, registry, recording) as service:
            held = service.submit(1)
            assert model.entered.wait(5)
            queued = service.submit(2)
            assert queued.cancel()
            model.open()
            held.result(timeout=5)
        assert len(recording.finished) == len(recording.started) == 2
        assert sorted(e.code for e in recording.finished) == ["cancelled", "ok"]
        labels = (("model", "m"), ("version", "3"))
        assert _request_samples(registry)["modeldeploy_inflight_requests", labels] == 0

    def test_a_cancelled_ahandle_leaves_nothing_in_flight(self):
        registry = CollectorRegistry()
        model = GatedPredictor()
        recording = RecordingMonitor()

        async def cancel_while_computing(service):
            task = asyncio.ensure_future(service.ahandle(md.Request(b"1")))
            await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        with self.watched(model, registry, recording) as service:
            asyncio.run(cancel_while_computing(service))
            model.open()
        assert len(recording.finished) == len(recording.started) == 1
        assert [e.code for e in recording.finished] == ["cancelled"]
        labels = (("model", "m"), ("version", "3"))
        assert _request_samples(registry)["modeldeploy_inflight_requests", labels] == 0

    @pytest.mark.parametrize("workers", [0, 1], ids=lambda w: f"workers={w}")
    def test_predict_and_submit_count_refusals_as_handle_does(self, workers):
        registry = CollectorRegistry()
        signature = md.Signature(inputs=[md.TensorSpec("x", "float32", (2,))])
        service = md.Service(
            EchoPredictor(signature=signature),
            name="m",
            version="3",
            monitors=[self.prometheus(registry)],
            workers=workers,
        ).start()
        with pytest.raises(md.ValidationError):
            service.predict([1.0, 2.0, 3.0])
        with pytest.raises(md.ValidationError):
            service.submit([1.0])
        service.close()
        with pytest.raises(md.NotReadyError):
            service.predict([1.0, 2.0])
        assert _codes(_request_samples(registry)) == {"validation_error": 2, "not_ready": 1}

    def test_a_validator_raising_anything_still_ends_the_request(self):
        class Hostile:
            def __array__(self, *args, **kwargs):
                raise RuntimeError("cannot convert")

        registry = CollectorRegistry()
        signature = md.Signature(inputs=[md.TensorSpec("x", "float32", (2,))])
        with md.Service(
            EchoPredictor(signature=signature),
            name="m",
            version="3",
            monitors=[self.prometheus(registry)],
            workers=0,
        ) as service:
            for _ in range(3):
                with pytest.raises(RuntimeError, match="cannot convert"):
                    service.predict(Hostile())
        samples = _request_samples(registry)
        assert _codes(samples) == {"internal": 3}
        assert samples["modeldeploy_inflight_requests", (("model", "m"), ("version", "3"))] == 0

    def test_an_apredict_timing_out_in_the_queue_is_a_deadline_not_a_cancel(self):
        model = GatedPredictor()
        recording = RecordingMonitor()

        async def time_out_while_queued(service):
            with pytest.raises(md.DeadlineExceededError):
                await service.apredict(2, timeout=0.05)

        with self.watched(model, CollectorRegistry(), recording) as service:
            held = service.submit(1)
            assert model.entered.wait(5)
            asyncio.run(time_out_while_queued(service))
            model.open()
            held.result(timeout=5)
        assert sorted(e.code for e in recording.finished) == ["deadline_exceeded", "ok"]


class TestPerItemLookup:
    def test_a_proxy_predictor_is_called_through_predict(self):
        """The direct per-item call is looked up on the class, not through __getattr__."""

        class Proxy:  # forwards every unknown attribute, as wrappers and mocks do
            signature = None

            def __init__(self, inner):
                self._inner = inner

            def __getattr__(self, name):
                return getattr(self._inner, name)

            def load(self):
                pass

            def predict(self, batch):
                return [x * 2 for x in batch]

        with md.Service(Proxy(md.predictor(lambda x: "wrong")), workers=0) as service:
            assert service.predict(1) == 2


class TestOneAtATimeWorkers:
    """Workers without batching or batch observers take the one-job loop."""

    @staticmethod
    def model(x):
        if x == "boom":
            raise ValueError("boom")
        if x == "typed":
            raise md.ValidationError("model says no")
        return x

    def test_every_api_gets_its_answer_and_its_error(self):
        async def both(service):
            assert await service.apredict("ok") == "ok"
            with pytest.raises(md.PredictionError):
                await service.apredict("boom")
            with pytest.raises(md.ValidationError, match="model says no"):
                await service.apredict("typed")
            ok = await service.ahandle(md.Request(b'"ok"'))
            bad = await service.ahandle(md.Request(b'"boom"'))
            return ok.status, bad.status

        with md.Service(self.model, workers=1) as service:
            assert service.predict("ok") == "ok"
            assert isinstance(service.submit("boom").exception(timeout=5), md.PredictionError)
            assert asyncio.run(both(service)) == (200, 500)

    def test_an_ahandle_with_a_recorder_ends_its_request(self):
        registry = CollectorRegistry()

        class RequestsOnly(PrometheusMonitor):
            on_batch = None  # no batch observer: the one-job loop

        with md.Service(
            self.model, name="m", version="3", monitors=[RequestsOnly(registry)], workers=1
        ) as service:
            assert asyncio.run(service.ahandle(md.Request(b'"ok"'))).status == 200
        samples = _request_samples(registry)
        assert _codes(samples) == {"ok": 1}
        assert samples["modeldeploy_inflight_requests", (("model", "m"), ("version", "3"))] == 0


class TestInlineEdges:
    def test_a_deadline_already_past_is_never_computed(self):
        calls = []
        with md.Service(calls.append, workers=0) as service:
            response = service.handle(md.Request(b"1", deadline=0.0))
        assert response.status == 504
        assert calls == []

    def test_a_typed_error_from_a_model_predictor_passes_through(self):
        class Model:
            signature = None

            def load(self):
                pass

            def predict(self, batch):
                raise md.ValidationError("not for this model")

        with md.Service(Model(), workers=0) as service:
            assert service.handle(md.Request(b"1")).status == 422

    def test_a_serializer_bug_is_a_bare_logged_500(self, caplog):
        class Broken:
            name = "broken"
            media_type = "application/json"
            media_types = ("application/json",)

            def loads(self, data):
                return 1

            def dumps(self, value):
                raise RuntimeError("serializer bug")

        with md.Service(lambda x: x, serializers=[Broken()], workers=0) as service:
            response = service.handle(md.Request(b"1"))
        assert response.status == 500
        assert json.loads(response.body)["error"]["message"] == "internal error"
        assert b"serializer bug" not in response.body
        assert "unexpected error handling request" in caplog.text
