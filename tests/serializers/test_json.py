"""Tests of modeldeploy.serializers.json: both engines, one data model."""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import math
import uuid
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeldeploy import serializers
from modeldeploy.errors import (
    DecodeError,
    EncodeError,
    ModelDeployError,
    PayloadTooLargeError,
)
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES
from modeldeploy.serializers.json import INT_MAX, INT_MIN, JSON
from tests import docs, strategies

ENGINES = ("orjson", "stdlib")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def both(**options: Any) -> tuple[JSON, JSON]:
    return JSON(backend="orjson", **options), JSON(backend="stdlib", **options)


def outcome(call: Any, *args: Any) -> Any:
    """The result of a call, or the type of the ModelDeployError it raised."""
    try:
        return ("ok", call(*args))
    except ModelDeployError as exc:
        return ("error", type(exc))


def float32_digits(array: np.ndarray) -> Any:
    """
    What dumps promises for a float16/float32 array, from orjson's own writer.

    The values orjson's OPT_SERIALIZE_NUMPY text of the array reads as (float32's
    shortest digits, float16 through float32), nested as ``tolist()``; NaN and
    infinities, which orjson writes as null, stay themselves.
    """
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    finite = np.isfinite(flat)
    text = orjson.dumps(np.where(finite, flat, np.float32(0)), option=orjson.OPT_SERIALIZE_NUMPY)
    values = np.array(json.loads(text), dtype=np.float64)
    with np.errstate(invalid="ignore"):  # a signalling NaN warns as it widens
        values[~finite] = flat[~finite]
    return values.reshape(array.shape).tolist()


def as_written(array: np.ndarray) -> Any:
    """The plain values dumps writes for *array*: float32 digits for float16/float32."""
    return (
        float32_digits(array) if array.dtype.kind == "f" and array.itemsize < 8 else array.tolist()
    )


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


class TestIdentity:
    def test_names_and_media_types(self) -> None:
        assert JSON.name == "json"
        assert JSON.media_types == BUILTIN_MEDIA_TYPES["json"]
        assert JSON.media_type == "application/json"

    def test_registry_builds_it_with_options(self) -> None:
        found = serializers.get("text/json", allow_nan=True, backend="stdlib")
        assert isinstance(found, JSON)
        assert found.allow_nan
        assert found.backend == "stdlib"

    def test_orjson_is_the_default_engine_when_installed(self) -> None:
        assert JSON().backend == "orjson"

    @pytest.mark.parametrize("depth", [0, 201])
    def test_max_depth_out_of_range(self, depth: int) -> None:
        with pytest.raises(ValueError, match="max_depth"):
            JSON(max_depth=depth)

    def test_unknown_backend(self) -> None:
        with pytest.raises(ValueError, match="backend"):
            JSON(backend="simdjson")  # type: ignore[arg-type]


class TestRoundtrip:
    @given(value=strategies.json_values)
    def test_data_model(self, engine: str, value: Any) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        data = serializer.dumps(value)
        assert strategies.nan_equal(serializer.loads(data), value)
        assert strategies.nan_equal(serializer.loads(memoryview(data)), value)
        # a standard parser reads our bytes as the same value
        assert strategies.nan_equal(json.loads(data), value)

    @given(value=strategies.json_nan_values)
    def test_data_model_with_nan(self, engine: str, value: Any) -> None:
        serializer = JSON(backend=engine, allow_nan=True)  # type: ignore[arg-type]
        data = serializer.dumps(value)
        assert strategies.nan_equal(serializer.loads(data), value)
        assert strategies.nan_equal(json.loads(data), value)

    def test_int_range_edges(self, engine: str) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        assert serializer.loads(serializer.dumps([INT_MIN, INT_MAX])) == [INT_MIN, INT_MAX]
        for outside in (INT_MIN - 1, INT_MAX + 1, 10**400):
            with pytest.raises(EncodeError):
                serializer.dumps({"n": outside})

    @given(value=strategies.json_values)
    def test_tuples_encode_as_lists(self, engine: str, value: Any) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        assert strategies.nan_equal(
            serializer.loads(serializer.dumps((value, (1,)))), [value, [1]]
        )

    def test_converted_values(self, engine: str) -> None:
        class Color(enum.Enum):
            RED = "red"

        class Size(enum.IntEnum):
            BIG = 3

        class Text(str):
            pass

        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        value = {
            "enum": Color.RED,
            "int_enum": Size.BIG,
            "uuid": uuid.UUID(int=1),
            "str_subclass": Text("x"),
            "np_float32": np.float32(0.1),
            "np_float16": np.float16(0.1),
            "np_float64": np.float64(0.1),
            "np_int64": np.int64(-3),
            "np_bool": np.bool_(True),
        }
        decoded = serializer.loads(serializer.dumps(value))
        assert decoded == {
            "enum": "red",
            "int_enum": 3,
            "uuid": "00000000-0000-0000-0000-000000000001",
            "str_subclass": "x",
            "np_float32": 0.1,  # float32's shortest digits, not 0.10000000149011612
            "np_float16": 0.099975586,  # float16 0.1 in float32's shortest digits
            "np_float64": 0.1,
            "np_int64": -3,
            "np_bool": True,
        }
        assert np.float32(decoded["np_float32"]) == np.float32(0.1)
        assert np.float16(decoded["np_float16"]) == np.float16(0.1)


class TestNaNPolicy:
    @pytest.mark.parametrize(
        "value",
        [
            math.nan,
            [1.0, math.inf],
            {"a": -math.inf},
            np.float32("nan"),
            np.array([1.0, np.nan]),
            [None, math.nan],  # a null beside the NaN must not hide it
            # and not in what orjson writes itself or through the default hook
            {"a": None, "b": np.array([1.0, np.nan], dtype=np.float32)},
            [None, np.float16("inf")],
            [None, np.array([None, -math.inf], dtype=object)],
            [None, enum.Enum("Odd", {"NAN": math.nan}).NAN],
            [None, (1.0, {"k": [math.inf]})],
        ],
        ids=repr,
    )
    def test_encoding_non_finite_is_refused_by_default(self, engine: str, value: Any) -> None:
        with pytest.raises(EncodeError, match="allow_nan"):
            JSON(backend=engine).dumps(value)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "data", [b"NaN", b"[Infinity]", b'{"a":-Infinity}', b"1e400", b"-1E+999", b"1" * 400]
    )
    def test_decoding_non_finite_is_refused_by_default(self, engine: str, data: bytes) -> None:
        with pytest.raises(DecodeError):
            JSON(backend=engine).loads(data)  # type: ignore[arg-type]

    def test_allow_nan_writes_and_reads_the_stdlib_tokens(self, engine: str) -> None:
        serializer = JSON(backend=engine, allow_nan=True)  # type: ignore[arg-type]
        data = serializer.dumps([math.nan, math.inf, -math.inf, None])
        assert data == b"[NaN,Infinity,-Infinity,null]"
        assert strategies.nan_equal(serializer.loads(data), [math.nan, math.inf, -math.inf, None])
        assert serializer.loads(b"[1e400]") == [math.inf]

    def test_null_stays_null(self, engine: str) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        assert serializer.dumps({"a": None, "b": "null"}) == b'{"a":null,"b":"null"}'


class TestArrays:
    @given(array=strategies.arrays())
    def test_lists_by_default(self, engine: str, array: np.ndarray) -> None:
        serializer = JSON(backend=engine, allow_nan=True)  # type: ignore[arg-type]
        decoded = serializer.loads(serializer.dumps(array))
        assert strategies.nan_equal(decoded, as_written(array))
        if array.dtype.kind == "f" and array.ndim and array.size:
            read = np.asarray(decoded, dtype=array.dtype)
            assert read.shape == array.shape
            assert np.array_equal(read, array, equal_nan=True)

    @given(
        array=strategies.arrays()
        | hnp.arrays(
            st.sampled_from(
                ["float32", "float16", "float64", "int64", "uint64", "bool", ">f8", ">i4", ">u8"]
                + [">f4", ">f2"]
                + (["longdouble"] if np.dtype("longdouble").itemsize > 8 else [])
            ),
            st.integers(256, 600),  # large enough for orjson's own array path
        ),
        allow_nan=st.booleans(),
        transpose=st.booleans(),
    )
    def test_an_array_is_written_as_its_list(
        self, engine: str, array: np.ndarray, allow_nan: bool, transpose: bool
    ) -> None:
        """A top-level array is written as its list of plain values, and as the general path.

        That list is ``tolist()``, with float16/float32 values in float32's digits;
        the fast path for a top-level array writes the very bytes of the list, or
        for float16/float32 the bytes of the general path (orjson writes a float32
        from 1e13 with an exponent, a float from 1e16: the same numbers).
        """
        serializer = JSON(backend=engine, allow_nan=allow_nan)  # type: ignore[arg-type]
        array = array.T if transpose else array  # not C-contiguous when 2-D or more
        try:
            expected = serializer.dumps(as_written(array))
        except EncodeError:
            with pytest.raises(EncodeError):
                serializer.dumps(array)
            with pytest.raises(EncodeError):
                serializer.dumps([array])
        else:
            written = serializer.dumps(array)
            if array.dtype.kind == "f" and array.itemsize < 8:
                assert strategies.nan_equal(json.loads(written), json.loads(expected))
                assert written == serializer.dumps([array])[1:-1]
            else:
                assert written == expected

    @given(array=strategies.arrays())
    def test_typed_arrays_keep_dtype_and_shape(self, engine: str, array: np.ndarray) -> None:
        serializer = JSON(backend=engine, allow_nan=True, typed_arrays=True)  # type: ignore[arg-type]
        value = {"x": [array, 1]}
        decoded = serializer.loads(serializer.dumps(value))
        assert strategies.nan_equal(decoded, value)
        assert decoded["x"][0].flags.writeable

    @given(
        array=strategies.arrays().filter(
            lambda a: a.dtype.kind != "f" or bool(np.isfinite(a).all())
        )
    )
    def test_typed_arrays_without_nan(self, engine: str, array: np.ndarray) -> None:
        serializer = JSON(backend=engine, typed_arrays=True)  # type: ignore[arg-type]
        assert strategies.nan_equal(serializer.loads(serializer.dumps(array)), array)

    def test_tensor_object_form(self, engine: str) -> None:
        serializer = JSON(backend=engine, typed_arrays=True)  # type: ignore[arg-type]
        data = serializer.dumps(np.arange(6, dtype=">f4").reshape(2, 3))
        assert json.loads(data) == {
            "__tensor__": {"dtype": "float32", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]}
        }
        decoded = serializer.loads(data)
        assert decoded.dtype == np.dtype("float32")
        assert decoded.shape == (2, 3)

    def test_tensor_objects_are_plain_dicts_when_not_typed(self, engine: str) -> None:
        data = b'{"__tensor__":{"dtype":"int8","shape":[1],"data":[1]}}'
        assert JSON(backend=engine).loads(data) == json.loads(data)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "value",
        [
            np.array([1 + 2j]),
            np.array(["a"]),
            np.array([None], dtype=object),
            np.array(["2020-01-01"], dtype="M8[D]"),
        ],
        ids=lambda a: str(a.dtype),
    )
    def test_dtypes_without_tensor_form(self, engine: str, value: np.ndarray) -> None:
        with pytest.raises(EncodeError):
            JSON(backend=engine, typed_arrays=True).dumps(value)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "value", [{"__tensor__": 1}, [{"a": 1, "__tensor__": {}}]], ids=["alone", "beside"]
    )
    def test_tensor_key_is_reserved(self, engine: str, value: Any) -> None:
        with pytest.raises(EncodeError, match="reserved"):
            JSON(backend=engine, typed_arrays=True).dumps(value)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "tensor",
        [
            1,
            {"dtype": "int8", "shape": [1]},
            {"dtype": "int8", "shape": [1], "data": [1], "extra": 0},
            {"dtype": "complex64", "shape": [1], "data": [1]},
            {"dtype": "object", "shape": [1], "data": [1]},
            {"dtype": 7, "shape": [1], "data": [1]},
            {"dtype": "int8", "shape": [2], "data": [1]},
            {"dtype": "int8", "shape": [-1], "data": []},
            {"dtype": "int8", "shape": [1.0], "data": [1]},
            {"dtype": "int8", "shape": "1", "data": [1]},
            {"dtype": "int8", "shape": [1], "data": 1},
            {"dtype": "int8", "shape": [1], "data": [300]},
            {"dtype": "uint8", "shape": [1], "data": [-1]},
            {"dtype": "uint64", "shape": [2], "data": [-1, 18446744073709551615]},
            {"dtype": "int8", "shape": [1], "data": [1.5]},
            {"dtype": "int8", "shape": [1], "data": ["1"]},
            {"dtype": "bool", "shape": [1], "data": [1]},
            {"dtype": "float32", "shape": [1], "data": [None]},
            {"dtype": "float32", "shape": [1], "data": [[1.0]]},
            {"dtype": "float16", "shape": [1], "data": [1e300]},
            {"dtype": "float32", "shape": [0, 10**30], "data": []},
        ],
        ids=repr,
    )
    def test_malformed_tensor_objects(self, engine: str, tensor: Any) -> None:
        serializer = JSON(backend=engine, typed_arrays=True)  # type: ignore[arg-type]
        with pytest.raises(DecodeError):
            serializer.loads(json.dumps({"x": {"__tensor__": tensor}}).encode())
        with pytest.raises(DecodeError):
            serializer.loads(json.dumps([{"__tensor__": tensor, "more": 1}]).encode())

    def test_uint64_tensor_with_values_past_int64(self, engine: str) -> None:
        serializer = JSON(backend=engine, typed_arrays=True)  # type: ignore[arg-type]
        array = np.array([0, 2**64 - 1], dtype="uint64")
        assert strategies.nan_equal(serializer.loads(serializer.dumps(array)), array)


NUMPY = orjson.OPT_SERIALIZE_NUMPY
short_float_dtypes = st.sampled_from(["float32", "float16", ">f4", ">f2"])


@st.composite
def short_float_arrays(
    draw: st.DrawFn, finite: bool = True, non_finite: bool = False
) -> np.ndarray:
    """
    float32/float16 arrays of any bit pattern (subnormals too), either byte order.

    *finite* replaces NaN and infinities by 0; *non_finite* puts one at least.
    """
    dtype = np.dtype(draw(short_float_dtypes))
    shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=int(non_finite), max_side=6)
    bits = draw(hnp.arrays(np.dtype(f"u{dtype.itemsize}"), shape))
    array = bits.view(dtype.newbyteorder("=")).astype(dtype)
    if finite and not non_finite:
        array[~np.isfinite(array)] = 0
    if non_finite:
        index = draw(st.integers(0, array.size - 1))
        array.reshape(-1)[index] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array


def same_bits(read: np.ndarray, array: np.ndarray) -> bool:
    """Equal dtype, shape and bits (NaN payloads aside: JSON's NaN has one)."""
    native = array.astype(array.dtype.newbyteorder("="))
    read = read.astype(read.dtype.newbyteorder("="))
    nan = np.isnan(native)
    return bool(
        read.dtype == native.dtype
        and read.shape == native.shape
        and np.array_equal(np.isnan(read), nan)
        and (
            read[~nan].view(f"u{native.itemsize}") == native[~nan].view(f"u{native.itemsize}")
        ).all()
    )


class TestFloat32Digits:
    """float16/float32 values are written in float32's shortest digits, as orjson writes them."""

    @given(array=short_float_arrays(), transpose=st.booleans())
    def test_read_back_as_the_same_bits(
        self, engine: str, array: np.ndarray, transpose: bool
    ) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        array = array.T if transpose else array
        read = np.asarray(serializer.loads(serializer.dumps(array)), dtype=array.dtype)
        assert read.shape == array.shape or array.size == 0
        assert same_bits(read.reshape(array.shape), array)
        inside = serializer.loads(serializer.dumps({"y": [array]}))["y"][0]
        assert same_bits(np.asarray(inside, dtype=array.dtype).reshape(array.shape), array)

    @given(array=short_float_arrays().filter(lambda a: a.ndim > 0))
    def test_text_is_orjsons(self, array: np.ndarray) -> None:
        native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        expected = orjson.dumps(native, option=NUMPY)
        serializer = JSON(backend="orjson")
        assert serializer.dumps(native) == expected
        assert serializer.dumps(array) == expected  # big-endian too
        assert serializer.dumps({"y": array, "n": 1}) == orjson.dumps(
            {"y": native, "n": 1}, option=NUMPY
        )
        if array.ndim == 2:  # not C-contiguous
            assert serializer.dumps(array.T) == orjson.dumps(
                np.ascontiguousarray(native.T), option=NUMPY
            )

    @given(array=short_float_arrays())
    def test_engines_write_the_same_values(self, array: np.ndarray) -> None:
        fast, slow = both()
        # the stdlib writes 1e-07 where orjson writes 1e-7: the same number
        assert json.loads(slow.dumps(array)) == json.loads(fast.dumps(array))
        assert json.loads(fast.dumps(array)) == float32_digits(array)

    def test_every_float16(self, engine: str) -> None:
        array = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
        array = array[np.isfinite(array)]
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        read = np.asarray(serializer.loads(serializer.dumps(array)), dtype=np.float16)
        assert same_bits(read, array)

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (np.float32(0.1), b"0.1"),
            (np.array([0.1, -0.0, 1e-7, 3e38], dtype=np.float32), b"[0.1,-0.0,1e-7,3e+38]"),
            (np.array([[1.5e-45]], dtype=">f4"), b"[[1e-45]]"),
            (np.array(0.25, dtype=np.float32), b"0.25"),  # 0-d
            (np.array([1e13], dtype=np.float32), b"[1e+13]"),  # a float would be 10000000000000.0
            (np.float16(0.1), b"0.099975586"),  # float16 is written through float32
            (np.array([65504, 6e-8], dtype=np.float16), b"[65504.0,5.9604645e-8]"),
        ],
        ids=repr,
    )
    def test_known_texts(self, value: Any, text: bytes) -> None:
        assert JSON(backend="orjson").dumps(value) == text
        assert JSON(backend="orjson").dumps({"v": value}) == b'{"v":' + text + b"}"

    @given(
        scalar=short_float_arrays().filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0])
    )
    def test_scalars(self, engine: str, scalar: np.generic) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        decoded = serializer.loads(serializer.dumps(scalar))
        assert same_bits(np.asarray(decoded, dtype=scalar.dtype), np.asarray(scalar))
        assert decoded == json.loads(orjson.dumps(scalar, option=NUMPY))

    @given(array=short_float_arrays(non_finite=True))
    def test_non_finite_follow_allow_nan(self, engine: str, array: np.ndarray) -> None:
        with pytest.raises(EncodeError, match="allow_nan"):
            JSON(backend=engine).dumps(array)  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match="allow_nan"):
            JSON(backend=engine).dumps({"y": array})  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match="allow_nan"):
            JSON(backend=engine, typed_arrays=True).dumps(array)  # type: ignore[arg-type]
        lenient = JSON(backend=engine, allow_nan=True)  # type: ignore[arg-type]
        decoded = lenient.loads(lenient.dumps(array))
        assert strategies.nan_equal(decoded, float32_digits(array))
        read = np.asarray(decoded, dtype=array.dtype).reshape(array.shape)
        assert same_bits(read, array)

    @given(array=short_float_arrays(finite=False))
    def test_typed_tensors_carry_float32_digits(self, engine: str, array: np.ndarray) -> None:
        serializer = JSON(backend=engine, typed_arrays=True, allow_nan=True)  # type: ignore[arg-type]
        body = serializer.dumps({"x": array})
        data = json.loads(body)["x"]["__tensor__"]["data"]
        assert strategies.nan_equal(data, float32_digits(array.reshape(-1)))
        assert same_bits(serializer.loads(body)["x"], array)

    def test_depth_limit_still_holds(self, engine: str) -> None:
        array = np.zeros((1, 1, 1), dtype=np.float32)
        serializer = JSON(backend=engine, max_depth=3)  # type: ignore[arg-type]
        assert serializer.dumps(array) == b"[[[0.0]]]"
        for value in (np.zeros((1, 1, 1, 1), dtype=np.float32), [array], {"a": array}):
            with pytest.raises(EncodeError, match="deeper"):
                serializer.dumps(value)

    def test_an_array_subclass_is_written_as_its_list(self, engine: str) -> None:
        masked = np.ma.masked_array(np.array([0.5, 2.0], dtype=np.float32), mask=[False, True])
        assert JSON(backend=engine).loads(JSON(backend=engine).dumps({"m": masked})) == {  # type: ignore[arg-type]
            "m": [0.5, None]
        }

    def test_float64_keeps_its_digits(self, engine: str) -> None:
        value = np.array([0.1, float(np.float32(0.1))])
        assert JSON(backend=engine).loads(JSON(backend=engine).dumps(value)) == value.tolist()  # type: ignore[arg-type]


def _dumps_agree(value: Any, allow_nan: bool, typed: bool) -> None:
    """Both engines encode *value* alike: the same outcome, and bytes that read the same."""
    fast, slow = both(allow_nan=allow_nan, typed_arrays=typed)
    fast_outcome, slow_outcome = outcome(fast.dumps, value), outcome(slow.dumps, value)
    assert fast_outcome[0] == slow_outcome[0]
    if fast_outcome[0] == "ok":
        for reader in (fast, slow):
            assert strategies.nan_equal(
                reader.loads(fast_outcome[1]), reader.loads(slow_outcome[1])
            )


class TestEnginesAgree:
    @given(value=strategies.json_any_values, allow_nan=st.booleans(), typed=st.booleans())
    def test_dumps(self, value: Any, allow_nan: bool, typed: bool) -> None:
        _dumps_agree(value, allow_nan, typed)

    @given(
        value=strategies.json_nan_values
        | strategies.json_any_values
        | st.lists(
            st.none()
            | st.sampled_from([math.nan, math.inf, -math.inf, np.float32("nan")])
            | strategies.arrays(),
            max_size=4,
        ),
        allow_nan=st.booleans(),
        typed=st.booleans(),
    )
    def test_dumps_beside_a_null(self, value: Any, allow_nan: bool, typed: bool) -> None:
        # a null in orjson's text sends the value to the NaN check: it must find every
        # NaN and infinity the stdlib engine finds, and no other
        _dumps_agree([None, value], allow_nan, typed)

    @given(value=strategies.json_nan_values, allow_nan=st.booleans(), data=st.data())
    def test_loads_of_foreign_json(self, value: Any, allow_nan: bool, data: st.DataObject) -> None:
        # what other clients send: escapes, spacing, big ints, exponents, cuts and typos
        text = json.dumps(
            value, ensure_ascii=data.draw(st.booleans()), indent=data.draw(st.none() | st.just(1))
        )
        text = data.draw(st.sampled_from([text, text[: len(text) // 2], text + "]", "-" + text]))
        fast, slow = both(allow_nan=allow_nan)
        body = text.encode("utf-8", "surrogatepass")
        assert strategies.nan_equal(outcome(fast.loads, body), outcome(slow.loads, body))

    @given(
        literal=st.integers().map(str)
        | st.floats().map(repr)
        | st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
    )
    def test_numbers(self, literal: str) -> None:
        for allow_nan in (False, True):
            fast, slow = both(allow_nan=allow_nan)
            body = f"[{literal}]".encode()
            assert strategies.nan_equal(outcome(fast.loads, body), outcome(slow.loads, body))

    @pytest.mark.parametrize(
        "body",
        [
            b'"\\ud800"',
            b'"\\udc00x"',
            b'"\\ud83d\\ude00"',
            b'"\\\\ud800"',
            b'"\\u0000"',
            b"\xef\xbb\xbf[]",
            b"[1,]",
            b"01",
            b" [1] \n",
            b"18446744073709551616",
            b"-9223372036854775809",
            b"[1] [2]",
        ],
        ids=repr,
    )
    def test_edge_cases(self, body: bytes) -> None:
        fast, slow = both()
        assert strategies.nan_equal(outcome(fast.loads, body), outcome(slow.loads, body))

    def test_big_int_literals_read_as_floats(self, engine: str) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        assert serializer.loads(b"[18446744073709551616]") == [1.8446744073709552e19]
        assert serializer.loads(b"18446744073709551615") == 2**64 - 1


class TestRefused:
    @pytest.mark.parametrize(
        "value",
        [
            {1, 2},
            b"bytes",
            datetime.date(2020, 1, 1),
            object(),
            1 + 2j,
            {1: "int key"},
            {None: 1},
            {("a",): 1},
            "lone \ud800 surrogate",
            {"key \udfff": 1},
        ],
        ids=repr,
    )
    def test_outside_the_data_model(self, engine: str, value: Any) -> None:
        with pytest.raises(EncodeError):
            JSON(backend=engine).dumps(value)  # type: ignore[arg-type]

    def test_circular_reference(self, engine: str) -> None:
        loop: list[Any] = []
        loop.append(loop)
        with pytest.raises(EncodeError):
            JSON(backend=engine).dumps(loop)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "data", [b"", b"\xff\xfe", b'"\xed\xa0\x80"', b"[1,2", b"nul", b'{"a" 1}', b"\x00"]
    )
    def test_malformed_bodies(self, engine: str, data: bytes) -> None:
        with pytest.raises(DecodeError):
            JSON(backend=engine).loads(data)  # type: ignore[arg-type]

    @given(data=st.binary(max_size=256))
    def test_garbage(self, engine: str, data: bytes) -> None:
        for serializer in (
            JSON(backend=engine),  # type: ignore[arg-type]
            JSON(backend=engine, allow_nan=True, typed_arrays=True),  # type: ignore[arg-type]
        ):
            with contextlib.suppress(ModelDeployError):  # anything else fails the test
                serializer.loads(data)

    @given(value=strategies.json_nan_values | strategies.arrays(), data=st.data())
    def test_truncations(self, engine: str, value: Any, data: st.DataObject) -> None:
        serializer = JSON(backend=engine, allow_nan=True, typed_arrays=True)  # type: ignore[arg-type]
        encoded = serializer.dumps(value)
        cut = data.draw(st.integers(0, len(encoded) - 1))
        with contextlib.suppress(ModelDeployError):  # anything else fails the test
            serializer.loads(encoded[:cut])


class TestLimits:
    def test_max_size(self, engine: str) -> None:
        data = JSON().dumps({"values": list(range(100))})
        exact = JSON(backend=engine, max_size=len(data))  # type: ignore[arg-type]
        assert exact.loads(data) == {"values": list(range(100))}
        small = JSON(backend=engine, max_size=len(data) - 1)  # type: ignore[arg-type]
        for body in (data, memoryview(data)):
            with pytest.raises(PayloadTooLargeError):
                small.loads(body)

    @pytest.mark.parametrize("opener", [b"[", b'{"a":'])
    def test_depth_10000_is_a_decode_error(self, engine: str, opener: bytes) -> None:
        closer = b"]" if opener == b"[" else b"}"
        data = opener * 10_000 + b"1" + closer * 10_000
        for serializer in (
            JSON(backend=engine),  # type: ignore[arg-type]
            JSON(backend=engine, max_depth=200, allow_nan=True),  # type: ignore[arg-type]
        ):
            with pytest.raises(DecodeError, match="deeper"):
                serializer.loads(data)
            with pytest.raises(DecodeError, match="deeper"):
                serializer.loads(memoryview(data))

    def test_max_depth_is_exact(self, engine: str) -> None:
        serializer = JSON(backend=engine, max_depth=5)  # type: ignore[arg-type]
        assert serializer.loads(serializer.dumps(nested(5))) == nested(5)
        with pytest.raises(EncodeError, match="deeper"):
            serializer.dumps(nested(6))
        with pytest.raises(DecodeError, match="deeper"):
            serializer.loads(JSON().dumps(nested(6)))

    def test_typed_tensors_count_toward_depth(self, engine: str) -> None:
        # {"__tensor__": {"shape": [...]}} nests three levels
        serializer = JSON(backend=engine, max_depth=4, typed_arrays=True)  # type: ignore[arg-type]
        assert serializer.loads(serializer.dumps([np.zeros(2)])).__len__() == 1
        with pytest.raises(EncodeError):
            serializer.dumps([[np.zeros(2)]])

    def test_brackets_inside_strings_do_not_count(self, engine: str) -> None:
        serializer = JSON(backend=engine, max_depth=2)  # type: ignore[arg-type]
        value = {"a": ["[{" * 500 + '\\"[', "]" * 10], "b": "{"}
        assert serializer.loads(serializer.dumps(value)) == value

    @given(value=strategies.json_values, depth=st.integers(1, 8))
    def test_scanned_depth_matches_the_value(self, value: Any, depth: int) -> None:
        encoded = JSON(max_depth=200).dumps(value)
        fits = _depth(value) <= depth
        assert outcome(JSON(max_depth=depth).loads, encoded)[0] == ("ok" if fits else "error")

    def test_memoryview_of_other_shapes(self, engine: str) -> None:
        serializer = JSON(backend=engine)  # type: ignore[arg-type]
        data = b'[1, "ab"]   '
        assert serializer.loads(memoryview(data).cast("B", (3, 4))) == [1, "ab"]
        assert serializer.loads(memoryview(data + b" ")[::1]) == [1, "ab"]
        strided = memoryview(b"".join(bytes([c, 0]) for c in data))[::2]
        assert serializer.loads(strided) == [1, "ab"]


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


class TestDocs(docs.PageExamples):
    page = "serializers/json.md"
