"""One request path for every protocol: /predict, V2 REST and V2 gRPC, tried as clients do.

tritonclient (HTTP against a real uvicorn, gRPC against a real grpcio server) sends
optional inputs, wrong datatypes and non-UTF-8 BYTES; a malformed request of each
protocol is observed by the monitors the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

import modeldeploy as md
from modeldeploy._proto.inference import grpc_service_pb2_grpc as pb_grpc
from modeldeploy.adapters import grpc as md_grpc
from modeldeploy.http import HTTPApp
from modeldeploy.monitors import PrometheusMonitor
from modeldeploy.testing import RecordingMonitor
from tests import pipeline_app
from tests.adapters.conftest import free_port, http_ready, spawn

pytestmark = pytest.mark.integration

OPTIONAL = ("n", "tag")
SUBSETS = [s for k in range(3) for s in itertools.combinations(OPTIONAL, k)]
X = np.array([1.5, -2.0, 3.25], dtype=np.float32)
VALUES = {"n": np.array([7, 2**40], dtype=np.int64), "tag": np.array([b"a", b"bc"], dtype=object)}
DATATYPES = {"n": "INT64", "tag": "BYTES"}


@pytest.fixture(scope="module")
def http_client() -> Iterator[thttp.InferenceServerClient]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.pipeline_app:asgi_app", "--port", str(port),
            "--host", "127.0.0.1", "--lifespan", "on", "--log-level", "warning"]  # fmt: skip
    with spawn("uvicorn", argv, port, lambda: http_ready(port)):
        client = thttp.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30)
        yield client
        client.close()


@pytest.fixture(scope="module")
def grpc_client() -> Iterator[tgrpc.InferenceServerClient]:
    services = pipeline_app.services([])
    for service in services:
        service.start()
    server, port = md_grpc.server(services)
    server.start()
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
    yield client
    client.close()
    server.stop(grace=None).wait()
    for service in services:
        service.close()


def http_input(name: str, array: np.ndarray, datatype: str, binary: bool) -> thttp.InferInput:
    tensor = thttp.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def grpc_input(name: str, array: np.ndarray, datatype: str) -> tgrpc.InferInput:
    tensor = tgrpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def names(got: np.ndarray) -> list[str]:
    return [g.decode() if isinstance(g, bytes) else g for g in got.tolist()]


class TestOptionalInputs:
    def test_metadata_says_which_inputs_are_optional(
        self, http_client: thttp.InferenceServerClient
    ) -> None:
        inputs = http_client.get_model_metadata("opt")["inputs"]
        assert [(i["name"], i["datatype"], i.get("optional", False)) for i in inputs] == [
            ("x", "FP32", False), ("n", "INT64", True), ("tag", "BYTES", True)
        ]  # fmt: skip

    @pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
    @pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(("x", *s)))
    def test_http_every_subset(
        self, http_client: thttp.InferenceServerClient, subset: tuple[str, ...], binary: bool
    ) -> None:
        inputs = [http_input("x", X, "FP32", binary)]
        inputs += [http_input(n, VALUES[n], DATATYPES[n], binary) for n in subset]
        result = http_client.infer("opt", inputs)
        np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
        assert names(result.as_numpy("got")) == sorted(("x", *subset))

    @pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(("x", *s)))
    def test_grpc_every_subset(
        self, grpc_client: tgrpc.InferenceServerClient, subset: tuple[str, ...]
    ) -> None:
        inputs = [grpc_input("x", X, "FP32")]
        inputs += [grpc_input(n, VALUES[n], DATATYPES[n]) for n in subset]
        result = grpc_client.infer("opt", inputs)
        np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
        assert names(result.as_numpy("got")) == sorted(("x", *subset))

    def test_the_required_input_is_still_required(
        self,
        http_client: thttp.InferenceServerClient,
        grpc_client: tgrpc.InferenceServerClient,
    ) -> None:
        with pytest.raises(InferenceServerException, match="missing input 'x'") as info:
            http_client.infer("opt", [http_input("n", VALUES["n"], "INT64", False)])
        assert info.value.status() == "400"
        with pytest.raises(InferenceServerException, match="missing input 'x'") as info:
            grpc_client.infer("opt", [grpc_input("n", VALUES["n"], "INT64")])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"


WRONG = {"INT32": np.int32, "INT64": np.int64, "FP64": np.float64, "FP16": np.float16}
# 2**61 is what an INT64 -> FP32 cast used to change silently
SENT = {
    name: np.array([2**61 if name == "INT64" else 3, 4]).astype(t) for name, t in WRONG.items()
}


class TestStrictDatatypes:
    """A tensor of another datatype than the signature's is refused, never cast."""

    @pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
    @pytest.mark.parametrize("datatype", sorted(WRONG))
    def test_http(
        self, http_client: thttp.InferenceServerClient, datatype: str, binary: bool
    ) -> None:
        x = SENT[datatype]
        with pytest.raises(InferenceServerException) as info:
            http_client.infer("opt", [http_input("x", x, datatype, binary)])
        assert info.value.status() == "400"
        assert info.value.message() == (
            f"input 'x': datatype {datatype} does not match the model's FP32"
        )

    @pytest.mark.parametrize("datatype", sorted(WRONG))
    def test_grpc(self, grpc_client: tgrpc.InferenceServerClient, datatype: str) -> None:
        x = SENT[datatype]
        with pytest.raises(InferenceServerException) as info:
            grpc_client.infer("opt", [grpc_input("x", x, datatype)])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert info.value.message() == (
            f"input 'x': datatype {datatype} does not match the model's FP32"
        )

    def test_an_optional_input_is_checked_too(
        self, http_client: thttp.InferenceServerClient
    ) -> None:
        n = np.array([1, 2], dtype=np.int32)
        with pytest.raises(InferenceServerException, match="'n': datatype INT32 does not match"):
            http_client.infer(
                "opt", [http_input("x", X, "FP32", False), http_input("n", n, "INT32", False)]
            )


class TestBytesOutputs:
    NOT_UTF8 = np.array([b"\xff\xfe", b"ok", b"\x00"], dtype=object)

    def test_as_json_is_a_406_that_says_how(
        self, http_client: thttp.InferenceServerClient
    ) -> None:
        with pytest.raises(InferenceServerException) as info:
            http_client.infer(
                "raw",
                [http_input("x", self.NOT_UTF8, "BYTES", True)],
                outputs=[thttp.InferRequestedOutput("output0", binary_data=False)],
            )
        assert info.value.status() == "406"
        assert "binary_data" in info.value.message()

    def test_as_binary_arrives_intact(
        self,
        http_client: thttp.InferenceServerClient,
        grpc_client: tgrpc.InferenceServerClient,
    ) -> None:
        result = http_client.infer(
            "raw",
            [http_input("x", self.NOT_UTF8, "BYTES", True)],
            outputs=[thttp.InferRequestedOutput("output0", binary_data=True)],
        )
        assert result.as_numpy("output0").tolist() == self.NOT_UTF8.tolist()
        result = grpc_client.infer("raw", [grpc_input("x", self.NOT_UTF8, "BYTES")])
        assert result.as_numpy("output0").tolist() == self.NOT_UTF8.tolist()

    def test_utf8_as_json(self, http_client: thttp.InferenceServerClient) -> None:
        text = np.array(["\u00e9t\u00e9".encode(), b"b"], dtype=object)
        result = http_client.infer(
            "raw",
            [http_input("x", text, "BYTES", False)],
            outputs=[thttp.InferRequestedOutput("output0", binary_data=False)],
        )
        assert [t.encode() if isinstance(t, str) else t for t in result.as_numpy("output0")] == [
            "\u00e9t\u00e9".encode(), b"b"
        ]  # fmt: skip


class TestOneObservation:
    """A malformed request is seen by the monitors alike, whatever its protocol."""

    def test_malformed_request_of_each_protocol(self) -> None:
        from prometheus_client import CollectorRegistry

        recorder = RecordingMonitor()
        registry = CollectorRegistry()
        services = pipeline_app.services([recorder, PrometheusMonitor(registry=registry)])
        app = HTTPApp(services, registry=registry)
        app.start_services()
        server, port = md_grpc.server(services)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            predict = app("POST", "/models/opt/predict", {"content-type": "application/json"},
                          b"{not json")  # fmt: skip
            rest = app("POST", "/v2/models/opt/infer", {}, b"{not json")
            # a message that parses, but breaks the protocol: no tensor data at all
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            from modeldeploy._proto.inference import grpc_service_pb2 as pb

            request = pb.ModelInferRequest(model_name="opt")
            request.inputs.add(name="x", datatype="FP32", shape=[2])
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request)
        finally:
            channel.close()
            server.stop(grace=None).wait()
            for service in services:
                service.close()
        assert (predict.status, rest.status) == (400, 400)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert [(e.model, e.code) for e in recorder.finished] == [("opt", "decode_error")] * 3
        assert len(recorder.started) == 3
        count = registry.get_sample_value(
            "modeldeploy_requests_total", {"model": "opt", "version": "1", "code": "decode_error"}
        )
        assert count == 3


class _Watcher(RecordingMonitor):
    def __init__(self) -> None:
        super().__init__()
        self.predictions: list[Any] = []

    def on_predictions(self, event: Any) -> None:
        self.predictions.append(event)


class TestStagesAndData:
    """The pipeline hands monitors the request's headers, stage timings and data."""

    @pytest.mark.parametrize("workers", [0, 2])
    def test_timings_headers_and_predictions(self, workers: int) -> None:
        watcher = _Watcher()
        service = md.Service(lambda x: x * 3, workers=workers, monitors=[watcher])
        with service:
            response = service.handle(
                md.Request(b"[1, 2]", headers={"traceparent": "00-abc-def-01"})
            )
        assert (response.status, response.body) == (200, b"[1,2,1,2,1,2]")
        assert watcher.started[0].headers["traceparent"] == "00-abc-def-01"
        timings = watcher.finished[0].timings
        assert timings is not None and min(timings) >= 0
        assert sum(timings) <= watcher.finished[0].latency_s + 1e-6
        assert timings.predict_s > 0 and timings.encode_s > 0
        assert [(p.inputs, p.outputs) for p in watcher.predictions] == [([[1, 2]], [[1, 2] * 3])]

    @pytest.mark.parametrize("entry", ["ahandle", "handle_then"])
    def test_the_asyncio_paths_time_the_stages_too(self, entry: str) -> None:
        # what modeldeploy serve runs for a service with worker threads
        watcher = _Watcher()
        service = md.Service(lambda x: x * 3, workers=2, monitors=[watcher])

        async def call(request: md.Request) -> md.Response:
            if entry == "ahandle":
                return await service.ahandle(request)
            answered: asyncio.Future[md.Response] = asyncio.get_running_loop().create_future()
            service.handle_then(request, None, answered.set_result)
            return await answered

        with service:
            ok = asyncio.run(call(md.Request(b"[1, 2]")))
            bad = asyncio.run(call(md.Request(b"[1,")))
        assert (ok.status, bad.status) == (200, 400)
        timings = watcher.finished[0].timings
        assert timings is not None and min(timings) >= 0
        assert sum(timings) <= watcher.finished[0].latency_s + 1e-6
        assert timings.predict_s > 0 and timings.encode_s > 0
        # refused while decoding: timed, no stage reached
        assert watcher.finished[1].code == "decode_error"
        assert watcher.finished[1].timings == (0.0, 0.0, 0.0, 0.0)

    def test_a_model_error_on_the_asyncio_path_has_its_stages(self) -> None:
        watcher = _Watcher()

        def broken(x: Any) -> Any:
            raise ValueError("no")

        service = md.Service(broken, workers=1, monitors=[watcher])
        with service:
            response = asyncio.run(service.ahandle(md.Request(b"[1]")))
        assert response.status == 500
        timings = watcher.finished[0].timings
        assert timings is not None
        assert timings.decode_s > 0 and timings.predict_s == timings.encode_s == 0.0

    def test_a_batch_is_one_predictions_event(self) -> None:
        watcher = _Watcher()
        gated = md.testing.GatedPredictor(lambda x: x + 1)
        service = md.Service(
            gated, workers=1, max_batch_size=8, max_batch_delay=0.5, monitors=[watcher]
        )
        with service:
            futures = [service.submit(i) for i in range(3)]
            gated.open()
            assert [f.result(timeout=10) for f in futures] == [1, 2, 3]
        events = [(list(p.inputs), list(p.outputs)) for p in watcher.predictions]
        assert sorted(x for inputs, _ in events for x in inputs) == [0, 1, 2]
        assert all(len(i) == len(o) for i, o in events)
