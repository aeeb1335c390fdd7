"""Every Hypothesis strategy the suite uses, in one place."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# scalars every self-describing format carries exactly
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True)
int64 = st.integers(-(2**63), 2**63 - 1)
text = st.text()

# NumPy dtypes whose values round-trip bit-exactly through raw bytes
numeric_dtypes = st.sampled_from(
    [
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    ]
)  # fmt: skip


@st.composite
def arrays(draw: st.DrawFn, dtypes: st.SearchStrategy[str] = numeric_dtypes) -> np.ndarray:
    """Arrays of any numeric dtype and shape (empty and 0-d included), NaNs allowed."""
    dtype = np.dtype(draw(dtypes))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    return draw(hnp.arrays(dtype, shape))


def nan_equal(a: object, b: object) -> bool:
    """Deep equality where NaN equals NaN and arrays compare dtype, shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(nan_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# monitor events: few distinct label values, so label sets repeat within one example
from modeldeploy.events import BatchExecuted, RequestFinished  # noqa: E402

model_names = st.sampled_from(["iris", "mlp", "resnet"])
version_names = st.sampled_from(["1", "2"])
outcome_codes = st.sampled_from(["ok", "ok", "decode_error", "prediction_error", "overloaded"])
durations = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)


@st.composite
def finished_requests(draw: st.DrawFn) -> RequestFinished:
    """A RequestFinished with a bounded model, version and code (no error attached)."""
    code = draw(outcome_codes)
    return RequestFinished(
        model=draw(model_names),
        version=draw(version_names),
        request_id=draw(st.uuids()).hex,
        outcome="ok" if code == "ok" else "error",
        code=code,
        latency_s=draw(durations),
    )


batches_executed = st.builds(
    BatchExecuted,
    model=model_names,
    version=version_names,
    size=st.integers(1, 2000),
    queue_wait_s=durations,
    compute_s=durations,
)

# one request through a RequestRecorder: (model, version, code, latency_s, finished);
# latencies hit the bucket bounds exactly too, where le is inclusive
from modeldeploy.monitors import LATENCY_BUCKETS  # noqa: E402

recorded_requests = st.tuples(
    model_names,
    version_names,
    outcome_codes,
    durations | st.sampled_from(LATENCY_BUCKETS),
    st.booleans(),
)


# the data model every serializer backend round-trips (tests/serializers/test_contract.py)
common_values = st.recursive(
    st.none() | st.booleans() | int64 | finite_floats | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)

# protobuf: ints across int64 and uint64, every float, bytes, str-keyed maps, arrays
uint64_ints = st.integers(-(2**63), 2**64 - 1)
protobuf_values = st.recursive(
    st.none() | st.booleans() | uint64_ints | any_floats | text | st.binary() | arrays(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)


# V2 tensors (modeldeploy.v2): every V2 datatype, BYTES as object arrays of bytes
v2_dtypes = numeric_dtypes | st.just("bytes")
v2_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def v2_tensors(draw: st.DrawFn, *, json_safe: bool = False) -> np.ndarray:
    """
    An array of any V2 datatype and shape (empty and 0-d included).

    With ``json_safe``, only what the JSON form carries: finite floats, UTF-8 BYTES.
    """
    dtype_name = draw(v2_dtypes)
    shape = draw(v2_shapes)
    if dtype_name == "bytes":
        element = st.text(max_size=6).map(str.encode) if json_safe else st.binary(max_size=6)
        items = draw(st.lists(element, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = np.dtype(dtype_name)
    elements = None
    if json_safe and dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=8 * dtype.itemsize)
    return draw(hnp.arrays(dtype, shape, elements=elements))


# validation: tensor specs over numeric dtypes, shapes that fit them, signatures
from modeldeploy.messages import Signature, TensorSpec  # noqa: E402

input_names = st.text(min_size=1, max_size=8)
spec_shapes = st.none() | st.lists(st.integers(-1, 3), max_size=3).map(tuple)


@st.composite
def tensor_specs(draw: st.DrawFn, dtypes: st.SearchStrategy[str] = numeric_dtypes) -> TensorSpec:
    """A TensorSpec of a numeric dtype; its shape may be None or hold -1 (free) dims."""
    return TensorSpec(draw(input_names), draw(dtypes), draw(spec_shapes))


@st.composite
def fitting_shapes(draw: st.DrawFn, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """A concrete shape that fits a spec's *shape* (any shape for None)."""
    if shape is None:
        return draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    return tuple(draw(st.integers(0, 3)) if d == -1 else d for d in shape)


@st.composite
def signatures(draw: st.DrawFn, min_inputs: int = 1, max_inputs: int = 4) -> Signature:
    """A Signature of numeric inputs with distinct names."""
    names = draw(st.lists(input_names, min_size=min_inputs, max_size=max_inputs, unique=True))
    specs = [TensorSpec(n, draw(numeric_dtypes), draw(spec_shapes)) for n in names]
    return Signature(specs)


# msgpack and pickle: every dtype whose values are plain bytes, either byte order
plain_dtypes = numeric_dtypes | st.sampled_from(
    ["complex64", "complex128", ">f8", ">i4", ">u2", "<M8[D]", "<m8[ms]", "S3", "<U2", ">U2"]
)


@st.composite
def numpy_scalars(draw: st.DrawFn) -> np.generic:
    """A NumPy scalar of any plain dtype, taken from a one-element array."""
    return draw(arrays(plain_dtypes).filter(lambda a: a.size > 0)).reshape(-1)[0]


# msgpack: ints across int64 and uint64, bytes, str/int/bytes keys, arrays and NumPy scalars
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | uint64_ints
    | any_floats
    | text
    | st.binary()
    | arrays(plain_dtypes)
    | numpy_scalars(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(text | uint64_ints | st.binary(), inner, max_size=4)
    ),
    max_leaves=16,
)

# pickle (restricted loader): adds complex, tuple, set, frozenset, bytearray
pickle_hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | text | st.binary(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
pickle_values = st.recursive(
    pickle_hashables
    | st.complex_numbers()
    | st.binary().map(bytearray)
    | arrays(plain_dtypes)
    | numpy_scalars(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.sets(pickle_hashables, max_size=3)
        | st.dictionaries(pickle_hashables, inner, max_size=4)
    ),
    max_leaves=16,
)


def bit_equal(a: object, b: object) -> bool:
    """Deep equality, types included; floats, NumPy arrays and scalars compare their bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        assert isinstance(b, np.generic)
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return (a != a and b != b) or a == b
    if isinstance(a, complex):
        assert isinstance(b, complex)
        return bit_equal(a.real, b.real) and bit_equal(a.imag, b.imag)
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(bit_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(bit_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# JSON (modeldeploy.serializers.json): ints across int64 and uint64, str keys only
json_values = st.recursive(
    st.none() | st.booleans() | uint64_ints | finite_floats | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)
# the same with NaN and infinities, for JSON(allow_nan=True)
json_nan_values = st.recursive(
    st.none() | st.booleans() | uint64_ints | any_floats | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)
# what JSON.dumps must accept or refuse alike on orjson and the stdlib: the data
# model, values encoded as something else, and values outside it
json_any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | any_floats
    | text
    | st.sampled_from(["\ud800", "a\udfffb"])  # lone surrogates
    | st.binary(max_size=4)
    | st.uuids()
    | st.sets(st.integers(), max_size=2)
    | arrays()
    | arrays().filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(text | st.integers() | st.just("__tensor__"), inner, max_size=4)
    ),
    max_leaves=16,
)

# XML (modeldeploy.serializers.xml): every str (control characters included), any
# int, every float, bytes, str keys, and arrays of every dtype with raw bytes
xml_dtypes = numeric_dtypes | st.sampled_from(["complex64", "complex128"])
xml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | any_floats
    | text
    | st.binary()
    | arrays(xml_dtypes),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)

# HTTP requests (modeldeploy.http): paths near the real routes and far from them,
# the headers the core reads, with any value, and bodies valid or not
http_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
_path_segments = st.sampled_from(
    ["v2", "models", "health", "live", "ready", "versions", "infer", "predict", "metrics",
     "m", "other", "1", "2", ""]
) | st.text(max_size=4)  # fmt: skip
http_paths = st.lists(_path_segments, max_size=6).map(lambda parts: "/" + "/".join(parts))
http_headers = st.dictionaries(
    st.sampled_from(
        ["content-type", "accept", "x-request-timeout", "inference-header-content-length",
         "x-request-id"]
    ),
    st.sampled_from(
        ["application/json", "application/msgpack", "*/*", "text/plain", "0.5", "-1", "nan",
         "12", "1e400"]
    ) | st.text(max_size=12),
)  # fmt: skip
http_bodies = (
    st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.just(b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}')
)

# API Gateway results (modeldeploy.adapters.decorator): media types sent as text or base64
response_media_types = st.sampled_from(
    ["application/json", "application/msgpack", "text/plain; charset=utf-8", "image/png",
     "application/octet-stream", "application/problem+json", "APPLICATION/XML", ""]
)  # fmt: skip

# the demo model's requests (modeldeploy.demo): rows of 4 features in cm
demo_flowers = st.lists(
    st.lists(st.floats(0.0, 10.0, width=32), min_size=4, max_size=4), min_size=1, max_size=8
)

# documents modeldeploy.alerts.to_yaml writes: mappings with text keys, lists, text, numbers
yaml_documents = st.recursive(
    st.text() | st.integers(-(2**53), 2**53) | finite_floats | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
