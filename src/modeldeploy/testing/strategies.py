"""
Hypothesis strategies for the data model of each serializer, and equalities to check them.

Every value a strategy draws is one its serializer must round-trip:
``loads(dumps(x))`` equals ``x`` (with :func:`nan_equal` or :func:`bit_equal`,
since NaN is not equal to itself). Use them to test your own codec, a model's
pre- and post-processing, or a client that speaks to a service:

>>> from hypothesis import given
>>> import modeldeploy as md
>>> from modeldeploy.testing import strategies
>>> @given(strategies.for_serializer(md.MsgPack()))
... def test_roundtrip(value):
...     codec = md.MsgPack()
...     assert strategies.bit_equal(codec.loads(codec.dumps(value)), value)
>>> test_roundtrip()

Needs hypothesis (``pip install "modeldeploy[testing]"``); strategies that draw
arrays need numpy too, imported when the first array is drawn.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if exc.name != "hypothesis":
        raise
    raise ModuleNotFoundError(
        "modeldeploy.testing.strategies needs hypothesis: pip install 'modeldeploy[testing]'",
        name="hypothesis",
    ) from exc

if TYPE_CHECKING:
    import numpy as np

    from ..interfaces import Serializer

__all__ = [
    "any_floats",
    "arrays",
    "bit_equal",
    "common_values",
    "finite_floats",
    "for_serializer",
    "int64",
    "json_nan_values",
    "json_values",
    "msgpack_values",
    "nan_equal",
    "numeric_dtypes",
    "numpy_scalars",
    "pickle_hashables",
    "pickle_values",
    "plain_dtypes",
    "protobuf_values",
    "text",
    "uint64_ints",
    "v2_dtypes",
    "v2_tensors",
    "xml_dtypes",
    "xml_values",
]

# scalars every self-describing format carries exactly
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True)
int64 = st.integers(-(2**63), 2**63 - 1)
uint64_ints = st.integers(-(2**63), 2**64 - 1)
text = st.text()

# NumPy dtypes whose values round-trip bit-exactly through raw bytes
numeric_dtypes = st.sampled_from(
    [
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    ]
)  # fmt: skip
# msgpack and pickle: every dtype whose values are plain bytes, either byte order
plain_dtypes = numeric_dtypes | st.sampled_from(
    ["complex64", "complex128", ">f8", ">i4", ">u2", "<M8[D]", "<m8[ms]", "S3", "<U2", ">U2"]
)
xml_dtypes = numeric_dtypes | st.sampled_from(["complex64", "complex128"])


def _numpy() -> tuple[Any, Any]:
    # imported at draw time: strategies without arrays need no numpy
    return importlib.import_module("numpy"), importlib.import_module("hypothesis.extra.numpy")


@st.composite
def arrays(draw: st.DrawFn, dtypes: st.SearchStrategy[str] = numeric_dtypes) -> np.ndarray:
    """Arrays of any of *dtypes* and any shape (empty and 0-d included), NaNs allowed."""
    numpy, hnp = _numpy()
    dtype = numpy.dtype(draw(dtypes))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    array: np.ndarray = draw(hnp.arrays(dtype, shape))
    return array


@st.composite
def numpy_scalars(draw: st.DrawFn) -> np.generic:
    """A NumPy scalar of any plain dtype, taken from a one-element array."""
    scalar: np.generic = draw(arrays(plain_dtypes).filter(lambda a: a.size > 0)).reshape(-1)[0]
    return scalar


def _containers(
    leaves: st.SearchStrategy[Any], keys: st.SearchStrategy[Any] = text
) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=16,
    )


# what every backend round-trips (the serializers' contract suite)
common_values = _containers(st.none() | st.booleans() | int64 | finite_floats | text)

# JSON: ints across int64 and uint64, str keys only; with allow_nan=True, NaN and infinities
json_values = _containers(st.none() | st.booleans() | uint64_ints | finite_floats | text)
json_nan_values = _containers(st.none() | st.booleans() | uint64_ints | any_floats | text)

# protobuf: ints across int64 and uint64, every float, bytes, str-keyed maps, arrays
protobuf_values = _containers(
    st.none() | st.booleans() | uint64_ints | any_floats | text | st.binary() | arrays()
)

# msgpack: ints across int64 and uint64, bytes, str/int/bytes keys, arrays and NumPy scalars
msgpack_values = _containers(
    st.none()
    | st.booleans()
    | uint64_ints
    | any_floats
    | text
    | st.binary()
    | arrays(plain_dtypes)
    | numpy_scalars(),
    keys=text | uint64_ints | st.binary(),
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

# XML: every str (control characters included), any int, every float, bytes, str keys,
# arrays of every numeric and complex dtype
xml_values = _containers(
    st.none()
    | st.booleans()
    | st.integers()
    | any_floats
    | text
    | st.binary()
    | arrays(xml_dtypes)
)

_BY_SERIALIZER = {
    "json": json_values,
    "msgpack": msgpack_values,
    "pickle": pickle_values,
    "protobuf": protobuf_values,
    "xml": xml_values,
}


def for_serializer(serializer: Serializer | str) -> st.SearchStrategy[Any]:
    """
    The strategy of the data model *serializer* round-trips.

    Args:
        serializer: A serializer (its ``name`` is used) or a registry name:
            ``json``, ``msgpack``, ``pickle``, ``protobuf`` or ``xml``. ``JSON``
            with ``allow_nan=True`` gets NaN and infinities too; a third-party
            backend gets the values every backend carries.

    .. versionadded:: 0.1.0
    """
    if isinstance(serializer, str):
        return _BY_SERIALIZER.get(serializer, common_values)
    if serializer.name == "json" and getattr(serializer, "allow_nan", False):
        return json_nan_values
    return _BY_SERIALIZER.get(serializer.name, common_values)


# V2 tensors (modeldeploy.v2): every V2 datatype, BYTES as object arrays of bytes
v2_dtypes = numeric_dtypes | st.just("bytes")


@st.composite
def v2_tensors(draw: st.DrawFn, *, json_safe: bool = False) -> np.ndarray:
    """
    An array of any V2 datatype and shape (empty and 0-d included).

    With ``json_safe``, only what the JSON form carries: finite floats, UTF-8 BYTES.
    """
    numpy, hnp = _numpy()
    dtype_name = draw(v2_dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype_name == "bytes":
        element = st.text(max_size=6).map(str.encode) if json_safe else st.binary(max_size=6)
        size = int(numpy.prod(shape))
        items = draw(st.lists(element, min_size=size, max_size=size))
        array: np.ndarray = numpy.empty(len(items), dtype=object)
        array[:] = items
        shaped: np.ndarray = array.reshape(shape)
        return shaped
    dtype = numpy.dtype(dtype_name)
    elements = None
    if json_safe and dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=8 * dtype.itemsize)
    tensor: np.ndarray = draw(hnp.arrays(dtype, shape, elements=elements))
    return tensor


def _is_array(value: object) -> bool:
    numpy = sys.modules.get("numpy")  # an array exists only once numpy is imported
    return numpy is not None and isinstance(value, numpy.ndarray)


def nan_equal(a: object, b: object) -> bool:
    """
    Deep equality where NaN equals NaN and arrays compare dtype, shape and values.

    .. versionadded:: 0.1.0
    """
    if _is_array(a) or _is_array(b):
        numpy, _ = _numpy()
        return (
            isinstance(a, numpy.ndarray)
            and isinstance(b, numpy.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(numpy.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
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


def bit_equal(a: object, b: object) -> bool:
    """
    Deep equality, types included; floats, NumPy arrays and scalars compare their bits.

    .. versionadded:: 0.1.0
    """
    if type(a) is not type(b):
        return False
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(a, numpy.ndarray):
            assert isinstance(b, numpy.ndarray)
            return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
        if isinstance(a, numpy.generic):
            assert isinstance(b, numpy.generic)
            return bool(a.dtype == b.dtype and a.tobytes() == b.tobytes())
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
