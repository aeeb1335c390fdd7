"""modeldeploy.adapters.grpc under a real grpcio server, called by tritonclient.grpc."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from hypothesis import given
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException

import modeldeploy as md
from modeldeploy import v2
from modeldeploy._proto.inference import grpc_service_pb2 as pb
from modeldeploy._proto.inference import grpc_service_pb2_grpc as pb_grpc
from modeldeploy.adapters import grpc as md_grpc
from modeldeploy.http import HTTPApp
from modeldeploy.testing import EchoPredictor, GatedPredictor
from tests import docs, strategies
from tests.adapters import app as e2e_app
from tests.adapters import conftest as e2e_conftest

pytestmark = pytest.mark.integration

DATATYPES = [
    ("BOOL", np.array([True, False, True])),
    ("INT8", np.array([-128, 0, 127], np.int8)),
    ("INT16", np.array([-(2**15), 2**15 - 1], np.int16)),
    ("INT32", np.array([-(2**31), 2**31 - 1], np.int32)),
    ("INT64", np.array([-(2**63), 2**63 - 1], np.int64)),
    ("UINT8", np.array([0, 255], np.uint8)),
    ("UINT16", np.array([0, 2**16 - 1], np.uint16)),
    ("UINT32", np.array([0, 2**32 - 1], np.uint32)),
    ("UINT64", np.array([0, 2**64 - 1], np.uint64)),
    ("FP16", np.array([0.5, -np.inf, np.nan], np.float16)),
    ("FP32", np.array([1.5, np.finfo(np.float32).max], np.float32)),
    ("FP64", np.array([np.pi, -0.0, np.nan], np.float64)),
    ("BYTES", np.array([b"", b"\x00\xff", "é".encode()], dtype=object)),
]

IRIS_SIGNATURE = md.Signature(
    [md.TensorSpec("x", "float32", (-1, 4))],
    [md.TensorSpec("label", "int64", (-1,)), md.TensorSpec("proba", "float32", (-1, 3))],
)
WEIGHTS = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def iris(x: np.ndarray) -> dict[str, np.ndarray]:
    """A linear classifier returning named outputs."""
    logits = x @ WEIGHTS
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"label": proba.argmax(axis=1).astype(np.int64), "proba": proba.astype(np.float32)}


def unconvertible(x: Any) -> Any:
    """A model whose output fails in a way no codec expects."""

    class Weird:
        def __array__(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals")

    return {"y": Weird()}


def boom(x: Any) -> Any:
    raise ZeroDivisionError("secret model detail")


def tensor(name: str, array: np.ndarray) -> tgrpc.InferInput:
    infer_input = tgrpc.InferInput(name, list(array.shape), v2.dtype_to_datatype(array.dtype))
    infer_input.set_data_from_numpy(array)
    return infer_input


def status(info: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(info.value.status()).removeprefix("StatusCode.")


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert strategies.nan_equal(got, want), (got, want)


class Served:
    """A started grpc server and the clients that reach it."""

    def __init__(self, target: Any, **kwargs: Any) -> None:
        self.server, self.port = md_grpc.server(target, **kwargs)
        self.server.start()
        self.client = tgrpc.InferenceServerClient(f"127.0.0.1:{self.port}")
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.max_receive_message_length", -1)]
        )
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def close(self) -> None:
        self.client.close()
        self.channel.close()
        self.server.stop(grace=None).wait()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    services = [
        md.Service(EchoPredictor(), workers=2),
        md.Service(md.predictor(iris, signature=IRIS_SIGNATURE), name="iris", version="2"),
        md.Service(EchoPredictor(), name="small", max_body_size=4096, workers=0),
        md.Service(boom, name="boom", workers=0),
        md.Service(unconvertible, name="weird", workers=0),
    ]
    for service in services:
        service.start()
    running = Served(services)
    yield running
    running.close()
    for service in services:
        service.close()


class TestHealthAndMetadata:
    def test_live_and_ready(self, served: Served) -> None:
        assert served.client.is_server_live()
        assert served.client.is_server_ready()
        assert served.client.is_model_ready("echo")
        assert served.client.is_model_ready("iris", "2")

    def test_unknown_model_or_version_is_not_found(self, served: Served) -> None:
        for name, version in [("nope", ""), ("iris", "1")]:
            with pytest.raises(InferenceServerException) as info:
                served.client.is_model_ready(name, version)
            assert status(info) == "NOT_FOUND"
            with pytest.raises(InferenceServerException) as info:
                served.client.get_model_metadata(name, version)
            assert status(info) == "NOT_FOUND"

    def test_server_metadata(self, served: Served) -> None:
        metadata = served.client.get_server_metadata()
        assert (metadata.name, metadata.version) == ("modeldeploy", md.__version__)
        assert list(metadata.extensions) == list(v2.EXTENSIONS)

    def test_model_metadata_comes_from_the_signature(self, served: Served) -> None:
        metadata = served.client.get_model_metadata("iris", as_json=True)
        assert metadata == {
            "name": "iris",
            "versions": ["2"],
            "platform": "modeldeploy",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": ["-1"]},
                {"name": "proba", "datatype": "FP32", "shape": ["-1", "3"]},
            ],
        }

    def test_not_started_service(self) -> None:
        cold = md.Service(EchoPredictor(), name="cold")
        running = Served([cold])
        try:
            assert running.client.is_server_live()
            assert not running.client.is_server_ready()
            assert not running.client.is_model_ready("cold")
            with pytest.raises(InferenceServerException, match=r"not ready|is new") as info:
                running.client.infer("cold", [tensor("x", np.ones(2))])
            assert status(info) == "UNAVAILABLE"
        finally:
            running.close()
        cold.close()
        assert not md_grpc.servicer(cold).ServerLive(pb.ServerLiveRequest(), None).live


class TestInfer:
    @given(strategies.v2_tensors())
    def test_any_tensor_round_trips(self, served: Served, array: np.ndarray) -> None:
        result = served.client.infer("echo", [tensor("x", array)])
        assert_same(result.as_numpy("output0"), array)

    def test_every_datatype_in_one_request(self, served: Served) -> None:
        inputs = [tensor(name.lower(), array) for name, array in DATATYPES]
        result = served.client.infer("echo", inputs)
        outputs = result.get_response().outputs
        assert [(o.name, o.datatype) for o in outputs] == [(n.lower(), n) for n, _ in DATATYPES]
        for name, array in DATATYPES:
            assert_same(result.as_numpy(name.lower()), array)

    @pytest.mark.parametrize("shape", [[0], [3, 0, 2], [], [1, 1, 1, 1, 1]])
    def test_empty_and_odd_shapes(self, served: Served, shape: list[int]) -> None:
        array = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
        result = served.client.infer("echo", [tensor("x", array)])
        assert_same(result.as_numpy("output0"), array)

    def test_large_tensor_past_grpc_default_limit(self, served: Served) -> None:
        # 8 MiB: over grpc's default 4 MiB receive limit, under the service's 64 MiB
        array = np.random.default_rng(1).standard_normal((1024, 2048)).astype(np.float32)
        result = served.client.infer("echo", [tensor("x", array)])
        assert_same(result.as_numpy("output0"), array)

    def test_typed_contents(self, served: Served) -> None:
        request = pb.ModelInferRequest(model_name="echo", id="typed")
        request.inputs.add(name="i", datatype="INT16", shape=[2, 2]).contents.int_contents[:] = [
            -1,
            2,
            -3,
            4,
        ]
        request.inputs.add(name="f", datatype="FP64", shape=[1]).contents.fp64_contents.append(
            0.25
        )
        request.inputs.add(name="b", datatype="BYTES", shape=[2]).contents.bytes_contents[:] = [
            b"a",
            b"bc",
        ]
        response = served.stub.ModelInfer(request)
        result = tgrpc.InferResult(
            triton_pb.ModelInferResponse.FromString(response.SerializeToString())
        )
        assert response.id == "typed"
        assert_same(result.as_numpy("i"), np.array([[-1, 2], [-3, 4]], np.int16))
        assert_same(result.as_numpy("f"), np.array([0.25]))
        assert_same(result.as_numpy("b"), np.array([b"a", b"bc"], dtype=object))

    def test_named_outputs_id_and_version(self, served: Served) -> None:
        x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
        want = iris(x)
        result = served.client.infer(
            "iris",
            [tensor("x", x)],
            model_version="2",
            request_id="req-7",
            outputs=[tgrpc.InferRequestedOutput("proba"), tgrpc.InferRequestedOutput("label")],
        )
        response = result.get_response()
        assert (response.model_name, response.model_version, response.id) == ("iris", "2", "req-7")
        assert [o.name for o in response.outputs] == ["proba", "label"]
        assert_same(result.as_numpy("proba"), want["proba"])
        assert_same(result.as_numpy("label"), want["label"])

        only = served.client.infer(
            "iris", [tensor("x", x)], outputs=[tgrpc.InferRequestedOutput("label")]
        )
        assert [o.name for o in only.get_response().outputs] == ["label"]
        assert only.get_response().id == ""

    def test_another_datatype_is_refused_not_cast(self, served: Served) -> None:
        x = np.arange(8, dtype=np.float64).reshape(2, 4)  # FP64 in, the model takes FP32
        with pytest.raises(InferenceServerException) as info:
            served.client.infer("iris", [tensor("x", x)])
        assert status(info) == "INVALID_ARGUMENT"
        assert info.value.message() == "input 'x': datatype FP64 does not match the model's FP32"


class TestErrors:
    def test_unknown_model_and_version(self, served: Served) -> None:
        with pytest.raises(InferenceServerException, match="no model named 'nope'") as info:
            served.client.infer("nope", [tensor("x", np.ones(2))])
        assert status(info) == "NOT_FOUND"
        with pytest.raises(InferenceServerException, match="no version '9'") as info:
            served.client.infer("iris", [tensor("x", np.ones((1, 4)))], model_version="9")
        assert status(info) == "NOT_FOUND"

    @pytest.mark.parametrize(
        ("inputs", "outputs", "message"),
        [
            ({"x": np.ones((2, 5), np.float32)}, None, "x"),
            ({"z": np.ones((2, 4), np.float32)}, None, "unexpected input 'z'"),
            ({"x": np.ones((2, 4), np.float32), "w": np.ones(1)}, None, "unexpected input"),
            ({"x": np.array([["a"] * 4], dtype=object)}, None, "x"),
            ({"x": np.ones((2, 4), np.float32)}, ["nope"], "unknown output 'nope'"),
        ],
    )
    def test_bad_input_is_invalid_argument(
        self, served: Served, inputs: dict[str, np.ndarray], outputs: Any, message: str
    ) -> None:
        requested = [tgrpc.InferRequestedOutput(o) for o in outputs or []]
        with pytest.raises(InferenceServerException, match=message) as info:
            served.client.infer(
                "iris", [tensor(k, a) for k, a in inputs.items()], outputs=requested or None
            )
        assert status(info) == "INVALID_ARGUMENT"

    def test_malformed_message_is_invalid_argument(self, served: Served) -> None:
        request = pb.ModelInferRequest(model_name="echo")
        request.inputs.add(name="x", datatype="FP32", shape=[3])
        request.raw_input_contents.append(b"\x00" * 8)  # 3 floats need 12 bytes
        with pytest.raises(grpc.RpcError) as info:
            served.stub.ModelInfer(request)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "needs 12 bytes" in info.value.details()

    def test_per_model_size_limit(self, served: Served) -> None:
        with pytest.raises(InferenceServerException, match="over the limit of 4096") as info:
            served.client.infer("small", [tensor("x", np.zeros(2048, np.float32))])
        assert status(info) == "RESOURCE_EXHAUSTED"
        small = served.client.infer("small", [tensor("x", np.zeros(16, np.float32))])
        assert small.as_numpy("output0").shape == (16,)

    def test_server_refuses_messages_over_the_services_limit(self) -> None:
        service = md.Service(EchoPredictor(), max_body_size=4096, workers=0).start()
        running = Served(service)
        try:
            with pytest.raises(InferenceServerException) as info:
                running.client.infer("echo", [tensor("x", np.zeros(4096, np.float32))])
            assert status(info) == "RESOURCE_EXHAUSTED"
            # grpc refused it before our servicer saw it
            assert "over the limit" not in str(info.value)
            assert service._predictor.batches == []  # type: ignore[attr-defined]
        finally:
            running.close()
            service.close()

    def test_model_failure_is_internal_without_detail(self, served: Served) -> None:
        with pytest.raises(InferenceServerException) as info:
            served.client.infer("boom", [tensor("x", np.ones(2))])
        assert status(info) == "INTERNAL"
        assert info.value.message() == "model 'boom' failed: ZeroDivisionError"

    def test_unexpected_exception_is_internal_error_and_logged(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        with (
            caplog.at_level(logging.ERROR, logger="modeldeploy"),
            pytest.raises(InferenceServerException) as info,
        ):
            served.client.infer("weird", [tensor("x", np.ones(2))])
        assert status(info) == "INTERNAL"
        assert info.value.message() == "internal error"
        # the one request path logs it, for gRPC as for HTTP
        record = next(r for r in caplog.records if "unexpected error handling" in r.message)
        assert record.exc_info is not None and "secret internals" in str(record.exc_info[1])

    def test_overload_is_unavailable_with_retry_after(self) -> None:
        gated = GatedPredictor(timeout=20)
        service = md.Service(gated, workers=1, max_queue=1, retry_after=3).start()
        running = Served(service)
        done = threading.Event()
        results: list[Any] = []

        def callback(result: Any, error: Any) -> None:
            results.append((result, error))
            done.set()

        try:
            running.client.async_infer("gated", [tensor("x", np.ones(2))], callback)
            assert gated.entered.wait(10)
            with pytest.raises(InferenceServerException) as info:
                running.client.infer("gated", [tensor("x", np.ones(2))])
            assert status(info) == "UNAVAILABLE"
            request = pb.ModelInferRequest(model_name="gated")
            request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(
                1.0
            )
            with pytest.raises(grpc.RpcError) as rpc_info:
                running.stub.ModelInfer(request)
            assert rpc_info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert ("retry-after", "3") in tuple(rpc_info.value.trailing_metadata())
        finally:
            gated.open()
            assert done.wait(10)
            running.close()
            service.close()
        ((result, error),) = results
        assert error is None
        assert_same(result.as_numpy("output0"), np.ones(2))

    def test_client_deadline_is_deadline_exceeded(self) -> None:
        gated = GatedPredictor(timeout=20)
        service = md.Service(gated, workers=1).start()
        running = Served(service)
        try:
            with pytest.raises(InferenceServerException) as info:
                running.client.infer("gated", [tensor("x", np.ones(2))], client_timeout=0.3)
            assert status(info) == "DEADLINE_EXCEEDED"
        finally:
            gated.open()
            running.close()
            service.close()


class FakeContext:
    """A servicer context with a chosen deadline; abort() raises like grpc's."""

    class AbortedError(Exception):
        pass

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def time_remaining(self) -> float | None:
        return self.remaining

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise self.AbortedError


class TestDeadline:
    """The prediction's timeout is the call's remaining time or the service's, the tighter."""

    @pytest.fixture
    def gated(self) -> Iterator[tuple[GatedPredictor, md.Service]]:
        gated = GatedPredictor(timeout=20)
        service = md.Service(gated, workers=1, timeout=None).start()
        yield gated, service
        gated.open()
        service.close()

    def request(self) -> Any:
        request = pb.ModelInferRequest(model_name="gated")
        request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)
        return request

    @pytest.mark.parametrize("remaining", [0.05, 0.0, -1.0])
    def test_call_deadline_bounds_the_prediction(
        self, gated: tuple[GatedPredictor, md.Service], remaining: float
    ) -> None:
        _, service = gated
        context = FakeContext(remaining)
        with pytest.raises(FakeContext.AbortedError):
            md_grpc.servicer(service).ModelInfer(self.request(), context)
        assert context.code is grpc.StatusCode.DEADLINE_EXCEEDED

    def test_service_timeout_when_tighter(self) -> None:
        gated = GatedPredictor(timeout=20)
        service = md.Service(gated, workers=1, timeout=0.05).start()
        context = FakeContext(3600.0)
        try:
            with pytest.raises(FakeContext.AbortedError):
                md_grpc.servicer(service).ModelInfer(self.request(), context)
            assert context.code is grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            gated.open()
            service.close()

    @pytest.mark.parametrize("remaining", [None, float(threading.TIMEOUT_MAX) * 2])
    def test_no_call_deadline_uses_the_service_default(
        self, gated: tuple[GatedPredictor, md.Service], remaining: float | None
    ) -> None:
        predictor, service = gated
        predictor.open()
        response = md_grpc.servicer(service).ModelInfer(self.request(), FakeContext(remaining))
        assert np.frombuffer(response.raw_output_contents[0], "<f4").tolist() == [1.0]


class TestFactories:
    def test_servicer_is_the_generated_servicer(self) -> None:
        service = md.Service(EchoPredictor())
        answer = md_grpc.servicer(service)
        assert isinstance(answer, pb_grpc.GRPCInferenceServiceServicer)
        assert dict(answer.services) == {"echo": service}

    def test_an_http_app_lends_its_services(self) -> None:
        services = [md.Service(EchoPredictor()), md.Service(EchoPredictor(), name="other")]
        answer = md_grpc.servicer(HTTPApp(services))
        assert dict(answer.services) == {"echo": services[0], "other": services[1]}

    def test_names_must_be_distinct(self) -> None:
        with pytest.raises(ValueError, match="two services are named 'echo'"):
            md_grpc.servicer([md.Service(EchoPredictor()), md.Service(EchoPredictor())])
        with pytest.raises(ValueError, match="at least one"):
            md_grpc.servicer([])
        with pytest.raises(TypeError, match="expected a Service"):
            md_grpc.servicer([object()])  # type: ignore[list-item]

    def test_long_names_are_cut_in_messages(self) -> None:
        context = FakeContext(None)
        request = pb.ModelMetadataRequest(name="n" * 10_000)
        with pytest.raises(FakeContext.AbortedError):
            md_grpc.servicer(md.Service(EchoPredictor())).ModelMetadata(request, context)
        assert context.code is grpc.StatusCode.NOT_FOUND
        assert len(context.details) < 200

    def test_server_options(self) -> None:
        with pytest.raises(ValueError, match="max_message_length"):
            md_grpc.server(md.Service(EchoPredictor()), max_message_length=-1)


# the end-to-end app of tests/adapters/app.py served over gRPC by a process of its own
GRPC_SERVER = """
import sys
from modeldeploy.adapters.grpc import server
from tests.adapters.app import app

for service in app.services.values():
    service.start()
grpc_server, port = server(app, f"127.0.0.1:{sys.argv[1]}")
grpc_server.start()
grpc_server.wait_for_termination()
"""


@pytest.fixture(scope="module")
def process() -> Iterator[tgrpc.InferenceServerClient]:
    """A grpc server process started here, ready once ServerReady says so, stopped by PID."""
    port = e2e_conftest.free_port()
    argv = [sys.executable, "-c", GRPC_SERVER, str(port)]
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        with e2e_conftest.spawn("the grpc server", argv, port, lambda: _grpc_ready(client)):
            yield client
    finally:
        client.close()


def _grpc_ready(client: tgrpc.InferenceServerClient) -> bool:
    try:
        return bool(client.is_server_ready(client_timeout=2))
    except InferenceServerException:
        return False


class TestServerProcess:
    """The shared e2e app (tests/adapters/app.py) behind a grpc server in its own process."""

    def test_health_and_metadata(self, process: tgrpc.InferenceServerClient) -> None:
        assert process.is_server_live() and process.is_model_ready("mlp")
        metadata = process.get_model_metadata("mlp", as_json=True)
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["4"]}]
        assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["3"]}]

    def test_mlp(self, process: tgrpc.InferenceServerClient) -> None:
        x = np.random.default_rng(3).standard_normal(4).astype(np.float32)
        result = process.infer("mlp", [tensor("x", x)], request_id="m1")
        assert result.get_response().id == "m1"
        np.testing.assert_allclose(result.as_numpy("y"), e2e_app.mlp(x), rtol=1e-6)

    def test_every_datatype(self, process: tgrpc.InferenceServerClient) -> None:
        result = process.infer("echo", [tensor(n.lower(), a) for n, a in DATATYPES])
        for name, array in DATATYPES:
            assert_same(result.as_numpy(name.lower()), array)

    def test_errors(self, process: tgrpc.InferenceServerClient) -> None:
        with pytest.raises(InferenceServerException) as info:
            process.infer("mlp", [tensor("x", np.ones(5, np.float32))])
        assert status(info) == "INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException) as info:
            process.infer("nope", [tensor("x", np.ones(4, np.float32))])
        assert status(info) == "NOT_FOUND"
        with pytest.raises(InferenceServerException) as info:
            process.infer("slow", [tensor("x", np.array(5.0))], client_timeout=0.2)
        assert status(info) == "DEADLINE_EXCEEDED"

    def test_message_limit_from_the_app(self, process: tgrpc.InferenceServerClient) -> None:
        too_big = np.zeros(e2e_app.MAX_BODY_SIZE // 4 + 1, np.float32)
        with pytest.raises(InferenceServerException) as info:
            process.infer("echo", [tensor("x", too_big)])
        assert status(info) == "RESOURCE_EXHAUSTED"


class TestDocs(docs.PageExamples):
    page = "adapters/grpc.md"
    minimum = 2
