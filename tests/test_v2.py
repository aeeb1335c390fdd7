"""The Open Inference Protocol codec: modeldeploy.v2, checked against tritonclient."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException

from modeldeploy import v2
from modeldeploy._proto.inference import grpc_service_pb2 as pb
from modeldeploy._proto.inference import grpc_service_pb2_grpc as pb_grpc
from modeldeploy.errors import (
    DecodeError,
    EncodeError,
    ModelDeployError,
    NotAcceptableError,
    NotReadyError,
    PayloadTooLargeError,
    ValidationError,
)
from modeldeploy.messages import Signature, TensorSpec

from . import strategies

ALL_DATATYPES = [
    ("BOOL", "bool"),
    ("INT8", "int8"),
    ("INT16", "int16"),
    ("INT32", "int32"),
    ("INT64", "int64"),
    ("UINT8", "uint8"),
    ("UINT16", "uint16"),
    ("UINT32", "uint32"),
    ("UINT64", "uint64"),
    ("FP16", "float16"),
    ("FP32", "float32"),
    ("FP64", "float64"),
    ("BYTES", "object"),
]


@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson and again with the stdlib json fallback."""
    if request.param == "stdlib":
        monkeypatch.setattr(v2, "orjson", None)
    return str(request.param)


# -- helpers: build bodies the way a V2 client does --------------------------------------


def triton_request(
    arrays: dict[str, np.ndarray], *, binary: bool, outputs: list[Any] | None = None, **kw: Any
) -> tuple[bytes, int | None]:
    """A request body built by tritonclient.http's own helpers."""
    inputs = []
    for name, array in arrays.items():
        tensor = thttp.InferInput(name, list(array.shape), v2.dtype_to_datatype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return thttp.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kw)


def request_from_response(body: bytes, headers: dict[str, str]) -> tuple[bytes, int | None]:
    """Turn our response into a request: V2 output entries are laid out as input entries."""
    length = int(headers[v2.HEADER_LENGTH]) if v2.HEADER_LENGTH in headers else len(body)
    header = json.loads(body[:length])
    new_header = json.dumps({"inputs": header["outputs"]}).encode()
    rest = body[length:]
    return new_header + rest, (len(new_header) if v2.HEADER_LENGTH in headers else None)


def json_body(header: dict[str, Any]) -> bytes:
    return json.dumps(header).encode()


def one_input(**fields: Any) -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    tensor.update(fields)
    return json_body({"inputs": [tensor]})


def to_bytes_elements(array: np.ndarray) -> np.ndarray:
    """tritonclient returns JSON BYTES as str; compare as bytes."""
    out = np.empty(array.size, dtype=object)
    out[:] = [x.encode() if isinstance(x, str) else x for x in array.ravel().tolist()]
    return out.reshape(array.shape)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert strategies.nan_equal(got, want), (got, want)


# -- datatypes -------------------------------------------------------------------------


class TestDatatypes:
    @pytest.mark.parametrize(("datatype", "dtype"), ALL_DATATYPES)
    def test_both_ways(self, datatype: str, dtype: str) -> None:
        assert v2.datatype_to_dtype(datatype) == np.dtype(dtype)
        assert v2.dtype_to_datatype(np.dtype(dtype)) == datatype
        assert v2.dtype_to_datatype(dtype) == datatype

    def test_every_datatype_is_listed(self) -> None:
        assert set(v2.DATATYPES) == {name for name, _ in ALL_DATATYPES}

    @pytest.mark.parametrize("dtype", [">f4", ">i8", ">u2"])
    def test_byte_order_does_not_matter(self, dtype: str) -> None:
        assert v2.dtype_to_datatype(dtype) == v2.dtype_to_datatype(dtype.replace(">", "<"))

    @pytest.mark.parametrize("dtype", ["S3", "U2", object])
    def test_text_dtypes_are_bytes(self, dtype: Any) -> None:
        assert v2.dtype_to_datatype(dtype) == "BYTES"

    @pytest.mark.parametrize("dtype", ["complex64", "datetime64[s]", "V4", "float128"])
    def test_unsupported_dtype(self, dtype: str) -> None:
        try:
            np.dtype(dtype)
        except TypeError:
            pytest.skip(f"{dtype} does not exist on this platform")
        with pytest.raises(EncodeError, match="no V2 datatype"):
            v2.dtype_to_datatype(dtype)

    @pytest.mark.parametrize("datatype", ["BF16", "fp32", "STRING", "", None])
    def test_unknown_datatype(self, datatype: Any) -> None:
        with pytest.raises(DecodeError, match="unsupported datatype"):
            v2.datatype_to_dtype(datatype)


# -- decoding requests -----------------------------------------------------------------


class TestDecodeTritonRequests:
    @given(arrays=st.lists(strategies.v2_tensors(), min_size=1, max_size=3))
    def test_binary_from_tritonclient(self, arrays: list[np.ndarray]) -> None:
        named = {f"in{i}": a for i, a in enumerate(arrays)}
        body, length = triton_request(named, binary=True)
        request = v2.decode_infer_request(body, length)
        assert list(request.inputs) == list(named)
        for name, array in named.items():
            assert_same(request.inputs[name], array)

    @given(arrays=st.lists(strategies.v2_tensors(json_safe=True), min_size=1, max_size=3))
    def test_json_from_tritonclient(self, arrays: list[np.ndarray]) -> None:
        named = {f"in{i}": a for i, a in enumerate(arrays)}
        body, length = triton_request(named, binary=False)
        assert length is None
        request = v2.decode_infer_request(body, length)
        for name, array in named.items():
            assert_same(request.inputs[name], array)

    def test_id_parameters_and_outputs(self) -> None:
        outputs = [
            thttp.InferRequestedOutput("y", binary_data=True),
            thttp.InferRequestedOutput("z", binary_data=False),
        ]
        body, length = triton_request(
            {"x": np.ones(3, np.float32)},
            binary=True,
            outputs=outputs,
            request_id="req-7",
            parameters={"temperature": 0.5},
        )
        request = v2.decode_infer_request(body, length)
        assert request.id == "req-7"
        assert request.parameters["temperature"] == 0.5
        assert [(o.name, o.binary_data) for o in request.outputs] == [("y", True), ("z", False)]

    def test_mixed_binary_and_json_inputs(self) -> None:
        a = np.arange(4, dtype=np.int16).reshape(2, 2)
        b = np.array([b"\x00\xff", b""], dtype=object)
        inputs = [thttp.InferInput("a", [2, 2], "INT16"), thttp.InferInput("b", [2], "BYTES")]
        inputs[0].set_data_from_numpy(a, binary_data=False)
        inputs[1].set_data_from_numpy(b, binary_data=True)
        body, length = thttp.InferenceServerClient.generate_request_body(inputs)
        request = v2.decode_infer_request(body, length)
        assert_same(request.inputs["a"], a)
        assert_same(request.inputs["b"], b)


class TestDecode:
    def test_nested_and_flat_data_agree(self, json_backend: str) -> None:
        flat = v2.decode_infer_request(one_input(shape=[2, 2], data=[1, 2, 3, 4]))
        nested = v2.decode_infer_request(one_input(shape=[2, 2], data=[[1, 2], [3, 4]]))
        assert_same(flat.inputs["x"], np.array([[1, 2], [3, 4]], np.float32))
        assert_same(nested.inputs["x"], flat.inputs["x"])

    def test_zero_dim_and_empty(self, json_backend: str) -> None:
        scalar = v2.decode_infer_request(one_input(shape=[], data=[3.5]))
        assert_same(scalar.inputs["x"], np.array(3.5, np.float32))
        empty = v2.decode_infer_request(one_input(shape=[0, 5], data=[]))
        assert_same(empty.inputs["x"], np.zeros((0, 5), np.float32))

    def test_binary_is_a_read_only_view_of_the_body(self) -> None:
        array = np.arange(6, dtype=np.float64)
        header = json_body(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP64",
                        "shape": [2, 3],
                        "parameters": {"binary_data_size": 48},
                    }
                ]
            }
        )
        body = bytearray(header + array.tobytes())
        decoded = v2.decode_infer_request(memoryview(body), len(header)).inputs["x"]
        assert_same(decoded, array.reshape(2, 3))
        assert np.shares_memory(decoded, np.frombuffer(body, dtype=np.uint8))
        assert not decoded.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            decoded[0, 0] = 1.0

    def test_header_length_covering_the_whole_body(self) -> None:
        body = one_input()
        request = v2.decode_infer_request(body, len(body))
        assert_same(request.inputs["x"], np.array([1, 2], np.float32))

    def test_binary_data_output_flag(self) -> None:
        body = json_body(
            {
                "inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [True]}],
                "parameters": {"binary_data_output": True},
            }
        )
        assert v2.decode_infer_request(body).binary_data_output is True
        assert v2.decode_infer_request(one_input()).binary_data_output is False

    @pytest.mark.parametrize(
        ("datatype", "data", "dtype"),
        [
            ("INT8", [-128, 127], "int8"),
            ("UINT8", [0, 255], "uint8"),
            ("INT64", [-(2**63), 2**63 - 1], "int64"),
            ("UINT64", [0, 2**64 - 1], "uint64"),
            ("FP16", [65504.0, -1], "float16"),
            ("FP64", [1e308, 5e-324], "float64"),
            ("BOOL", [True, False], "bool"),
            ("BYTES", ["h\u00e9", ""], "object"),
        ],
    )
    def test_json_range_edges(
        self, json_backend: str, datatype: str, data: list[Any], dtype: str
    ) -> None:
        body = json_body(
            {"inputs": [{"name": "x", "datatype": datatype, "shape": [2], "data": data}]}
        )
        got = v2.decode_infer_request(body).inputs["x"]
        assert got.dtype == np.dtype(dtype)
        expected = [s.encode() for s in data] if datatype == "BYTES" else data
        assert got.tolist() == expected

    def test_body_size_limit(self) -> None:
        body = one_input()
        with pytest.raises(PayloadTooLargeError):
            v2.decode_infer_request(body, max_body_size=len(body) - 1)
        assert v2.decode_infer_request(body, max_body_size=len(body)).inputs["x"].size == 2
        assert v2.decode_infer_request(body, max_body_size=None).inputs["x"].size == 2


def binary_input(datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return {
        "name": "x",
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


def with_binary(header: dict[str, Any], payload: bytes) -> tuple[bytes, int]:
    raw = json_body(header)
    return raw + payload, len(raw)


MALFORMED_JSON: list[tuple[bytes, str]] = [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}', "JSON"),
    (b"[]", "must be a JSON object"),
    (b"{}", "'inputs' must be a list"),
    (b'{"inputs": {}}', "'inputs' must be a list"),
    (b'{"inputs": [1]}', "input #0 must be a JSON object"),
    (json_body({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}), "string 'name'"),
    (json_body({"id": 5, "inputs": []}), "'id' must be a string"),
    (json_body({"parameters": [], "inputs": []}), "'parameters' must be a JSON object"),
    (
        json_body({"parameters": {"binary_data_output": 1}, "inputs": []}),
        "'binary_data_output' must be a boolean",
    ),
    (one_input(datatype="FLOAT"), "unsupported datatype 'FLOAT'"),
    (one_input(datatype="BF16"), "unsupported datatype 'BF16'"),
    (one_input(datatype=None), "unsupported datatype"),
    (one_input(shape=[-1]), "'shape' must be a list of non-negative integers"),
    (one_input(shape=[2.0]), "'shape' must be a list of non-negative integers"),
    (one_input(shape=[True, True]), "'shape' must be a list of non-negative integers"),
    (one_input(shape="2"), "'shape' must be a list of non-negative integers"),
    (one_input(shape=[1] * 33), "more than 32 dimensions"),
    (one_input(shape=[3]), "needs 3 elements, 'data' has 2"),
    (one_input(shape=[2**62, 4], data=[]), "'shape' is too large"),
    (one_input(shape=[2**20, 4], data=[]), "elements, 'data' has 0"),
    (one_input(data=1.0, shape=[]), "'data' must be a list"),
    (one_input(data=[[1.0], 2.0]), "mixes nested lists and values"),
    (one_input(data=[1.0, "2"]), "FP32 data must be numbers"),
    (one_input(data=[1.0, True]), "FP32 data must be numbers"),
    (one_input(data=[1.0, None]), "FP32 data must be numbers"),
    (one_input(data=[1.0, 1e39]), "out of range for FP32"),
    (one_input(datatype="FP16", data=[1.0, 65520.0]), "out of range for FP16"),
    # orjson refuses a number past float64 while parsing, stdlib json later: both DecodeError
    (one_input(datatype="FP64", data=[1.0, 10**400]), "out of range for FP64|not valid JSON"),
    (one_input(datatype="INT8", data=[1, 128]), "out of range for INT8"),
    (one_input(datatype="INT8", data=[-129, 0]), "out of range for INT8"),
    (one_input(datatype="UINT8", data=[-1, 0]), "out of range for UINT8"),
    (one_input(datatype="INT64", data=[2**63, 0]), "out of range for INT64"),
    # orjson reads an integer past 64 bits as a float, stdlib json as an int
    (one_input(datatype="UINT64", data=[2**64, 0]), "UINT64 data must be integers|out of range"),
    (one_input(datatype="INT32", data=[1, 2.0]), "INT32 data must be integers"),
    (one_input(datatype="INT32", data=[1, False]), "INT32 data must be integers"),
    (one_input(datatype="BOOL", data=[1, 0]), "BOOL data must be booleans"),
    (one_input(datatype="BYTES", data=["a", 1]), "BYTES data must be strings"),
    (one_input(datatype="BYTES", data=["a", ["b"]]), "mixes nested lists"),
    (
        json_body(
            {"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [True]}] * 2}
        ),
        "'x' appears more than once",
    ),
    (one_input(data=None), "'data' must be a list"),
    (
        json_body({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}),
        "neither 'data' nor 'binary_data_size'",
    ),
    (
        one_input(parameters={"shared_memory_region": "r"}),
        "'shared_memory_region' is not supported",
    ),
    (one_input(parameters=[1]), "'parameters' must be a JSON object"),
    (json_body({"inputs": [], "outputs": {}}), "'outputs' must be a list"),
    (json_body({"inputs": [], "outputs": [{"name": 1}]}), "output #0 needs a string 'name'"),
    (
        json_body({"inputs": [], "outputs": [{"name": "y"}, {"name": "y"}]}),
        "'y' is requested more than once",
    ),
    (
        json_body({"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}),
        "'binary_data' must be a boolean",
    ),
    (
        json_body({"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": 3}}]}),
        "'classification' is not supported",
    ),
    (
        json_body({"inputs": [binary_input("FP32", [1], 4)]}),
        "has no Inference-Header-Content-Length",
    ),
]


class TestMalformed:
    @pytest.mark.parametrize(("body", "message"), MALFORMED_JSON)
    def test_json(self, json_backend: str, body: bytes, message: str) -> None:
        with pytest.raises(DecodeError, match=message):
            v2.decode_infer_request(body)

    def test_lone_surrogate_in_bytes(self, json_backend: str) -> None:
        tensor = b'{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}'
        body = b'{"inputs": [' + tensor + b"]}"
        with pytest.raises(DecodeError):
            v2.decode_infer_request(body)

    def test_deep_nesting(self, json_backend: str) -> None:
        body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + (
            b"[" * 100_000 + b"]" * 100_000 + b"}]}"
        )
        with pytest.raises(DecodeError):
            v2.decode_infer_request(body)

    @pytest.mark.parametrize(
        ("header", "payload", "message"),
        [
            ({"inputs": [binary_input("FP32", [2], 8)]}, b"\0" * 4, "runs past the end"),
            ({"inputs": [binary_input("FP32", [2], 4)]}, b"\0" * 4, "needs 8 bytes"),
            ({"inputs": [binary_input("FP32", [1], 4)]}, b"\0" * 6, "2 bytes after"),
            ({"inputs": [binary_input("FP32", [1], -4)]}, b"", "non-negative integer"),
            ({"inputs": [binary_input("FP32", [1], 4.0)]}, b"\0" * 4, "non-negative integer"),
            ({"inputs": [binary_input("FP32", [1], True)]}, b"\0" * 4, "non-negative integer"),
            ({"inputs": [{**binary_input("FP32", [1], 4), "data": [1]}]}, b"\0" * 4, "both"),
            ({"inputs": [binary_input("BOOL", [2], 2)]}, b"\x01\x02", "BOOL bytes must be 0 or 1"),
            ({"inputs": [binary_input("BYTES", [2], 4)]}, b"\0" * 4, "cannot hold 2"),
            ({"inputs": [binary_input("BYTES", [1], 3)]}, b"\0" * 3, "cannot hold 1"),
            (
                {"inputs": [binary_input("BYTES", [1], 6)]},
                struct.pack("<I", 5) + b"ab",
                "runs past 'binary_data_size'",
            ),
            (
                {"inputs": [binary_input("BYTES", [1], 7)]},
                struct.pack("<I", 1) + b"abc",
                "2 bytes after the last BYTES element",
            ),
            (
                {"inputs": [binary_input("BYTES", [2], 11)]},
                struct.pack("<I", 1) + b"a" + b"\0\0\0\0" + b"zz",
                "2 bytes after the last BYTES element",
            ),
            (
                {"inputs": [binary_input("BYTES", [2], 9)]},
                struct.pack("<I", 3) + b"abc" + b"\0\0",
                "ends inside an element's length",
            ),
            ({"inputs": []}, b"\0", "1 bytes after the binary tensors"),
        ],
    )
    def test_binary(self, header: dict[str, Any], payload: bytes, message: str) -> None:
        body, length = with_binary(header, payload)
        with pytest.raises(DecodeError, match=message):
            v2.decode_infer_request(body, length)

    @pytest.mark.parametrize("length", [-1, 10**9, True, "3", 1.5])
    def test_bad_header_length(self, length: Any) -> None:
        with pytest.raises(DecodeError, match="Inference-Header-Content-Length"):
            v2.decode_infer_request(one_input(), length)

    def test_header_length_cutting_the_json(self) -> None:
        with pytest.raises(DecodeError, match="not valid JSON"):
            v2.decode_infer_request(one_input(), 5)


class TestParseHeaderLength:
    @pytest.mark.parametrize(("value", "want"), [(None, None), ("0", 0), (" 42 ", 42)])
    def test_valid(self, value: str | None, want: int | None) -> None:
        assert v2.parse_header_length(value) == want

    @pytest.mark.parametrize("value", ["", "-1", "1e3", "0x10", "\u0663", "12a"])
    def test_invalid(self, value: str) -> None:
        with pytest.raises(DecodeError, match="non-negative integer"):
            v2.parse_header_length(value)


class TestFuzz:
    @given(body=st.binary(max_size=200), length=st.none() | st.integers(-5, 250))
    def test_garbage_raises_only_our_errors(self, body: bytes, length: int | None) -> None:
        with contextlib.suppress(ModelDeployError):
            v2.decode_infer_request(body, length)

    @given(
        tensor=st.fixed_dictionaries(
            {},
            optional={
                "name": st.text(max_size=3) | st.integers(),
                "datatype": st.sampled_from([*v2.DATATYPES, "BF16", 3]),
                "shape": st.lists(st.integers(-2, 4), max_size=3) | st.text(max_size=2),
                "data": st.recursive(
                    st.none()
                    | st.booleans()
                    | st.integers()
                    | st.floats(allow_nan=False, allow_infinity=False)  # the header is strict JSON
                    | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=4),
                    max_leaves=12,
                ),
                "parameters": st.dictionaries(
                    st.sampled_from(["binary_data_size", "x"]),
                    st.integers(-4, 40) | st.booleans() | st.text(max_size=2),
                    max_size=2,
                ),
            },
        ),
        tail=st.binary(max_size=40),
        outputs=st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=2)},
                optional={"parameters": st.dictionaries(st.just("binary_data"), st.booleans())},
            ),
            max_size=2,
        ),
    )
    def test_structured_fuzz(
        self, tensor: dict[str, Any], tail: bytes, outputs: list[dict[str, Any]]
    ) -> None:
        header = json.dumps({"inputs": [tensor], "outputs": outputs}, allow_nan=False).encode()
        try:
            request = v2.decode_infer_request(header + tail, len(header))
        except ModelDeployError:
            return  # anything else escapes and fails the test
        (array,) = request.inputs.values()
        assert list(array.shape) == tensor["shape"]
        assert array.dtype == v2.DATATYPES[tensor["datatype"]]


# -- encoding responses ----------------------------------------------------------------


def triton_result(body: bytes, headers: dict[str, str]) -> thttp.InferResult:
    length = headers.get(v2.HEADER_LENGTH)
    return thttp.InferResult.from_response_body(
        body, header_length=int(length) if length is not None else None
    )


class TestEncode:
    @given(arrays=st.lists(strategies.v2_tensors(), min_size=1, max_size=3))
    def test_binary_round_trip(self, arrays: list[np.ndarray]) -> None:
        named = {f"out{i}": a for i, a in enumerate(arrays)}
        body, headers = v2.encode_infer_response(named, model_name="m", binary_data_output=True)
        assert int(headers[v2.HEADER_LENGTH]) < len(body) or all(a.size == 0 for a in arrays)
        request = v2.decode_infer_request(*request_from_response(body, headers))
        for name, array in named.items():
            assert_same(request.inputs[name], array)

    @given(arrays=st.lists(strategies.v2_tensors(json_safe=True), min_size=1, max_size=3))
    def test_json_round_trip(self, arrays: list[np.ndarray]) -> None:
        named = {f"out{i}": a for i, a in enumerate(arrays)}
        for use_orjson in (True, False):
            saved = v2.orjson
            if not use_orjson:
                v2.orjson = None  # type: ignore[assignment]
            try:
                body, headers = v2.encode_infer_response(named, model_name="m")
                request = v2.decode_infer_request(*request_from_response(body, headers))
            finally:
                v2.orjson = saved
            assert headers == {"Content-Type": "application/json"}
            for name, array in named.items():
                assert_same(request.inputs[name], array)

    @given(arrays=st.lists(strategies.v2_tensors(), min_size=1, max_size=3))
    def test_tritonclient_reads_binary(self, arrays: list[np.ndarray]) -> None:
        named = {f"out{i}": a for i, a in enumerate(arrays)}
        body, headers = v2.encode_infer_response(named, model_name="m", binary_data_output=True)
        result = triton_result(body, headers)
        for name, array in named.items():
            got = result.as_numpy(name)
            if array.size == 0:
                # tritonclient 2.41 returns float64 for an empty binary output
                assert got.shape == array.shape
            else:
                assert_same(got, array)

    @given(arrays=st.lists(strategies.v2_tensors(json_safe=True), min_size=1, max_size=3))
    def test_tritonclient_reads_json(self, arrays: list[np.ndarray]) -> None:
        named = {f"out{i}": a for i, a in enumerate(arrays)}
        body, headers = v2.encode_infer_response(named, model_name="m", id="abc")
        result = triton_result(body, headers)
        assert result.get_response()["id"] == "abc"
        for name, array in named.items():
            got = result.as_numpy(name)
            if array.dtype == object:
                got = to_bytes_elements(got)
            assert_same(got, array)

    def test_requested_outputs_filter_order_and_form(self) -> None:
        outputs = {"a": np.arange(3), "b": np.ones(2, np.float32), "c": np.array([b"z"], object)}
        requested = (
            v2.RequestedOutput("c", binary_data=True),
            v2.RequestedOutput("a"),
        )
        body, headers = v2.encode_infer_response(
            outputs, model_name="m", model_version="3", requested=requested
        )
        length = int(headers[v2.HEADER_LENGTH])
        header = json.loads(body[:length])
        assert header["model_name"] == "m"
        assert header["model_version"] == "3"
        assert [o["name"] for o in header["outputs"]] == ["c", "a"]
        assert header["outputs"][0]["parameters"] == {"binary_data_size": 5}
        assert header["outputs"][1]["data"] == [0, 1, 2]
        assert body[length:] == struct.pack("<I", 1) + b"z"

    def test_per_output_false_overrides_the_default(self) -> None:
        outputs = {"a": np.arange(3, dtype=np.uint16)}
        body, headers = v2.encode_infer_response(
            outputs,
            model_name="m",
            requested=[v2.RequestedOutput("a", binary_data=False)],
            binary_data_output=True,
        )
        assert v2.HEADER_LENGTH not in headers
        assert json.loads(body)["outputs"][0]["data"] == [0, 1, 2]

    def test_plain_values_and_str_outputs(self) -> None:
        body, _ = v2.encode_infer_response(
            {"n": 3, "s": np.array(["h\u00e9"]), "l": [[1.5, 2.5]]},
            model_name="m",
            parameters={"k": 1},
        )
        header = json.loads(body)
        assert header["parameters"] == {"k": 1}
        by_name = {o["name"]: o for o in header["outputs"]}
        assert by_name["n"]["datatype"] == "INT64"
        assert by_name["n"]["shape"] == []
        assert by_name["s"] == {
            "name": "s",
            "datatype": "BYTES",
            "shape": [1],
            "data": ["h\u00e9"],
        }
        assert by_name["l"]["shape"] == [1, 2]

    def test_big_endian_output_is_sent_little_endian(self) -> None:
        array = np.arange(3, dtype=">i4")
        body, headers = v2.encode_infer_response(
            {"a": array}, model_name="m", binary_data_output=True
        )
        assert body[int(headers[v2.HEADER_LENGTH]) :] == np.arange(3, dtype="<i4").tobytes()

    def test_unknown_requested_output(self) -> None:
        with pytest.raises(ValidationError, match="unknown output 'b'"):
            v2.encode_infer_response(
                {"a": np.ones(1)}, model_name="m", requested=[v2.RequestedOutput("b")]
            )

    @pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
    def test_non_finite_json(self, json_backend: str, value: float) -> None:
        # the client chose JSON, which cannot carry it: a 4xx that says how, not a 500
        with pytest.raises(NotAcceptableError, match="binary_data"):
            v2.encode_infer_response({"a": np.array([1.0, value])}, model_name="m")
        body, _ = v2.encode_infer_response(
            {"a": np.array([1.0, value])}, model_name="m", binary_data_output=True
        )
        assert body

    def test_non_utf8_bytes_as_json(self) -> None:
        with pytest.raises(NotAcceptableError, match="not UTF-8") as info:
            v2.encode_infer_response({"a": np.array([b"\xff"], object)}, model_name="m")
        assert info.value.http_status == 406
        body, _ = v2.encode_infer_response(
            {"a": np.array([b"\xff"], object)}, model_name="m", binary_data_output=True
        )
        assert body.endswith(b"\x01\x00\x00\x00\xff")

    @pytest.mark.parametrize("binary", [True, False])
    def test_object_array_of_other_values(self, binary: bool) -> None:
        with pytest.raises(EncodeError, match="bytes or str"):
            v2.encode_infer_response(
                {"a": np.array([{"x": 1}], object)}, model_name="m", binary_data_output=binary
            )

    def test_complex_output(self) -> None:
        with pytest.raises(EncodeError, match="no V2 datatype"):
            v2.encode_infer_response({"a": np.ones(2, complex)}, model_name="m")

    def test_ragged_output(self) -> None:
        with pytest.raises(EncodeError, match="not an array"):
            v2.encode_infer_response({"a": [[1], [1, 2]]}, model_name="m")


# -- the signature ---------------------------------------------------------------------


def request_of(**arrays: np.ndarray) -> v2.InferRequest:
    return v2.InferRequest(inputs=arrays)


class TestInputsForPredictor:
    def test_one_input_gets_the_array(self) -> None:
        x = np.ones(2)
        assert v2.inputs_for_predictor(request_of(x=x)) is x
        signature = Signature([TensorSpec("x", "float64", (2,))])
        assert v2.inputs_for_predictor(request_of(x=x), signature) is x

    def test_several_inputs_get_a_mapping_in_signature_order(self) -> None:
        a, b = np.ones(1), np.zeros(1)
        assert v2.inputs_for_predictor(request_of(a=a, b=b)) == {"a": a, "b": b}
        signature = Signature([TensorSpec("b"), TensorSpec("a")])
        got = v2.inputs_for_predictor(request_of(a=a, b=b), signature)
        assert isinstance(got, dict)
        assert list(got) == ["b", "a"]

    def test_missing_and_unexpected_inputs(self) -> None:
        signature = Signature([TensorSpec("a"), TensorSpec("b")])
        with pytest.raises(ValidationError, match="missing input 'b'"):
            v2.inputs_for_predictor(request_of(a=np.ones(1)), signature)
        with pytest.raises(ValidationError, match="unexpected input 'c'"):
            v2.inputs_for_predictor(request_of(a=np.ones(1), c=np.ones(1)), signature)

    def test_requested_outputs_must_be_declared(self) -> None:
        signature = Signature([TensorSpec("x")], [TensorSpec("y")])
        ok = v2.InferRequest(inputs={"x": np.ones(1)}, outputs=(v2.RequestedOutput("y"),))
        assert v2.inputs_for_predictor(ok, signature).shape == (1,)  # type: ignore[union-attr]
        bad = v2.InferRequest(inputs={"x": np.ones(1)}, outputs=(v2.RequestedOutput("z"),))
        with pytest.raises(ValidationError, match="unknown output 'z'"):
            v2.inputs_for_predictor(bad, signature)
        # no declared outputs: the response encoder is the judge
        v2.inputs_for_predictor(bad, Signature([TensorSpec("x")]))


class TestOutputsFromPrediction:
    def test_mapping_keeps_names(self) -> None:
        got = v2.outputs_from_prediction({"p": [1, 2]})
        assert list(got) == ["p"]
        assert_same(got["p"], np.array([1, 2]))

    def test_single_value_named_after_the_signature(self) -> None:
        signature = Signature([TensorSpec("x")], [TensorSpec("probs")])
        assert list(v2.outputs_from_prediction(np.ones(2), signature)) == ["probs"]
        assert list(v2.outputs_from_prediction(np.ones(2))) == ["output0"]

    def test_unconvertible(self) -> None:
        with pytest.raises(EncodeError, match="'output0' is not an array"):
            v2.outputs_from_prediction([[1], [1, 2]])

    @given(
        st.lists(
            st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=8
        )
    )
    def test_python_floats_take_the_declared_float32(self, values: list[float]) -> None:
        """A batch split with tolist() hands out Python floats; FP32 goes back out."""
        signature = Signature([TensorSpec("x")], [TensorSpec("y", "float32", (-1,))])
        (got,) = v2.outputs_from_prediction(values, signature).values()
        assert_same(got, np.array(values, dtype=np.float32))

    @pytest.mark.parametrize(
        ("value", "declared", "want"),
        [
            ([1, 2], "float32", np.array([1, 2], dtype=np.float32)),  # same kind: cast
            (np.array([1.5]), "int32", np.array([1.5])),  # float -> int is not: kept
            (["a"], "float32", np.array(["a"])),  # not numeric: kept, the encoder judges
            ([1.5], "object", np.array([1.5])),
            ([1.5], "no-such-dtype", np.array([1.5])),
            ([1.5], ",1", np.array([1.5])),  # np.dtype raises SyntaxError for this one
            ([300, 70_000], "int32", np.array([300, 70_000], dtype=np.int32)),  # fits
            (["label-long"], "U3", np.array(["label-long"])),  # text: never cut
            ([b"abcdef"], "S2", np.array([b"abcdef"])),
            ([1.5], "O", np.array([1.5])),
            ([1.5], "complex64", np.array([1.5])),  # V2 has no complex datatype
            ([[1, 1]], "(2,)f4", np.array([[1, 1]])),  # a subarray dtype: no cast
        ],
    )
    def test_casts_only_within_the_declared_kind(
        self, value: object, declared: str, want: np.ndarray
    ) -> None:
        signature = Signature([TensorSpec("x")], [TensorSpec("y", declared)])
        (got,) = v2.outputs_from_prediction({"y": value}, signature).values()
        assert_same(got, want)

    @pytest.mark.parametrize(
        ("value", "declared"),
        [([3_000_000_000], "int32"), ([300], "int8"), ([-200], "int8"), ([2**64 - 1], "int64")],
    )
    def test_an_int_that_does_not_fit_is_refused_not_wrapped(
        self, value: list[int], declared: str
    ) -> None:
        signature = Signature([TensorSpec("x")], [TensorSpec("y", declared)])
        with pytest.raises(EncodeError, match=f"out of range for {declared}"):
            v2.outputs_from_prediction(value, signature)

    def test_a_value_out_of_the_declared_range_is_an_encode_error(self) -> None:
        signature = Signature([TensorSpec("x")], [TensorSpec("y", "float32")])
        with pytest.raises(EncodeError, match="out of range for float32"):
            v2.outputs_from_prediction([1e300], signature)


# -- metadata and errors ---------------------------------------------------------------


class TestMetadata:
    def test_model_metadata(self) -> None:
        signature = Signature(
            [TensorSpec("x", "float32", (-1, 4)), TensorSpec("t", "str", (1,))],
            [TensorSpec("y", "int64", (-1,)), TensorSpec("any")],
        )
        metadata = v2.model_metadata("iris", signature, versions=["1", "2"])
        assert metadata == {
            "name": "iris",
            "versions": ["1", "2"],
            "platform": "modeldeploy",
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                {"name": "t", "datatype": "BYTES", "shape": [1]},
            ],
            "outputs": [
                {"name": "y", "datatype": "INT64", "shape": [-1]},
                {"name": "any", "datatype": "BYTES", "shape": [-1]},
            ],
        }
        message = v2.model_metadata_to_grpc(metadata)
        assert message.inputs[0].shape == [-1, 4]
        assert message.outputs[0].datatype == "INT64"
        assert list(message.versions) == ["1", "2"]

    def test_model_without_signature(self) -> None:
        metadata = v2.model_metadata("m", None)
        assert metadata["inputs"] == metadata["outputs"] == []

    def test_signature_dtype_without_datatype(self) -> None:
        with pytest.raises(EncodeError):
            v2.model_metadata("m", Signature([TensorSpec("x", "complex64")]))

    def test_server_metadata(self) -> None:
        metadata = v2.server_metadata()
        assert metadata["name"] == "modeldeploy"
        assert metadata["extensions"] == ["binary_tensor_data"]
        message = v2.server_metadata_to_grpc(metadata)
        assert (message.name, list(message.extensions)) == ("modeldeploy", ["binary_tensor_data"])

    def test_error_body(self) -> None:
        assert v2.error_body(NotReadyError("warming up")) == {"error": "warming up"}
        assert json.loads(v2.dumps_json(v2.error_body(DecodeError()))) == {
            "error": DecodeError.default_message
        }

    def test_dumps_json_refuses_what_json_cannot_carry(self, json_backend: str) -> None:
        with pytest.raises(EncodeError):
            v2.dumps_json({"x": object()})


# -- gRPC ------------------------------------------------------------------------------

MESSAGES = [
    "ServerLiveRequest",
    "ServerLiveResponse",
    "ServerReadyRequest",
    "ServerReadyResponse",
    "ModelReadyRequest",
    "ModelReadyResponse",
    "ServerMetadataRequest",
    "ServerMetadataResponse",
    "ModelMetadataRequest",
    "ModelMetadataResponse",
    "InferParameter",
    "InferTensorContents",
    "ModelInferRequest",
    "ModelInferResponse",
]


def describe(message: Any) -> Any:
    """Everything about a message type that reaches the wire, nested types included."""
    fields = sorted(
        (
            f.number,
            f.name,
            f.type,
            f.is_repeated,
            f.containing_oneof.name if f.containing_oneof else None,
            describe(f.message_type) if f.message_type else None,
        )
        for f in message.fields
    )
    return (message.full_name, fields)


class TestProtoInterop:
    @pytest.mark.parametrize("name", MESSAGES)
    def test_messages_match_tritonclient(self, name: str) -> None:
        ours = pb.DESCRIPTOR.message_types_by_name[name]
        theirs = triton_pb.DESCRIPTOR.message_types_by_name[name]
        assert describe(ours) == describe(theirs)

    def test_service_matches_tritonclient(self) -> None:
        ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
        theirs = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
        assert ours.full_name == "inference.GRPCInferenceService"
        assert len(ours.methods) == 6
        for method in ours.methods:
            other = theirs.methods_by_name[method.name]
            assert method.input_type.full_name == other.input_type.full_name
            assert method.output_type.full_name == other.output_type.full_name

    def test_request_bytes_round_trip_both_ways(self) -> None:
        theirs = triton_pb.ModelInferRequest(model_name="m", model_version="2", id="r")
        tensor = theirs.inputs.add(name="x", datatype="FP32", shape=[2])
        tensor.contents.fp32_contents.extend([1.5, 2.5])
        tensor.parameters["p"].uint64_param = 2**64 - 1
        theirs.outputs.add(name="y").parameters["binary_data"].bool_param = True
        theirs.parameters["priority"].int64_param = 3
        theirs.raw_input_contents.append(b"\x01\x02")
        ours = pb.ModelInferRequest.FromString(theirs.SerializeToString())
        assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
            deterministic=True
        )
        assert ours.inputs[0].parameters["p"].uint64_param == 2**64 - 1
        assert list(ours.inputs[0].contents.fp32_contents) == [1.5, 2.5]
        assert triton_pb.ModelInferRequest.FromString(ours.SerializeToString()) == theirs

    def test_response_bytes_round_trip_both_ways(self) -> None:
        ours = pb.ModelInferResponse(model_name="m", id="r")
        ours.outputs.add(name="y", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
            b"ab"
        )
        ours.parameters["k"].string_param = "v"
        ours.raw_output_contents.append(b"\0")
        theirs = triton_pb.ModelInferResponse.FromString(ours.SerializeToString())
        assert theirs.outputs[0].contents.bytes_contents == [b"ab"]
        assert pb.ModelInferResponse.FromString(theirs.SerializeToString()) == ours


def grpc_request_from_triton(arrays: dict[str, np.ndarray], **kw: Any) -> Any:
    """A ModelInferRequest built by tritonclient.grpc, re-read as our message type."""
    inputs = []
    for name, array in arrays.items():
        tensor = tgrpc.InferInput(name, list(array.shape), v2.dtype_to_datatype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    message = tgrpc._utils._get_inference_request(
        model_name="m",
        inputs=inputs,
        model_version="",
        request_id=kw.get("request_id", ""),
        outputs=kw.get("outputs"),
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=kw.get("priority", 0),
        timeout=None,
        parameters=None,
    )
    return pb.ModelInferRequest.FromString(message.SerializeToString())


def contents_request(datatype: str, shape: list[int], field: str, values: list[Any]) -> Any:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return message


class TestGrpc:
    @given(arrays=st.lists(strategies.v2_tensors(), min_size=1, max_size=3))
    def test_raw_request_from_tritonclient(self, arrays: list[np.ndarray]) -> None:
        named = {f"in{i}": a for i, a in enumerate(arrays)}
        request = v2.infer_request_from_grpc(grpc_request_from_triton(named))
        for name, array in named.items():
            assert_same(request.inputs[name], array)

    def test_request_fields(self) -> None:
        message = grpc_request_from_triton(
            {"x": np.ones(2, np.float32)},
            request_id="r9",
            priority=2,
            outputs=[tgrpc.InferRequestedOutput("y")],
        )
        request = v2.infer_request_from_grpc(message)
        assert request.id == "r9"
        assert request.parameters == {"priority": 2}
        assert [o.name for o in request.outputs] == ["y"]
        no_id = v2.infer_request_from_grpc(grpc_request_from_triton({"x": np.ones(1)}))
        assert no_id.id is None

    def test_raw_tensors_are_read_only(self) -> None:
        message = grpc_request_from_triton({"x": np.arange(4, dtype=np.int32)})
        array = v2.infer_request_from_grpc(message).inputs["x"]
        assert not array.flags.writeable

    @given(array=strategies.v2_tensors())
    def test_typed_contents(self, array: np.ndarray) -> None:
        datatype = v2.dtype_to_datatype(array.dtype)
        if datatype == "FP16":
            return
        field = v2._CONTENTS_FIELDS[datatype]
        message = contents_request(datatype, list(array.shape), field, array.ravel().tolist())
        got = v2.infer_request_from_grpc(message).inputs["x"]
        if datatype == "FP32":
            # fp32_contents are float32 on the wire, so NaN payloads may not survive
            assert got.dtype == array.dtype
            assert np.array_equal(got, array, equal_nan=True)
        else:
            assert_same(got, array)

    @pytest.mark.parametrize(
        ("message", "error"),
        [
            (contents_request("FP16", [1], "fp32_contents", [1.0]), "only in raw_input_contents"),
            (contents_request("FP32", [1], "fp64_contents", [1.0]), "belongs in fp32_contents"),
            (contents_request("FP32", [2], "fp32_contents", [1.0]), "needs 2 elements"),
            (contents_request("INT8", [1], "int_contents", [200]), "out of range for INT8"),
            (contents_request("UINT16", [1], "uint_contents", [70000]), "out of range"),
            (contents_request("BF16", [1], "fp32_contents", [1.0]), "unsupported datatype"),
            (contents_request("FP32", [-1], "fp32_contents", []), "non-negative"),
        ],
    )
    def test_malformed_contents(self, message: Any, error: str) -> None:
        with pytest.raises(DecodeError, match=error):
            v2.infer_request_from_grpc(message)

    def test_malformed_raw(self) -> None:
        message = grpc_request_from_triton({"a": np.ones(2), "b": np.ones(2)})
        del message.raw_input_contents[1]
        with pytest.raises(DecodeError, match="1 entries for 2 inputs"):
            v2.infer_request_from_grpc(message)
        message = grpc_request_from_triton({"a": np.ones(2)})
        message.raw_input_contents[0] = b"\0" * 3
        with pytest.raises(DecodeError, match="needs 16 bytes"):
            v2.infer_request_from_grpc(message)
        message = grpc_request_from_triton({"a": np.ones(2)})
        message.inputs[0].contents.fp64_contents.append(1.0)
        with pytest.raises(DecodeError, match="both contents and raw_input_contents"):
            v2.infer_request_from_grpc(message)

    def test_duplicates(self) -> None:
        message = grpc_request_from_triton({"a": np.ones(2)})
        message.inputs.append(message.inputs[0])
        message.raw_input_contents.append(message.raw_input_contents[0])
        with pytest.raises(DecodeError, match="more than once"):
            v2.infer_request_from_grpc(message)
        message = grpc_request_from_triton({"a": np.ones(2)})
        message.outputs.add(name="y")
        message.outputs.add(name="y")
        with pytest.raises(DecodeError, match="more than once"):
            v2.infer_request_from_grpc(message)

    @given(arrays=st.lists(strategies.v2_tensors(), min_size=1, max_size=3))
    def test_response_read_by_tritonclient(self, arrays: list[np.ndarray]) -> None:
        named = {f"out{i}": a for i, a in enumerate(arrays)}
        ours = v2.infer_response_to_grpc(named, model_name="m", model_version="1", id="q")
        theirs = triton_pb.ModelInferResponse.FromString(ours.SerializeToString())
        result = tgrpc.InferResult(theirs)
        assert (theirs.model_name, theirs.model_version, theirs.id) == ("m", "1", "q")
        for name, array in named.items():
            assert_same(result.as_numpy(name), array)

    def test_response_requested_outputs_and_parameters(self) -> None:
        response = v2.infer_response_to_grpc(
            {"a": np.ones(1), "b": np.zeros(2, np.int8)},
            model_name="m",
            requested=[v2.RequestedOutput("b")],
            parameters={"flag": True, "n": 3, "big": 2**64 - 1, "f": 0.5, "s": "x"},
        )
        assert [o.name for o in response.outputs] == ["b"]
        assert response.raw_output_contents == [b"\0\0"]
        kinds = {k: p.WhichOneof("parameter_choice") for k, p in response.parameters.items()}
        assert kinds == {
            "flag": "bool_param",
            "n": "int64_param",
            "big": "uint64_param",
            "f": "double_param",
            "s": "string_param",
        }
        with pytest.raises(ValidationError, match="unknown output 'c'"):
            v2.infer_response_to_grpc(
                {"a": np.ones(1)}, model_name="m", requested=[v2.RequestedOutput("c")]
            )

    @given(
        body=st.binary(max_size=300),
    )
    def test_garbage_messages_raise_only_our_errors(self, body: bytes) -> None:
        try:
            message = pb.ModelInferRequest.FromString(body)
        except Exception:  # protobuf's own parse error, raised before our code runs
            return
        with contextlib.suppress(ModelDeployError):
            v2.infer_request_from_grpc(message)


@pytest.mark.integration
class TestGrpcLoopback:
    """The generated stubs under a real grpcio server, called by tritonclient.grpc."""

    @pytest.fixture
    def client(self) -> Iterator[Any]:
        class Servicer(pb_grpc.GRPCInferenceServiceServicer):
            def ServerLive(self, request: Any, context: Any) -> Any:
                return pb.ServerLiveResponse(live=True)

            def ServerMetadata(self, request: Any, context: Any) -> Any:
                return v2.server_metadata_to_grpc(v2.server_metadata())

            def ModelMetadata(self, request: Any, context: Any) -> Any:
                signature = Signature([TensorSpec("x", "float32", (-1,))])
                return v2.model_metadata_to_grpc(v2.model_metadata(request.name, signature))

            def ModelInfer(self, request: Any, context: Any) -> Any:
                try:
                    decoded = v2.infer_request_from_grpc(request)
                    doubled = {k: a * 2 for k, a in decoded.inputs.items() if a.dtype != object}
                    return v2.infer_response_to_grpc(
                        doubled,
                        model_name=request.model_name,
                        id=decoded.id,
                        requested=decoded.outputs,
                    )
                except ModelDeployError as exc:
                    context.abort(getattr(grpc.StatusCode, exc.grpc_status), exc.message)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
        yield client
        client.close()
        server.stop(grace=None).wait()

    def test_metadata_and_health(self, client: Any) -> None:
        assert client.is_server_live()
        assert client.get_server_metadata().extensions == ["binary_tensor_data"]
        metadata = client.get_model_metadata("iris")
        assert (metadata.name, metadata.inputs[0].datatype) == ("iris", "FP32")
        assert list(metadata.inputs[0].shape) == [-1]

    def test_infer(self, client: Any) -> None:
        x = np.arange(6, dtype=np.float16).reshape(2, 3)
        tensor = tgrpc.InferInput("x", [2, 3], "FP16")
        tensor.set_data_from_numpy(x)
        result = client.infer("m", [tensor], request_id="r1")
        assert result.get_response().id == "r1"
        assert_same(result.as_numpy("x"), x * 2)

    def test_error_status(self, client: Any) -> None:
        tensor = tgrpc.InferInput("x", [2], "FP32")
        tensor.set_data_from_numpy(np.ones(2, np.float32))
        with pytest.raises(InferenceServerException, match="unknown output 'nope'") as info:
            client.infer("m", [tensor], outputs=[tgrpc.InferRequestedOutput("nope")])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
