"""
The Open Inference Protocol (KServe V2) codec, as pure functions.

Turns a V2 inference request body (JSON tensors and the binary tensor extension)
into NumPy arrays, model outputs back into a V2 response body, and builds the
metadata and error bodies. The gRPC half converts the protocol's protobuf
messages the same way. Nothing here speaks HTTP or gRPC: :class:`RestCodec` and
:class:`GrpcCodec` package these functions as the codecs that the service's one
request path runs (:mod:`modeldeploy.codecs`), so a V2 request is admitted,
limited, timed and observed exactly as a ``/predict`` request is.

Errors follow :mod:`modeldeploy.errors`: a body that breaks the protocol is a
:class:`~modeldeploy.errors.DecodeError` (400), a request that does not fit the
model's signature a :class:`~modeldeploy.errors.ValidationError` (400 over V2),
an output the client asked for as JSON that JSON cannot carry a
:class:`~modeldeploy.errors.NotAcceptableError` (406), outputs that cannot be
encoded at all an :class:`~modeldeploy.errors.EncodeError` (500).

This module needs NumPy (``pip install 'modeldeploy[numpy]'``).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from itertools import chain
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._extras import needs

with needs("the Open Inference Protocol (modeldeploy.v2)"):
    import numpy as np
    import numpy.typing as npt

from ._version import __version__
from .codecs import VERSION_HEADER
from .errors import (
    DecodeError,
    EncodeError,
    ModelDeployError,
    NotAcceptableError,
    ValidationError,
)
from .messages import Request, Response, Signature, TensorSpec, make_response
from .serializers._base import DEFAULT_MAX_SIZE, check_size
from .serializers.json import check_memory, default_max_memory

if TYPE_CHECKING:
    from ._proto.inference import grpc_service_pb2 as pb
    from ._workers import Deployment

try:
    import orjson
except ImportError:  # pragma: no cover - the test venv has orjson
    orjson = None  # type: ignore[assignment]

__all__ = [
    "DATATYPES",
    "EXTENSIONS",
    "HEADER_LENGTH",
    "GrpcCodec",
    "InferRequest",
    "RequestedOutput",
    "RestCodec",
    "datatype_to_dtype",
    "decode_infer_request",
    "dtype_to_datatype",
    "dumps_json",
    "encode_infer_response",
    "error_body",
    "infer_request_from_grpc",
    "infer_response_to_grpc",
    "inputs_for_predictor",
    "model_metadata",
    "model_metadata_to_grpc",
    "outputs_from_prediction",
    "parse_grpc_request",
    "parse_header_length",
    "server_metadata",
    "server_metadata_to_grpc",
]

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
"""The header that gives the JSON part's length when binary tensors follow it."""

EXTENSIONS: Final = ("binary_tensor_data",)
"""The protocol extensions this codec implements, for the server metadata."""

DEFAULT_OUTPUT_NAME: Final = "output0"
"""The output name a model's single, unnamed return value gets."""

# V2 datatype -> NumPy dtype. Binary tensors are little-endian whatever the host.
DATATYPES: Final[Mapping[str, np.dtype[Any]]] = MappingProxyType(
    {
        "BOOL": np.dtype("?"),
        "INT8": np.dtype("<i1"),
        "INT16": np.dtype("<i2"),
        "INT32": np.dtype("<i4"),
        "INT64": np.dtype("<i8"),
        "UINT8": np.dtype("<u1"),
        "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"),
        "UINT64": np.dtype("<u8"),
        "FP16": np.dtype("<f2"),
        "FP32": np.dtype("<f4"),
        "FP64": np.dtype("<f8"),
        "BYTES": np.dtype(object),
    }
)
"""Every V2 datatype and the NumPy dtype its tensors decode to (BYTES: object of bytes)."""

_KIND_SIZE_TO_DATATYPE: Final = {
    (dt.kind, dt.itemsize): name for name, dt in DATATYPES.items() if name != "BYTES"
}
_TEXT_KINDS: Final = frozenset("OSU")
# element types JSON may carry for each datatype family
_JSON_TYPES: Final = {"b": frozenset({bool}), "i": frozenset({int}), "u": frozenset({int})}
_JSON_FLOAT_TYPES: Final = frozenset({int, float})
_JSON_TEXT_TYPES: Final = frozenset({str})
_MAX_DIMS: Final = 32  # NumPy 1.x's limit; 2.x allows 64
_MAX_ELEMENTS: Final = 2**48  # far past any body limit, well inside NumPy's index range
_LENGTH = struct.Struct("<I")
_UNSUPPORTED_PARAMETERS: Final = ("shared_memory_region", "classification")
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

JSONValue = Any


# -- datatypes -------------------------------------------------------------------------


def datatype_to_dtype(datatype: str) -> np.dtype[Any]:
    """
    Return the NumPy dtype a V2 tensor of *datatype* decodes to.

    Args:
        datatype: A V2 datatype name such as ``"FP32"`` or ``"BYTES"``.

    Raises:
        DecodeError: *datatype* is not a V2 datatype this codec supports.

    .. versionadded:: 0.1.0
    """
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise DecodeError(f"unsupported datatype {datatype!r}") from None


def dtype_to_datatype(dtype: npt.DTypeLike) -> str:
    """
    Return the V2 datatype name for a NumPy dtype.

    Object, bytes (``S``) and str (``U``) dtypes are ``"BYTES"``; byte order does
    not matter.

    Args:
        dtype: Anything :func:`numpy.dtype` accepts.

    Raises:
        EncodeError: The dtype has no V2 datatype (complex, datetime, ...).

    .. versionadded:: 0.1.0
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise EncodeError(f"{dtype!r} is not a NumPy dtype") from exc
    if dt.kind in _TEXT_KINDS:
        return "BYTES"
    try:
        return _KIND_SIZE_TO_DATATYPE[dt.kind, dt.itemsize]
    except KeyError:
        raise EncodeError(f"NumPy dtype {dt.name} has no V2 datatype") from None


# -- the request -----------------------------------------------------------------------


@attrs.frozen
class RequestedOutput:
    """
    One output a V2 request asks for.

    Attributes:
        name: The output's name.
        binary_data: ``True`` or ``False`` when the request says how to send this
            output; ``None`` to follow the request's ``binary_data_output``.
        parameters: The output's other parameters, as sent.

    .. versionadded:: 0.1.0
    """

    name: str
    binary_data: bool | None = None
    parameters: Mapping[str, Any] = attrs.field(default=_EMPTY, repr=False)


@attrs.frozen(eq=False)
class InferRequest:
    """
    One decoded V2 inference request.

    Compares by identity: the arrays it holds have no single truth value.

    Attributes:
        inputs: Input name to array, in the order the request listed them.
            Binary tensors are read-only views of the request body.
        id: The request's ``id``, echoed in the response; ``None`` when absent.
        parameters: The request's ``parameters``, as sent.
        outputs: The requested outputs in request order; empty asks for all.

    .. versionadded:: 0.1.0
    """

    inputs: Mapping[str, npt.NDArray[Any]]
    id: str | None = None
    parameters: Mapping[str, Any] = attrs.field(default=_EMPTY)
    outputs: tuple[RequestedOutput, ...] = ()

    @property
    def binary_data_output(self) -> bool:
        """Whether outputs default to binary form (the ``binary_data_output`` parameter)."""
        return self.parameters.get("binary_data_output") is True


def parse_header_length(value: str | None) -> int | None:
    """
    Parse an ``Inference-Header-Content-Length`` header value.

    Args:
        value: The raw header value, or ``None`` when the header is absent.

    Raises:
        DecodeError: The value is not a non-negative decimal integer.

    .. versionadded:: 0.1.0
    """
    if value is None:
        return None
    text = value.strip()
    # 20 digits already pass any body size; int() of thousands of digits raises
    if not text.isdigit() or not text.isascii() or len(text) > 20:
        raise DecodeError(f"{HEADER_LENGTH} must be a non-negative integer, not {value!r}")
    return int(text)


def decode_infer_request(
    body: bytes | memoryview,
    header_length: int | None = None,
    *,
    max_body_size: int | None = DEFAULT_MAX_SIZE,
) -> InferRequest:
    """
    Decode a V2 inference request body.

    With *header_length*, the first *header_length* bytes are the JSON request
    and the rest holds the binary tensors of the inputs that carry a
    ``binary_data_size`` parameter, in input order. Binary tensors decode without
    a copy, as read-only views of *body*; JSON tensors may be nested or flat.

    Args:
        body: The whole request body.
        header_length: The ``Inference-Header-Content-Length`` value, or ``None``
            when the body is JSON alone.
        max_body_size: Largest body accepted, in bytes; ``None`` for no limit.

    Raises:
        PayloadTooLargeError: The body is over *max_body_size*.
        DecodeError: The body breaks the protocol: not JSON, a missing or
            mistyped field, an unknown datatype, a shape that does not match the
            data, a value out of range for its datatype, binary sizes that do not
            add up, duplicate input names.

    .. versionadded:: 0.1.0
    """
    if max_body_size is not None:
        check_size(body, max_body_size, "V2 request")
    view = memoryview(body).cast("B") if isinstance(body, memoryview) else memoryview(body)
    size = view.nbytes
    if header_length is None:
        header_end = size
    elif isinstance(header_length, bool) or not isinstance(header_length, int):
        raise DecodeError(f"{HEADER_LENGTH} must be an integer")
    elif not 0 <= header_length <= size:
        raise DecodeError(f"{HEADER_LENGTH} is {header_length} but the body has only {size} bytes")
    else:
        header_end = header_length
    header = _loads(view[:header_end], max_body_size)
    binary = header_length is not None
    request = _decode_common(header, view, header_end, binary)
    if request is None:
        request = _decode_header(header, view, header_end, binary)
    return request


def _decode_header(header: Any, view: memoryview, header_end: int, binary: bool) -> InferRequest:
    """Decode the parsed JSON *header* (and the binary tensors after it), checking every field.

    The general path: each check has its own message. *binary* says whether the
    request gave a header length (so inputs may carry ``binary_data_size``).
    """
    if not isinstance(header, dict):
        raise DecodeError("the inference request must be a JSON object")
    request_id = _optional_str(header, "id", "the request")
    parameters = _parameters(header, "the request")
    binary_default = parameters.get("binary_data_output")
    if binary_default is not None and not isinstance(binary_default, bool):
        raise DecodeError("parameter 'binary_data_output' must be a boolean")

    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list):
        raise DecodeError("'inputs' must be a list of input tensors")
    inputs: dict[str, npt.NDArray[Any]] = {}
    size = view.nbytes
    offset = header_end
    for index, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise DecodeError(f"input #{index} must be a JSON object")
        name, datatype, shape = _tensor_header(raw, index)
        if name in inputs:
            raise DecodeError(f"input {name!r} appears more than once")
        tensor_parameters = _parameters(raw, f"input {name!r}")
        _reject_unsupported(tensor_parameters, "input", name)
        binary_size = tensor_parameters.get("binary_data_size")
        if binary_size is None:
            if "data" not in raw:
                raise DecodeError(f"input {name!r} has neither 'data' nor 'binary_data_size'")
            inputs[name] = _from_json(raw["data"], datatype, shape, name)
            continue
        if "data" in raw:
            raise DecodeError(f"input {name!r} has both 'data' and 'binary_data_size'")
        if not binary:
            raise DecodeError(
                f"input {name!r} has 'binary_data_size' but the request has no {HEADER_LENGTH}"
            )
        if isinstance(binary_size, bool) or not isinstance(binary_size, int) or binary_size < 0:
            raise DecodeError(f"input {name!r}: 'binary_data_size' must be a non-negative integer")
        if binary_size > size - offset:
            raise DecodeError(
                f"input {name!r}: 'binary_data_size' {binary_size} runs past the end of the body"
            )
        inputs[name] = _from_binary(view, offset, binary_size, datatype, shape, name)
        offset += binary_size
    if offset != size:
        raise DecodeError(
            f"{size - offset} bytes after the binary tensors belong to no input "
            "(check 'binary_data_size' and the header length)"
        )
    outputs = _requested_outputs(header.get("outputs"))
    return InferRequest(inputs=inputs, id=request_id, parameters=parameters, outputs=outputs)


# -- the common request, decoded in bulk ------------------------------------------------
# Most requests are well formed: flat numeric JSON data of the right length, or binary
# tensors of the right size, and no parameters but the protocol's own. _decode_common
# takes only those, checks them with a few type tests and one conversion per tensor
# instead of a call per field, and returns None for anything else; the general path
# then decodes the request or refuses it with its own message. It never refuses
# anything itself, so both paths raise the same errors; tests/test_v2_common.py
# checks that they decode the same arrays, dtypes included.
#
# Measured (RestCodec.decode of benchmarks/app.py's 64-float FP32 request, thread time,
# best of 20 loops): 13.4 us before this path, 7.9 us with it.

# datatype -> the stdlib array typecode whose items convert as NumPy's would: an
# integer code refuses floats and values out of its range (OverflowError), a float
# code rounds each Python number to the nearest value as NumPy's cast from float64
# does. Only on little-endian hosts, where the array's bytes are the datatype's.
_TYPECODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        datatype: code
        for datatype, dtype in DATATYPES.items()
        if sys.byteorder == "little" and dtype.kind in "iuf"
        for code in ("bhilq" if dtype.kind == "i" else "BHILQ" if dtype.kind == "u" else "fd")
        if array(code).itemsize == dtype.itemsize
        and (dtype.kind != "f" or dtype.itemsize >= 4)  # the stdlib has no half float
    }
)
# datatype -> what its flat JSON data needs, in one plain dict lookup: the typecode,
# the element types it may hold (never bool), its dtype, and whether a number may
# overflow it (FP32: a finite double past float32's range becomes an infinity; FP64
# cannot overflow, and an integer typecode raises OverflowError)
_BULK_JSON: Final[dict[str, tuple[str, frozenset[type], np.dtype[Any], bool]]] = {
    datatype: (
        code,
        _JSON_FLOAT_TYPES if DATATYPES[datatype].kind == "f" else _JSON_TYPES["i"],
        DATATYPES[datatype],
        code == "f",
    )
    for datatype, code in _TYPECODES.items()
}
# float32 +inf and -inf, little-endian
_FLOAT32_INFINITIES: Final = (b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff")
# the dtype of each datatype whose binary tensors decode without a check of their bytes
_PLAIN_BINARY: Final[Mapping[str, np.dtype[Any]]] = MappingProxyType(
    {name: dtype for name, dtype in DATATYPES.items() if name not in ("BOOL", "BYTES")}
)


def _decode_common(
    header: Any, view: memoryview, header_end: int, binary: bool
) -> InferRequest | None:
    """The common request decoded in bulk, or None to leave it to the general path."""
    if type(header) is not dict:
        return None
    request_id = header.get("id")
    parameters = header.get("parameters")
    if parameters is None:
        parameters = {}
    elif (
        type(parameters) is not dict
        or type(parameters.get("binary_data_output", False)) is not bool
    ):
        return None
    raw_inputs = header.get("inputs")
    if type(raw_inputs) is not list or (request_id is not None and type(request_id) is not str):
        return None
    inputs: dict[str, npt.NDArray[Any]] = {}
    size = view.nbytes
    offset = header_end
    for raw in raw_inputs:
        if type(raw) is not dict:
            return None
        name = raw.get("name")
        datatype = raw.get("datatype")
        shape = raw.get("shape")
        if (
            type(name) is not str
            or name in inputs
            or type(datatype) is not str
            or type(shape) is not list
            or len(shape) > _MAX_DIMS
        ):
            return None
        count = 1
        for dim in shape:
            if type(dim) is not int or dim < 0:
                return None
            count *= dim
        if not 0 < count <= _MAX_ELEMENTS:  # empty tensors take the general path
            return None
        tensor_parameters = raw.get("parameters")
        if tensor_parameters is None:
            tensor = _common_json(raw.get("data"), datatype, count)
        else:
            # only {"binary_data_size": n}, sized right for a tensor left in the body
            dtype = _PLAIN_BINARY.get(datatype)
            if (
                not binary
                or dtype is None
                or type(tensor_parameters) is not dict
                or len(tensor_parameters) != 1
                or "data" in raw
            ):
                return None
            binary_size = tensor_parameters.get("binary_data_size")
            if (
                type(binary_size) is not int
                or binary_size != count * dtype.itemsize
                or binary_size > size - offset
            ):
                return None
            tensor = np.frombuffer(view, dtype, count, offset)  # keywords cost 0.15 us
            # a writable body (bytearray) must not let the model change the caller's buffer
            tensor.flags.writeable = False
            offset += binary_size
        if tensor is None:
            return None
        # a flat tensor already has its shape (reshape costs 0.13 us)
        inputs[name] = tensor if len(shape) == 1 else tensor.reshape(shape)
    if offset != size:
        return None
    raw_outputs = header.get("outputs")
    outputs = () if raw_outputs is None else _common_outputs(raw_outputs)
    if outputs is None:
        return None
    # positional: attrs' __init__ takes keywords 0.3 us slower
    return InferRequest(inputs, request_id, parameters, outputs)


def _common_json(data: Any, datatype: str, count: int) -> npt.NDArray[Any] | None:
    """A flat list of *count* numbers of *datatype* as an array, or None for the general path."""
    bulk = _BULK_JSON.get(datatype)
    if bulk is None or type(data) is not list or len(data) != count:
        return None
    code, elements, dtype, may_overflow = bulk
    # the element types of the whole list in one pass: no bool among numbers, no
    # nested list, no string (1.2 us for 64 numbers)
    if not set(map(type, data)) <= elements:
        return None
    try:
        items = array(code, data)
    except OverflowError:  # an integer out of range: the general path says which
        return None
    if may_overflow:
        # inlined for speed (0.4 us a request where np.vdot took 0.8): look for the
        # bytes of an infinity, the only non-finite value JSON numbers can become; a
        # match across two elements only sends the request down the general path,
        # which checks each value and refuses a real one
        raw = items.tobytes()
        if raw.find(_FLOAT32_INFINITIES[0]) >= 0 or raw.find(_FLOAT32_INFINITIES[1]) >= 0:
            return None
    return np.frombuffer(items, dtype)  # keywords cost 0.15 us


# the requested outputs a client named before, by (name, binary_data, parameters sent):
# the same few each time, so an immutable one is reused (0.4 us an output saved); bounded
_OUTPUTS_SEEN: dict[tuple[str, bool | None, int], RequestedOutput] = {}
_OUTPUTS_SEEN_MAX: Final = 256
_OUTPUT_NAME_KEPT: Final = 128


def _common_outputs(value: Any) -> tuple[RequestedOutput, ...] | None:
    """The requested outputs, each with a name and at most a boolean ``binary_data``."""
    if type(value) is not list:
        return None
    outputs = []
    names = set()
    for raw in value:
        if type(raw) is not dict:
            return None
        name = raw.get("name")
        parameters = raw.get("parameters")
        if parameters is None:
            binary, sent = None, 0
        elif type(parameters) is not dict or not parameters.keys() <= {"binary_data"}:
            return None
        else:
            binary, sent = parameters.get("binary_data"), len(parameters)
        if (
            type(name) is not str
            or name in names
            or (binary is not None and type(binary) is not bool)
        ):
            return None
        names.add(name)
        key = (name, binary, sent)
        output = _OUTPUTS_SEEN.get(key)
        if output is None:
            output = RequestedOutput(name, binary, MappingProxyType(parameters or {}))
            if len(_OUTPUTS_SEEN) < _OUTPUTS_SEEN_MAX and len(name) <= _OUTPUT_NAME_KEPT:
                _OUTPUTS_SEEN[key] = output
        outputs.append(output)
    return tuple(outputs)


def _loads(data: memoryview, max_body_size: int | None = None) -> JSONValue:
    if max_body_size is not None:
        # a body limit bounds memory too: many small values decode into 30x their bytes
        check_memory(data, default_max_memory(max_body_size), "V2 request header")
    try:
        if orjson is not None:
            return orjson.loads(data)
        return json.loads(bytes(data), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise DecodeError("the inference request header is not valid JSON") from exc


def _reject_constant(name: str) -> None:
    # stdlib json accepts NaN and Infinity, which JSON (and orjson) do not
    raise ValueError(f"{name} is not JSON")


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"{where}: {key!r} must be a string")
    return value


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    value = obj.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: 'parameters' must be a JSON object")
    return value


def _reject_unsupported(parameters: Mapping[str, Any], kind: str, name: str) -> None:
    """Refuse the parameters of the *kind* ("input", "output") *name* this codec lacks."""
    for key in _UNSUPPORTED_PARAMETERS:
        if key in parameters:
            raise DecodeError(f"{kind} {name!r}: parameter {key!r} is not supported")


def _tensor_header(raw: dict[str, Any], index: int) -> tuple[str, str, tuple[int, ...]]:
    name = raw.get("name")
    if not isinstance(name, str):
        raise DecodeError(f"input #{index} needs a string 'name'")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise DecodeError(f"input {name!r}: unsupported datatype {datatype!r}")
    return name, datatype, _shape(raw.get("shape"), name)


def _shape(value: Any, name: str) -> tuple[int, ...]:
    """Input *name*'s shape, checked (the message is built only for an error: 0.2 us)."""
    if not isinstance(value, (list, tuple)) or not all(type(d) is int and d >= 0 for d in value):
        raise DecodeError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if len(value) > _MAX_DIMS:
        raise DecodeError(f"input {name!r}: 'shape' has more than {_MAX_DIMS} dimensions")
    # a zero dimension makes any shape empty, but NumPy still refuses to reshape
    # into one whose other dimensions overflow its index type
    if math.prod(d for d in value if d) > _MAX_ELEMENTS:
        raise DecodeError(f"input {name!r}: 'shape' is too large")
    return tuple(value)


def _flatten(data: Any, where: str) -> tuple[list[Any], frozenset[type]]:
    """Flatten nested JSON lists row-major, returning the elements and their types."""
    if not isinstance(data, list):
        raise DecodeError(f"{where}: 'data' must be a list")
    while True:
        types = frozenset(map(type, data))
        if list not in types:
            return data, types
        if len(types) != 1:
            raise DecodeError(f"{where}: 'data' mixes nested lists and values")
        data = list(chain.from_iterable(data))


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> npt.NDArray[Any]:
    where = f"input {name!r}"
    flat, types = _flatten(data, where)
    count = math.prod(shape)
    if len(flat) != count:
        raise DecodeError(
            f"{where}: shape {list(shape)} needs {count} elements, 'data' has {len(flat)}"
        )
    dtype = DATATYPES[datatype]
    array = _json_array(flat, types, dtype, datatype, where)
    return array.reshape(shape)


def _json_array(
    flat: list[Any], types: frozenset[type], dtype: np.dtype[Any], datatype: str, where: str
) -> npt.NDArray[Any]:
    kind = dtype.kind
    if kind == "O":
        if not types <= _JSON_TEXT_TYPES:
            raise DecodeError(f"{where}: BYTES data must be strings")
        array = np.empty(len(flat), dtype=object)
        try:
            array[:] = [s.encode() for s in flat]
        except UnicodeEncodeError as exc:
            raise DecodeError(f"{where}: a BYTES string is not valid Unicode") from exc
        return array
    if kind == "f":
        if not types <= _JSON_FLOAT_TYPES:
            raise DecodeError(f"{where}: {datatype} data must be numbers")
        try:
            wide = np.array(flat, dtype=np.float64)
        except (OverflowError, ValueError, TypeError) as exc:
            raise DecodeError(f"{where}: a value is out of range for {datatype}") from exc
        with np.errstate(over="ignore"):
            array = wide.astype(dtype)
        if not np.isfinite(array).all():
            raise DecodeError(f"{where}: a value is out of range for {datatype}")
        return array
    expected = _JSON_TYPES[kind]
    if not types <= expected:
        wanted = "booleans" if kind == "b" else "integers"
        raise DecodeError(f"{where}: {datatype} data must be {wanted}")
    if kind != "b" and flat:
        info = np.iinfo(dtype)
        if min(flat) < info.min or max(flat) > info.max:
            raise DecodeError(
                f"{where}: a value is out of range for {datatype} [{info.min}, {info.max}]"
            )
    return np.array(flat, dtype=dtype)


def _from_binary(
    view: memoryview, offset: int, size: int, datatype: str, shape: tuple[int, ...], name: str
) -> npt.NDArray[Any]:
    count = math.prod(shape)
    dtype = DATATYPES[datatype]
    if datatype == "BYTES":
        return _bytes_elements(view, offset, size, count, f"input {name!r}").reshape(shape)
    if count * dtype.itemsize != size:
        raise DecodeError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs "
            f"{count * dtype.itemsize} bytes, 'binary_data_size' is {size}"
        )
    if count == 0:
        array: npt.NDArray[Any] = np.empty(0, dtype=dtype)
    else:
        array = np.frombuffer(view, dtype, count, offset)  # keywords cost 0.15 us
    if datatype == "BOOL" and count and array.view(np.uint8).max() > 1:
        raise DecodeError(f"input {name!r}: BOOL bytes must be 0 or 1")
    array = array.reshape(shape)
    # a writable body (bytearray) must not let the model change the caller's buffer
    array.flags.writeable = False
    return array


def _bytes_elements(
    view: memoryview, offset: int, size: int, count: int, where: str
) -> npt.NDArray[Any]:
    """Split length-prefixed BYTES elements; each is a 4-byte little-endian length."""
    if count * _LENGTH.size > size:
        raise DecodeError(f"{where}: {size} bytes cannot hold {count} BYTES elements")
    end = offset + size
    items = []
    position = offset
    unpack = _LENGTH.unpack_from
    for _ in range(count):
        if position + _LENGTH.size > end:
            raise DecodeError(f"{where}: BYTES data ends inside an element's length")
        (length,) = unpack(view, position)
        position += _LENGTH.size
        if length > end - position:
            raise DecodeError(f"{where}: a BYTES element runs past 'binary_data_size'")
        items.append(view[position : position + length].tobytes())
        position += length
    if position != end:
        raise DecodeError(f"{where}: {end - position} bytes after the last BYTES element")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DecodeError("'outputs' must be a list")
    outputs = []
    seen = set()
    for index, raw in enumerate(value):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise DecodeError(f"requested output #{index} needs a string 'name'")
        name = raw["name"]
        if name in seen:
            raise DecodeError(f"output {name!r} is requested more than once")
        seen.add(name)
        parameters = _parameters(raw, f"output {name!r}")
        _reject_unsupported(parameters, "output", name)
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise DecodeError(f"output {name!r}: 'binary_data' must be a boolean")
        outputs.append(RequestedOutput(name=name, binary_data=binary, parameters=parameters))
    return tuple(outputs)


# -- the request against the model's signature ----------------------------------------


def inputs_for_predictor(
    request: InferRequest, signature: Signature | None = None
) -> npt.NDArray[Any] | dict[str, npt.NDArray[Any]]:
    """
    Shape a request's inputs for the model, checking them against its signature.

    A model with one input gets the array itself; any other gets a mapping from
    input name to array (in signature order when there is a signature). With a
    signature, every declared input must be sent but the optional ones, no
    other, each with the datatype the signature declares (the protocol does
    not convert: an ``INT64`` tensor for an ``FP32`` input is refused, as
    Triton refuses it), and every requested output must be declared (when the
    signature declares outputs). An input declared ``"object"`` takes any
    datatype. Shapes are left to the service's validator
    (:mod:`modeldeploy.validation`).

    Args:
        request: The decoded request.
        signature: The model's signature, or ``None`` to accept any inputs.

    Raises:
        ValidationError: An input is missing, unexpected or of another
            datatype, or an output unknown; the message names it.

    .. versionadded:: 0.1.0
    """
    return _plan(signature).model_input(request.inputs, request.outputs)


# decoded dtype -> its V2 datatype; every decoded tensor has one of DATATYPES' dtypes
_DATATYPE_OF_DTYPE: Final[dict[np.dtype[Any], str]] = {
    dtype: name for name, dtype in DATATYPES.items()
}


def _datatype_of(dtype: np.dtype[Any]) -> str:
    name = _DATATYPE_OF_DTYPE.get(dtype)
    return name if name is not None else dtype_to_datatype(dtype)


def _spec_datatype(spec: TensorSpec) -> str | None:
    """Return the V2 datatype a TensorSpec demands, ``None`` for any."""
    datatype = _SPEC_DATATYPES.get(spec.dtype, _UNKNOWN)
    if datatype is _UNKNOWN:
        if spec.dtype == "object":
            datatype = None
        elif spec.dtype in ("bytes", "str"):
            datatype = "BYTES"
        else:
            datatype = dtype_to_datatype(spec.dtype)
        if len(_SPEC_DATATYPES) < 64:  # dtype names come from code, not clients
            _SPEC_DATATYPES[spec.dtype] = datatype
    return datatype  # type: ignore[return-value]


_UNKNOWN: Final = object()
_SPEC_DATATYPES: dict[str, object] = {}


def outputs_from_prediction(
    prediction: Any, signature: Signature | None = None
) -> dict[str, npt.NDArray[Any]]:
    """
    Turn what a model returned into named output arrays.

    A mapping keeps its names; any other value is the model's single output, named
    after the signature's only output or ``"output0"``. An output the signature
    declares with a bool, int or float dtype is cast to it when the cast keeps its
    kind (Python floats, which a batch split with ``tolist()`` gives, become FP32
    for a ``float32`` output, as the model's metadata says); a value that does not
    fit raises, it is never wrapped. Other declared dtypes leave the output as is.

    Args:
        prediction: The model's return value for one request.
        signature: The model's signature, for the name of a single output.

    Raises:
        EncodeError: A value cannot become a NumPy array of a V2 datatype, or
            does not fit its declared dtype.

    .. versionadded:: 0.1.0
    """
    return _plan(signature).outputs(prediction)


def _cast_target(declared: str) -> tuple[np.dtype[Any], str] | None:
    """The dtype an output declared *declared* is cast to, and its name; None for no cast."""
    if declared in ("object", "str", "bytes"):
        return None
    try:
        target = np.dtype(declared)
    except Exception:  # not a NumPy name (np.dtype raises SyntaxError too): no cast
        return None
    # only to a plain bool, int or float dtype (V2 has no complex)
    if target.kind not in "biuf" or target.subdtype is not None:
        return None
    return target, declared


def _as_array(
    value: Any, name: str, cast: tuple[np.dtype[Any], str] | None = None
) -> npt.NDArray[Any]:
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise EncodeError(f"output {name!r} is not an array") from exc
    if cast is None:
        return array
    # cast within the target's kind only
    target, declared = cast
    if array.dtype == target or not np.can_cast(array.dtype, target, "same_kind"):
        return array
    if target.kind in "iu" and array.size:
        # an int cast wraps without a floating-point flag: check the range first
        info = np.iinfo(target)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise EncodeError(f"output {name!r} has values out of range for {declared}")
        return array.astype(target)
    try:
        with np.errstate(over="raise"):
            return array.astype(target)
    except FloatingPointError as exc:
        raise EncodeError(f"output {name!r} has values out of range for {declared}") from exc


class _Plan:
    """
    What a model's signature implies for every V2 request, worked out once.

    :func:`_plan` keeps one per signature, so a request costs a dict lookup
    instead of listing names, parsing dtype names and building the output
    casts again (inputs 0.9 -> 0.45 us, outputs 1.3 -> 0.4 us for the one-input,
    one-output model of benchmarks/app.py).
    """

    __slots__ = (
        "declared",
        "known_outputs",
        "output_name",
        "signature",
        "single",
        "specs",
        "targets",
    )

    def __init__(self, signature: Signature | None) -> None:
        self.signature = signature
        specs = signature.inputs if signature is not None else ()
        outputs = signature.outputs if signature is not None else ()
        # None: no signature, any inputs pass
        self.declared = [spec.name for spec in specs] if signature is not None else None
        # each input's spec and the dtype its arrays pass with at once (None: look closer)
        self.specs = [(spec, _fast_dtype(spec)) for spec in specs]
        # the only input's name, when there is one
        self.single = self.declared[0] if self.declared is not None and len(specs) == 1 else None
        self.known_outputs = frozenset(spec.name for spec in outputs) if outputs else None
        self.output_name = outputs[0].name if len(outputs) == 1 else DEFAULT_OUTPUT_NAME
        self.targets = {spec.name: _cast_target(spec.dtype) for spec in outputs}

    def model_input(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[RequestedOutput]
    ) -> npt.NDArray[Any] | dict[str, npt.NDArray[Any]]:
        """See :func:`inputs_for_predictor`."""
        declared = self.declared
        if declared is None:
            if len(inputs) == 1:
                return next(iter(inputs.values()))
            return dict(inputs)
        for name in inputs:
            if name not in declared:
                raise ValidationError(f"unexpected input {name!r}; the model takes {declared}")
        for spec, dtype in self.specs:
            array = inputs.get(spec.name)
            if array is None:
                if not spec.optional:
                    raise ValidationError(
                        f"missing input {spec.name!r}; the model takes {declared}"
                    )
            elif dtype is None or array.dtype != dtype:
                _check_datatype(spec, array)
        known = self.known_outputs
        if known is not None:
            for output in outputs:
                if output.name not in known:
                    raise ValidationError(
                        f"unknown output {output.name!r}; the model has {self._output_names()}"
                    )
        single = self.single
        if single is not None and single in inputs:
            return inputs[single]
        return {name: inputs[name] for name in declared if name in inputs}

    def outputs(self, prediction: Any) -> dict[str, npt.NDArray[Any]]:
        """See :func:`outputs_from_prediction`."""
        targets = self.targets
        # an array is never a mapping: skip the ABC check
        if type(prediction) is np.ndarray or not isinstance(prediction, Mapping):
            name = self.output_name
            return {name: _as_array(prediction, name, targets.get(name))}
        return {
            str(name): _as_array(value, str(name), targets.get(name))
            for name, value in prediction.items()
        }

    def _output_names(self) -> list[str]:
        assert self.signature is not None
        return [spec.name for spec in self.signature.outputs]


def _fast_dtype(spec: TensorSpec) -> np.dtype[Any] | None:
    """The dtype of the datatype *spec* demands; None when it takes any, or none fits."""
    try:
        datatype = _spec_datatype(spec)
    except EncodeError:  # raised again per request, when the input is sent
        return None
    return DATATYPES[datatype] if datatype is not None else None


def _check_datatype(spec: TensorSpec, array: npt.NDArray[Any]) -> None:
    """Refuse *array* for *spec* unless its dtype is of the datatype the spec demands."""
    expected = _spec_datatype(spec)
    if expected is not None:
        sent = _datatype_of(array.dtype)
        if sent != expected:
            raise ValidationError(
                f"input {spec.name!r}: datatype {sent} does not match the model's {expected}"
            )


_PLANS: dict[int, _Plan] = {}
_MAX_PLANS: Final = 64  # signatures come from code; a bound all the same


def _plan(signature: Signature | None) -> _Plan:
    """The :class:`_Plan` of *signature*, made on first use."""
    # keyed by identity: hashing a Signature hashes every spec (1-2 us); the plan
    # holds its signature, so the id cannot be reused while the entry lives
    plan = _PLANS.get(id(signature))
    if plan is None or plan.signature is not signature:
        plan = _Plan(signature)
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[id(signature)] = plan
    return plan


# -- the response ----------------------------------------------------------------------


def encode_infer_response(
    outputs: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str | None = None,
    id: str | None = None,  # the protocol's field name
    requested: Sequence[RequestedOutput] = (),
    binary_data_output: bool = False,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """
    Encode a V2 inference response.

    Outputs go as JSON tensors (flat, row-major) unless the request asked for
    binary data, per output (``binary_data``) or for all (``binary_data_output``);
    binary outputs follow the JSON in the order listed, and the headers then carry
    ``Inference-Header-Content-Length``.

    Args:
        outputs: Output name to array (anything :func:`numpy.asarray` takes).
        model_name: The model that answered.
        model_version: Its version, or ``None`` to leave it out.
        id: The request's ``id`` to echo, or ``None``.
        requested: The request's requested outputs; empty sends every output.
        binary_data_output: Binary form for outputs whose request does not say.
        parameters: Response ``parameters``, or ``None``.

    Returns:
        The body, and the headers that go with it (``Content-Type`` and, with
        binary outputs, ``Inference-Header-Content-Length``).

    Raises:
        ValidationError: A requested output is not among *outputs*.
        EncodeError: An output has no V2 datatype.
        NotAcceptableError: An output the client asked for as JSON cannot be
            JSON: a float output is NaN or infinite, a BYTES output is not
            UTF-8 (the binary form carries both).

    .. versionadded:: 0.1.0
    """
    body, header_length = _response_body(
        outputs, model_name, model_version, id, requested, binary_data_output, parameters
    )
    if header_length is None:
        return body, {"Content-Type": "application/json"}
    return body, {"Content-Type": "application/octet-stream", HEADER_LENGTH: header_length}


def _response_body(
    outputs: Mapping[str, Any],
    model_name: str,
    model_version: str | None,
    id: str | None,  # the protocol's field name
    requested: Sequence[RequestedOutput],
    binary_data_output: bool,
    parameters: Mapping[str, Any] | None,
) -> tuple[bytes, str | None]:
    """The response body, and the JSON part's length when binary outputs follow it."""
    if len(outputs) == 1 and id is None and not parameters and orjson is not None:
        binary: bool | None = binary_data_output
        if requested:  # only the one output, by name, binary or not
            asked = requested[0]
            if (
                len(requested) != 1
                or asked.name not in outputs
                or not asked.parameters.keys() <= {"binary_data"}
            ):
                binary = None
            elif asked.binary_data is not None:
                binary = asked.binary_data
        if binary is not None:
            answer = _one_output(outputs, model_name, model_version, binary)
            if answer is not None:
                return answer
    header: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if id is not None:
        header["id"] = id
    if parameters:
        header["parameters"] = dict(parameters)
    entries: list[dict[str, Any]] = []
    buffers: list[bytes | memoryview] = []
    floats: list[tuple[str, npt.NDArray[Any]]] = []  # JSON float arrays, checked below
    try:
        for name, binary in _selected_outputs(outputs, requested, binary_data_output):
            array = outputs[name]
            if type(array) is not np.ndarray:
                array = _as_array(array, name)
            datatype = _DATATYPE_OF_DTYPE.get(array.dtype) or dtype_to_datatype(array.dtype)
            entry: dict[str, Any] = {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
            }
            if binary:
                raw = _to_binary(array, datatype, name)
                entry["parameters"] = {"binary_data_size": len(raw)}
                buffers.append(raw)
            else:
                data = _to_json_data(array, datatype, name)
                if type(data) is np.ndarray and data.dtype.kind == "f":
                    floats.append((name, data))
                entry["data"] = data
            entries.append(entry)
        header["outputs"] = entries
        body = dumps_json(header)
    except ModelDeployError:
        _check_finite(floats)  # an earlier output's NaN is the error to report first
        raise
    # inlined for speed: orjson writes a NaN or an infinity in an array as null, so
    # only a body holding "null" needs its float outputs checked (np.isfinite().all()
    # costs 1.3 us an output; find() 0.18 us for a 200-byte body, ``in`` 0.4)
    if floats and body.find(b"null") >= 0:
        _check_finite(floats)
    if not buffers:
        return body, None
    return b"".join([body, *buffers]), str(len(body))


def _check_finite(floats: Iterable[tuple[str, npt.NDArray[Any]]]) -> None:
    """Refuse the first of these JSON float outputs that holds NaN or an infinity."""
    for name, flat in floats:
        if not np.isfinite(flat).all():
            raise _not_finite(name)


def _not_finite(name: str) -> NotAcceptableError:
    return NotAcceptableError(
        f"output {name!r} holds NaN or infinity, which JSON cannot carry; "
        "request it with the binary_data parameter"
    )


# (model name, version, output name, datatype) -> the body's bytes up to the shape
_JSON_PREFIXES: dict[tuple[str, str | None, str, str], bytes] = {}
_MAX_JSON_PREFIXES: Final = 256


def _one_output(
    outputs: Mapping[str, Any], model_name: str, model_version: str | None, binary: bool
) -> tuple[bytes, str | None] | None:
    """
    The body of the common answer, one numeric output, built from cached bytes.

    Inlined for speed (2.1 -> 1.2 us for 10 floats as JSON): the same bytes as
    the general path's, JSON or a binary tensor, with the names and datatype
    written once per model. None leaves the answer to the general path:
    another kind of output, or a NaN or infinity in JSON (orjson writes null),
    which that path refuses.
    """
    ((name, array),) = outputs.items()
    if type(array) is not np.ndarray or not array.dtype.isnative:
        return None
    datatype = _DATATYPE_OF_DTYPE.get(array.dtype)
    if datatype is None or datatype == "BYTES":
        return None
    key = (model_name, model_version, name, datatype)
    prefix = _JSON_PREFIXES.get(key)
    if prefix is None:
        header: dict[str, Any] = {"model_name": model_name}
        if model_version is not None:
            header["model_version"] = model_version
        # {"model_name":...,"outputs":[{"name":...,"datatype":...,"shape":
        prefix = (
            dumps_json(header)[:-1]
            + b',"outputs":['
            + dumps_json({"name": name, "datatype": datatype})[:-1]
            + b',"shape":'
        )
        if len(_JSON_PREFIXES) >= _MAX_JSON_PREFIXES:
            _JSON_PREFIXES.clear()
        _JSON_PREFIXES[key] = prefix
    shape = array.shape
    assert orjson is not None
    dims = b"[%d]" % shape[0] if len(shape) == 1 else orjson.dumps(shape)
    if binary:
        raw = _to_binary(array, datatype, name)
        tail = b',"parameters":{"binary_data_size":%d}}]}' % len(raw)
        head = b"".join((prefix, dims, tail))
        return b"".join((head, raw)), str(len(head))
    data = orjson.dumps(array.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)
    if data.find(b"null") >= 0:
        return None
    return b"".join((prefix, dims, b',"data":', data, b"}]}")), None


def _selected_outputs(
    outputs: Mapping[str, Any], requested: Sequence[RequestedOutput], default: bool
) -> Iterable[tuple[str, bool]]:
    if not requested:
        return [(name, default) for name in outputs]
    selected = []
    for output in requested:
        if output.name not in outputs:
            raise ValidationError(
                f"unknown output {output.name!r}; the model has {sorted(outputs)}"
            )
        selected.append(
            (output.name, default if output.binary_data is None else output.binary_data)
        )
    return selected


def _to_binary(array: npt.NDArray[Any], datatype: str, name: str) -> bytes | memoryview:
    if datatype == "BYTES":
        parts = []
        for item in _text_items(array, name):
            if len(item) >= 2**32:
                raise EncodeError(f"output {name!r} has a BYTES element over 4 GiB")
            parts.append(_LENGTH.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    little = np.ascontiguousarray(array, dtype=DATATYPES[datatype])
    # a byte view: join() copies it into the body once, with no tobytes() copy first
    return little.data.cast("B") if little.size else b""


def _text_items(array: npt.NDArray[Any], name: str) -> list[bytes]:
    items = []
    for item in array.ravel().tolist():
        if isinstance(item, bytes):
            items.append(item)
        elif isinstance(item, str):
            items.append(item.encode("utf-8", "surrogatepass"))
        else:
            raise EncodeError(
                f"output {name!r}: BYTES elements must be bytes or str, not {type(item).__name__}"
            )
    return items


def _to_json_data(array: npt.NDArray[Any], datatype: str, name: str) -> Any:
    if datatype == "BYTES":
        try:
            return [item.decode() for item in _text_items(array, name)]
        except UnicodeDecodeError as exc:
            raise NotAcceptableError(
                f"output {name!r} holds bytes that are not UTF-8, which JSON cannot carry; "
                "request it with the binary_data parameter"
            ) from exc
    flat = array.ravel()  # always C-contiguous
    if orjson is None:
        if flat.dtype.kind == "f" and not np.isfinite(flat).all():
            raise _not_finite(name)
        return flat.tolist()
    # orjson writes a contiguous native array directly, without Python floats; it
    # writes NaN and infinities as null, which _response_body looks for
    if type(flat) is np.ndarray and flat.dtype.isnative:
        return flat
    # a subclass (np.matrix ravels to 2-D) becomes a plain array, as orjson needs
    return np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))


def dumps_json(obj: Any) -> bytes:
    """
    Encode a JSON body: orjson when installed (NumPy arrays included), else stdlib json.

    Args:
        obj: JSON-ready values; with orjson, NumPy arrays too.

    Raises:
        EncodeError: *obj* is not JSON-serializable.

    .. versionadded:: 0.1.0
    """
    try:
        if orjson is not None:
            return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        raise EncodeError("the response is not JSON-serializable") from exc


# -- metadata and errors ---------------------------------------------------------------


def server_metadata(
    name: str = "modeldeploy",
    version: str = __version__,
    extensions: Sequence[str] = EXTENSIONS,
) -> dict[str, Any]:
    """
    Build the V2 server metadata body (``GET /v2``).

    Args:
        name: The server's name.
        version: The server's version.
        extensions: The protocol extensions served.

    .. versionadded:: 0.1.0
    """
    return {"name": name, "version": version, "extensions": list(extensions)}


def model_metadata(
    name: str,
    signature: Signature | None,
    *,
    versions: Sequence[str] = (),
    platform: str = "modeldeploy",
) -> dict[str, Any]:
    """
    Build the V2 model metadata body (``GET /v2/models/{name}``) from a signature.

    Each tensor's ``datatype`` comes from its NumPy dtype name (``"object"``,
    ``"bytes"`` and ``"str"`` are ``BYTES``) and its ``shape`` keeps ``-1`` for a
    free dimension; a tensor of any shape is published as ``[-1]``. An optional
    input carries ``"optional": true``.

    Args:
        name: The model's name.
        signature: Its signature, or ``None`` for no declared tensors.
        versions: The versions available.
        platform: The framework or backend that runs the model.

    Raises:
        EncodeError: A signature dtype has no V2 datatype.

    .. versionadded:: 0.1.0
    """
    specs_in = signature.inputs if signature is not None else ()
    specs_out = signature.outputs if signature is not None else ()
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [_tensor_metadata(spec) for spec in specs_in],
        "outputs": [_tensor_metadata(attrs.evolve(spec, optional=False)) for spec in specs_out],
    }


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": spec.name,
        "datatype": _spec_datatype(spec) or "BYTES",
        "shape": list(spec.shape) if spec.shape is not None else [-1],
    }
    if spec.optional:
        # Triton's model configuration word; the gRPC TensorMetadata has no such field
        metadata["optional"] = True
    return metadata


def error_body(error: ModelDeployError) -> dict[str, str]:
    """
    Build the V2 error body, ``{"error": message}``, from a client-safe error.

    .. versionadded:: 0.1.0
    """
    return {"error": error.message}


# -- gRPC messages ---------------------------------------------------------------------
# The protobuf module is imported on first use, so the HTTP codec works even where
# the generated code's protobuf runtime is missing.

# V2 datatype -> the InferTensorContents field that carries it (FP16 has none)
_CONTENTS_FIELDS: Final = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_CONTENTS_FIELDS: Final = frozenset(_CONTENTS_FIELDS.values())


@cache  # an import statement costs 0.3 us even when the module is loaded
def _pb() -> ModuleType:
    from ._proto.inference import grpc_service_pb2

    return grpc_service_pb2


def infer_request_from_grpc(message: pb.ModelInferRequest) -> InferRequest:
    """
    Decode a gRPC ``ModelInferRequest`` into an :class:`InferRequest`.

    Tensors come from ``raw_input_contents`` (one entry per input, laid out as
    binary tensors over HTTP, read without a copy) or from each input's typed
    ``contents``.

    Args:
        message: The request message.

    Raises:
        DecodeError: The message breaks the protocol, with the same checks as
            :func:`decode_infer_request`.

    .. versionadded:: 0.1.0
    """
    raw = message.raw_input_contents
    tensors = message.inputs  # each access of a repeated field costs 0.2 us
    if raw and len(raw) != len(tensors):
        raise DecodeError(f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs")
    inputs: dict[str, npt.NDArray[Any]] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        if name in inputs:
            raise DecodeError(f"input {name!r} appears more than once")
        datatype = tensor.datatype
        if datatype not in DATATYPES:
            raise DecodeError(f"input {name!r}: unsupported datatype {datatype!r}")
        shape = _shape(list(tensor.shape), name)
        parameters = _grpc_parameters(tensor.parameters)
        _reject_unsupported(parameters, "input", name)
        if raw:
            if tensor.HasField("contents"):
                raise DecodeError(f"input {name!r} has both contents and raw_input_contents")
            data = memoryview(raw[index])
            inputs[name] = _from_binary(data, 0, data.nbytes, datatype, shape, name)
        else:
            inputs[name] = _from_contents(tensor.contents, datatype, shape, name)
    outputs = []
    for output in message.outputs:
        output_parameters = _grpc_parameters(output.parameters)
        _reject_unsupported(output_parameters, "output", output.name)
        outputs.append(RequestedOutput(name=output.name, parameters=output_parameters))
    if len({output.name for output in outputs}) != len(outputs):
        raise DecodeError("an output is requested more than once")
    # positional: attrs' __init__ takes keywords 0.3 us slower
    return InferRequest(
        inputs, message.id or None, _grpc_parameters(message.parameters), tuple(outputs)
    )


def _grpc_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    if not parameters:  # most maps are empty: len() is cheaper than items() (0.08 us to 0.3)
        return {}
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice is not None else None
    return values


def _from_contents(
    contents: Any, datatype: str, shape: tuple[int, ...], name: str
) -> npt.NDArray[Any]:
    where = f"input {name!r}"
    field = _CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise DecodeError(f"{where}: {datatype} travels only in raw_input_contents")
    for other in _ALL_CONTENTS_FIELDS - {field}:
        if len(getattr(contents, other)):
            raise DecodeError(f"{where}: {datatype} data belongs in {field}, not {other}")
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise DecodeError(
            f"{where}: shape {list(shape)} needs {count} elements, {field} has {len(values)}"
        )
    dtype = DATATYPES[datatype]
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    items = list(values)
    if dtype.kind in "iu" and items:
        info = np.iinfo(dtype)
        if min(items) < info.min or max(items) > info.max:
            raise DecodeError(
                f"{where}: a value is out of range for {datatype} [{info.min}, {info.max}]"
            )
    return np.array(items, dtype=dtype).reshape(shape)


def infer_response_to_grpc(
    outputs: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str | None = None,
    id: str | None = None,  # the protocol's field name
    requested: Sequence[RequestedOutput] = (),
    parameters: Mapping[str, bool | int | float | str] | None = None,
) -> pb.ModelInferResponse:
    """
    Build a gRPC ``ModelInferResponse``, every tensor in ``raw_output_contents``.

    Raw contents carry every datatype (FP16 included) and cost one copy per
    output; every V2 client reads them.

    Args:
        outputs: Output name to array.
        model_name: The model that answered.
        model_version: Its version, or ``None``.
        id: The request's ``id`` to echo, or ``None``.
        requested: The request's requested outputs; empty sends every output.
        parameters: Response parameters, or ``None``.

    Raises:
        ValidationError: A requested output is not among *outputs*.
        EncodeError: An output has no V2 datatype.

    .. versionadded:: 0.1.0
    """
    response: pb.ModelInferResponse = _pb().ModelInferResponse(
        model_name=model_name, model_version=model_version or "", id=id or ""
    )
    for key, value in (parameters or {}).items():
        _set_parameter(response.parameters[key], value)
    for name, _binary in _selected_outputs(outputs, requested, True):
        array = _as_array(outputs[name], name)
        datatype = _datatype_of(array.dtype)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(bytes(_to_binary(array, datatype, name)))
    return response


def _grpc_tensor(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: spec[key] for key in ("name", "datatype", "shape")}


def _set_parameter(parameter: Any, value: bool | int | float | str) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        if value >= 2**63:
            parameter.uint64_param = value
        else:
            parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def server_metadata_to_grpc(metadata: Mapping[str, Any]) -> pb.ServerMetadataResponse:
    """
    Turn a :func:`server_metadata` body into a gRPC ``ServerMetadataResponse``.

    .. versionadded:: 0.1.0
    """
    response: pb.ServerMetadataResponse = _pb().ServerMetadataResponse(
        name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
    )
    return response


def model_metadata_to_grpc(metadata: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """
    Turn a :func:`model_metadata` body into a gRPC ``ModelMetadataResponse``.

    .. versionadded:: 0.1.0
    """
    messages = _pb()
    tensor = messages.ModelMetadataResponse.TensorMetadata
    response: pb.ModelMetadataResponse = messages.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[tensor(**_grpc_tensor(spec)) for spec in metadata["inputs"]],
        outputs=[tensor(**_grpc_tensor(spec)) for spec in metadata["outputs"]],
    )
    return response


# -- the codecs the service's one request path runs ------------------------------------


def _model_input(infer: InferRequest, deployment: Deployment) -> Any:
    """The decoded request's inputs, checked against the model and validated."""
    x = _plan(deployment.signature).model_input(infer.inputs, infer.outputs)
    validate = deployment.validate
    return x if validate is None else validate(x)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


class RestCodec:
    """
    The V2 REST codec (``POST /v2/models/{name}/infer``): JSON and binary tensors.

    Decodes with :func:`decode_infer_request`, checks the inputs with
    :func:`inputs_for_predictor` and the service's validator, and answers with
    :func:`encode_infer_response`. Errors are the protocol's
    ``{"error": message}``; a request that does not fit the model is the
    protocol's "bad request", 400 (not 422).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def decode(self, request: Request, deployment: Deployment, /) -> tuple[Any, InferRequest]:
        """Decode the body (the service has checked its size) and check it against the model."""
        length = request.headers.get("inference-header-content-length")
        body = request.body
        infer = None
        if length is None and type(body) is bytes and orjson is not None:
            # inlined for speed (a JSON body, the common request: 8.2 -> 7.3 us for 64
            # floats): parsed whole, then decoded in bulk; anything else, a body that is
            # not JSON included, takes decode_infer_request, which says what is wrong
            try:
                header = orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
            else:
                infer = _decode_common(header, memoryview(body), len(body), False)
        if infer is None:
            header_length = None if length is None else parse_header_length(length)
            infer = decode_infer_request(body, header_length, max_body_size=None)
        x = _plan(deployment.signature).model_input(infer.inputs, infer.outputs)
        validate = deployment.validate
        return (x if validate is None else validate(x)), infer

    def encode(
        self, reply: InferRequest, value: Any, request_id: str, deployment: Deployment, /
    ) -> Response:
        """Encode the model's output as the request asked (JSON or binary tensors)."""
        body, header_length = _response_body(
            _plan(deployment.signature).outputs(value),
            deployment.name,
            deployment.version,
            reply.id,
            reply.outputs,
            reply.binary_data_output,
            None,
        )
        if header_length is None:
            headers = {
                "content-type": "application/json",
                "x-request-id": request_id,
                VERSION_HEADER: deployment.version,
            }
        else:
            headers = {
                "content-type": "application/octet-stream",
                "inference-header-content-length": header_length,
                "x-request-id": request_id,
                VERSION_HEADER: deployment.version,
            }
        return make_response(200, headers, body)

    def error(self, error: ModelDeployError, request_id: str, /) -> Response:
        """The protocol's error body, ``{"error": message}``."""
        # the protocol's "bad request" is 400: a request that does not fit the model is one
        status = 400 if isinstance(error, ValidationError) else error.http_status
        headers = {"content-type": "application/json", "x-request-id": request_id}
        headers.update(error.headers())
        return Response(status, headers, dumps_json(error_body(error)))


class GrpcCodec:
    """
    The V2 gRPC codec (``ModelInfer``): the ``ModelInferRequest`` message.

    The gRPC adapter hands over the message grpc parsed
    (:attr:`Request.message <modeldeploy.Request.message>`) with its raw bytes
    as the body, so its size is checked like any body's. A success answers
    with the serialized ``ModelInferResponse``, every output in
    ``raw_output_contents``; an error with an empty body and its gRPC status
    and message in the ``grpc-status`` and ``grpc-message`` headers, which the
    adapter turns into the call's status.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def decode(self, request: Request, deployment: Deployment, /) -> tuple[Any, InferRequest]:
        """Decode the message and check it against the model."""
        message = request.message
        if message is None:
            message = parse_grpc_request(request.body)
        infer = infer_request_from_grpc(message)
        return _model_input(infer, deployment), infer

    def encode(
        self, reply: InferRequest, value: Any, request_id: str, deployment: Deployment, /
    ) -> Response:
        """Serialize the ``ModelInferResponse``."""
        message = infer_response_to_grpc(
            _plan(deployment.signature).outputs(value),
            model_name=deployment.name,
            model_version=deployment.version,
            id=reply.id,
            requested=reply.outputs,
        )
        return make_response(200, {"x-request-id": request_id}, message.SerializeToString())

    def error(self, error: ModelDeployError, request_id: str, /) -> Response:
        """The error's gRPC status in headers; any extra header (Retry-After) travels too."""
        headers = {
            "grpc-status": error.grpc_status,
            "grpc-message": error.message,
            "x-request-id": request_id,
        }
        # gRPC metadata keys are lower case
        headers.update(_lower(error.headers()))
        return Response(error.http_status, headers, b"")


def parse_grpc_request(body: bytes | memoryview) -> pb.ModelInferRequest:
    """
    Parse a serialized ``ModelInferRequest``.

    Raises:
        DecodeError: *body* is not one.

    .. versionadded:: 0.1.0
    """
    try:
        message: pb.ModelInferRequest = _pb().ModelInferRequest.FromString(bytes(body))
    except Exception as exc:  # protobuf's DecodeError, or a recursion limit
        raise DecodeError("the body is not a ModelInferRequest message") from exc
    return message
