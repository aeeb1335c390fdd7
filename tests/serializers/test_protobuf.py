"""Tests for modeldeploy.serializers.protobuf."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeldeploy._proto import value_pb2
from modeldeploy.errors import DecodeError, EncodeError, ModelDeployError, PayloadTooLargeError
from modeldeploy.serializers.protobuf import PARSER_DEPTH_LIMIT, Protobuf
from tests import strategies
from tests.serializers.hostile import field, wire_nested_lists

codec = Protobuf()
# deep enough for every value the parser itself accepts
unlimited = Protobuf(max_depth=10_000)

V2_DATATYPES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def nested_lists(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_maps(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def tensor_bytes(datatype: str, shape: list[int], raw: bytes) -> bytes:
    tensor = value_pb2.Tensor(datatype=datatype, shape=shape, raw_contents=raw)
    return value_pb2.Value(tensor_value=tensor).SerializeToString()


class TestRoundtrip:
    @given(strategies.protobuf_values)
    def test_data_model(self, value: Any) -> None:
        assert strategies.nan_equal(codec.loads(codec.dumps(value)), value)

    @given(strategies.protobuf_values)
    def test_memoryview_input(self, value: Any) -> None:
        assert strategies.nan_equal(codec.loads(memoryview(codec.dumps(value))), value)

    @given(strategies.arrays())
    def test_arrays_keep_dtype_and_shape(self, array: np.ndarray) -> None:
        decoded = codec.loads(codec.dumps(array))
        assert decoded.dtype == array.dtype
        assert decoded.shape == array.shape
        assert np.array_equal(decoded, array, equal_nan=array.dtype.kind == "f")
        assert not decoded.flags.writeable  # a view of the message's bytes

    @pytest.mark.parametrize(
        ("number", "member"),
        [
            (0, "int_value"),
            (-(2**63), "int_value"),
            (2**63 - 1, "int_value"),
            (2**63, "uint_value"),
            (2**64 - 1, "uint_value"),
        ],
    )
    def test_ints_use_int64_then_uint64(self, number: int, member: str) -> None:
        data = codec.dumps(number)
        assert value_pb2.Value.FromString(data).WhichOneof("kind") == member
        assert codec.loads(data) == number

    @pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf, -0.0, 5e-324])
    def test_special_floats(self, number: float) -> None:
        decoded = codec.loads(codec.dumps(number))
        assert math.isnan(decoded) if math.isnan(number) else decoded == number
        assert math.copysign(1.0, decoded) == math.copysign(1.0, number)

    @given(st.dictionaries(strategies.text, st.integers(0, 9), max_size=8))
    def test_maps_keep_insertion_order(self, mapping: dict[str, int]) -> None:
        assert list(codec.loads(codec.dumps(mapping)).items()) == list(mapping.items())

    @given(st.lists(strategies.int64, max_size=5).map(tuple))
    def test_tuples_decode_as_lists(self, items: tuple[int, ...]) -> None:
        assert codec.loads(codec.dumps(items)) == list(items)

    @given(st.binary())
    def test_bytes_likes_decode_as_bytes(self, data: bytes) -> None:
        assert codec.loads(codec.dumps(bytearray(data))) == data
        assert codec.loads(codec.dumps(memoryview(data))) == data

    @given(strategies.numeric_dtypes.flatmap(lambda dtype: hnp.from_dtype(np.dtype(dtype))))
    def test_numpy_scalars_decode_as_python_numbers(self, scalar: np.generic) -> None:
        decoded = codec.loads(codec.dumps(scalar))
        expected = scalar.item()
        assert type(decoded) is type(expected)
        assert strategies.nan_equal(decoded, expected)

    @pytest.mark.parametrize("dtype", [">i4", ">f8", ">u2", ">f2"])
    def test_big_endian_arrays_decode_little_endian(self, dtype: str) -> None:
        array = np.arange(6).astype(dtype).reshape(2, 3)
        decoded = codec.loads(codec.dumps(array))
        assert decoded.dtype == np.dtype(dtype).newbyteorder("<")
        assert np.array_equal(decoded, array)

    def test_non_contiguous_arrays_decode_c_ordered(self) -> None:
        array = np.arange(24, dtype=np.int16).reshape(4, 6)[::2, ::-3].T
        decoded = codec.loads(codec.dumps(array))
        assert decoded.flags.c_contiguous
        assert np.array_equal(decoded, array)

    def test_non_contiguous_memoryview_input(self) -> None:
        data = codec.dumps([1, "two", 3.0])
        spread = memoryview(bytes(b for byte in data for b in (byte, 0)))[::2]
        assert not spread.c_contiguous
        assert codec.loads(spread) == [1, "two", 3.0]


class TestWireFormat:
    """The bytes a client in another language sees: V2 datatype names and layout."""

    @given(strategies.arrays())
    def test_tensor_fields_match_kserve_v2(self, array: np.ndarray) -> None:
        tensor = value_pb2.Value.FromString(codec.dumps(array)).tensor_value
        assert tensor.datatype == V2_DATATYPES[array.dtype.name]
        assert list(tensor.shape) == list(array.shape)
        little = array.astype(array.dtype.newbyteorder("<"))
        assert tensor.raw_contents == little.tobytes(order="C")

    def test_reads_a_tensor_built_by_another_client(self) -> None:
        raw = np.array([[1.5, -2.0], [0.0, 4.25]], dtype="<f4").tobytes()
        decoded = codec.loads(tensor_bytes("FP32", [2, 2], raw))
        assert decoded.dtype == np.float32
        assert decoded.tolist() == [[1.5, -2.0], [0.0, 4.25]]

    def test_schema_lives_in_package_modeldeploy_v1(self) -> None:
        assert value_pb2.Value.DESCRIPTOR.full_name == "modeldeploy.v1.Value"
        assert value_pb2.DESCRIPTOR.name == "modeldeploy/v1/value.proto"

    def test_empty_containers_are_set(self) -> None:
        assert value_pb2.Value.FromString(codec.dumps([])).WhichOneof("kind") == "list_value"
        assert value_pb2.Value.FromString(codec.dumps({})).WhichOneof("kind") == "map_value"


def raises_only_model_deploy_errors(data: bytes | memoryview) -> None:
    with contextlib.suppress(ModelDeployError):
        codec.loads(data)


class TestDecodeErrors:
    @given(st.binary(max_size=256))
    def test_garbage(self, data: bytes) -> None:
        raises_only_model_deploy_errors(data)

    @given(strategies.protobuf_values, st.data())
    def test_truncations(self, value: Any, data: st.DataObject) -> None:
        encoded = codec.dumps(value)
        cut = data.draw(st.integers(0, max(len(encoded) - 1, 0)))
        # a prefix may itself be a valid message; it must never raise anything else
        raises_only_model_deploy_errors(encoded[:cut])

    @given(strategies.protobuf_values, st.data())
    def test_flipped_bytes(self, value: Any, data: st.DataObject) -> None:
        encoded = bytearray(codec.dumps(value))
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] ^= data.draw(st.integers(1, 255))
        raises_only_model_deploy_errors(bytes(encoded))

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"", id="empty-value"),
            pytest.param(b"\x0a", id="truncated-tag"),
            pytest.param(b"\x32\x05ab", id="truncated-string"),
            pytest.param(b"\x32\x02\xff\xfe", id="invalid-utf8"),
            pytest.param(b"\x7a\x00", id="unknown-member-15"),
            pytest.param(b"\x08\x03", id="unknown-null-enum"),
            pytest.param(b"\x42\x02\x0a\x00", id="list-of-empty-value"),
            pytest.param(field(9, field(1, b"\x0a\x01k")), id="map-entry-without-value"),
            pytest.param(
                field(9, field(1, b"\x0a\x01k\x12\x02\x10\x01") * 2), id="duplicate-map-key"
            ),
        ],
    )
    def test_malformed_values(self, data: bytes) -> None:
        with pytest.raises(DecodeError):
            codec.loads(data)

    @pytest.mark.parametrize(
        ("datatype", "shape", "raw"),
        [
            pytest.param("FP32", [2], b"\x00" * 7, id="short-raw"),
            pytest.param("FP32", [2], b"\x00" * 9, id="long-raw"),
            pytest.param("INT8", [], b"", id="0d-without-bytes"),
            pytest.param("FP128", [1], b"\x00" * 16, id="unknown-datatype"),
            pytest.param("BYTES", [1], b"\x00" * 4, id="v2-bytes-unsupported"),
            pytest.param("fp32", [1], b"\x00" * 4, id="lower-case-datatype"),
            pytest.param("", [], b"", id="no-datatype"),
            pytest.param("INT8", [-1, -2], b"\x00\x00", id="negative-dims"),
            pytest.param("BOOL", [2], b"\x01\x02", id="bool-not-0-or-1"),
            pytest.param("INT8", [1] * 65, b"\x00", id="over-64-dims"),
            pytest.param("INT8", [2**62, 2**62, 0], b"", id="too-big-empty-shape"),
            pytest.param("INT64", [2**62, 2**62], b"", id="overflowing-shape"),
        ],
    )
    def test_malformed_tensors(self, datatype: str, shape: list[int], raw: bytes) -> None:
        with pytest.raises(DecodeError):
            codec.loads(tensor_bytes(datatype, shape, raw))

    def test_errors_chain_the_parser_error(self) -> None:
        with pytest.raises(DecodeError) as caught:
            codec.loads(b"\xff\xff\xff")
        assert caught.value.__cause__ is not None


class TestLimits:
    def test_max_size(self) -> None:
        data = codec.dumps(list(range(100)))
        assert Protobuf(max_size=len(data)).loads(data) == list(range(100))
        with pytest.raises(PayloadTooLargeError):
            Protobuf(max_size=len(data) - 1).loads(data)
        with pytest.raises(PayloadTooLargeError):
            Protobuf(max_size=len(data) - 1).loads(memoryview(data))

    @given(st.integers(0, 12), st.sampled_from([nested_lists, nested_maps]))
    def test_max_depth_boundary(self, depth: int, nest: Any) -> None:
        value = nest(depth, leaf=1)
        data = unlimited.dumps(value)
        assert Protobuf(max_depth=depth).loads(data) == value
        assert Protobuf(max_depth=depth).dumps(value) == data
        if depth > 0:
            with pytest.raises(DecodeError):
                Protobuf(max_depth=depth - 1).loads(data)
            with pytest.raises(EncodeError):
                Protobuf(max_depth=depth - 1).dumps(value)

    def test_tensors_do_not_count_as_nesting(self) -> None:
        shallow = Protobuf(max_depth=1)
        decoded = shallow.loads(shallow.dumps([np.zeros((2, 2, 2))]))
        assert decoded[0].shape == (2, 2, 2)

    @pytest.mark.parametrize("depth", [65, 1_000, 10_000])
    def test_deep_input_is_a_decode_error(self, depth: int) -> None:
        data = wire_nested_lists(depth)
        for serializer in (codec, unlimited):
            with pytest.raises(DecodeError):
                serializer.loads(data)

    def test_parser_limit_matches_encoder_limit(self) -> None:
        # two messages per list level, three per map level
        lists = PARSER_DEPTH_LIMIT // 2
        maps = PARSER_DEPTH_LIMIT // 3
        assert unlimited.loads(unlimited.dumps(nested_lists(lists))) == nested_lists(lists)
        assert unlimited.loads(unlimited.dumps(nested_maps(maps))) == nested_maps(maps)
        assert unlimited.loads(wire_nested_lists(lists)) == nested_lists(lists)
        with pytest.raises(DecodeError):
            unlimited.loads(wire_nested_lists(lists + 1))
        with pytest.raises(EncodeError):
            unlimited.dumps(nested_lists(lists + 1))
        with pytest.raises(EncodeError):
            unlimited.dumps(nested_maps(maps + 1))
        with pytest.raises(EncodeError):
            unlimited.dumps(nested_lists(lists, leaf=[]))
        with pytest.raises(EncodeError):
            unlimited.dumps(nested_lists(lists, leaf=np.zeros(1)))

    def test_defaults(self) -> None:
        assert codec.max_size == 64 * 1024 * 1024
        assert codec.max_depth == 64


class TestEncodeErrors:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(object(), id="object"),
            pytest.param({1, 2}, id="set"),
            pytest.param(1j, id="complex"),
            pytest.param(2**64, id="int-over-uint64"),
            pytest.param(-(2**63) - 1, id="int-under-int64"),
            pytest.param({1: "a"}, id="int-key"),
            pytest.param({("a",): 1}, id="tuple-key"),
            pytest.param("\ud800", id="lone-surrogate"),
            pytest.param({"\udfff": 1}, id="lone-surrogate-key"),
            pytest.param(np.zeros(2, dtype=np.complex64), id="complex-array"),
            pytest.param(np.array(["a"]), id="str-array"),
            pytest.param(np.array([object()]), id="object-array"),
            pytest.param(np.zeros(2, dtype="datetime64[s]"), id="datetime-array"),
            pytest.param(np.zeros(2, dtype=[("a", "i4")]), id="structured-array"),
            pytest.param(np.ma.masked_array([1, 2], mask=[0, 1]), id="masked-array"),
            pytest.param(np.complex128(1j), id="complex-scalar"),
            pytest.param(np.datetime64(0, "s"), id="datetime-scalar"),
            pytest.param([1, [2, object()]], id="nested-object"),
        ],
    )
    def test_outside_the_data_model(self, value: Any) -> None:
        with pytest.raises(EncodeError):
            codec.dumps(value)

    def test_long_double_wider_than_fp64(self) -> None:
        if np.dtype(np.longdouble).itemsize <= 8:
            pytest.skip("long double is a double on this platform")
        with pytest.raises(EncodeError):
            codec.dumps(np.longdouble(1))
        with pytest.raises(EncodeError):
            codec.dumps(np.zeros(1, dtype=np.longdouble))


class TestSerializer:
    def test_identity(self) -> None:
        assert codec.name == "protobuf"
        assert codec.media_type == "application/x-protobuf"
        assert codec.media_type == codec.media_types[0]
        assert "application/protobuf" in codec.media_types

    def test_repr(self) -> None:
        assert repr(Protobuf(max_size=10, max_depth=3)) == "Protobuf(max_size=10, max_depth=3)"

    def test_options_are_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            Protobuf(10)  # type: ignore[misc]
