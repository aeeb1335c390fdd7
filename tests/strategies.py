"""Every Hypothesis strategy the suite uses, in one place."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# monitor events: few distinct label values, so label sets repeat within one example
from modeldeploy.events import BatchExecuted, RequestFinished

# the data models of the serializers live in the package, for users' tests too
from modeldeploy.testing.strategies import (  # noqa: F401  # re-exported
    any_floats,
    arrays,
    bit_equal,
    common_values,
    finite_floats,
    int64,
    json_nan_values,
    json_values,
    msgpack_values,
    nan_equal,
    numeric_dtypes,
    numpy_scalars,
    pickle_hashables,
    pickle_values,
    plain_dtypes,
    protobuf_values,
    text,
    uint64_ints,
    v2_dtypes,
    v2_tensors,
    xml_dtypes,
    xml_values,
)

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

# training columns for modeldeploy.reference_statistics: finite floats, repeats likely
feature_columns = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, 1.0, 2.0]), min_size=1
)

# the model store (modeldeploy.store): manifests with any JSON metadata and reference
from modeldeploy.store import FileEntry, Manifest  # noqa: E402

_name_tail = st.text(alphabet="abcXYZ019._-+", max_size=12)
store_names = st.builds(lambda head, tail: head + tail, st.sampled_from("aZ7"), _name_tail)
_file_names = st.builds(
    lambda head, tail: head + tail.replace("+", ""), st.sampled_from("mZ7"), _name_tail
)
_json_objects = st.dictionaries(text, json_values, max_size=4)
_file_entries = st.builds(
    FileEntry, st.binary(min_size=32, max_size=32).map(bytes.hex), st.integers(0, 2**40)
)
store_manifests = st.builds(
    Manifest,
    name=store_names,
    version=store_names,
    format=st.sampled_from(["json", "joblib", "onnx", "torch"]),
    created=st.datetimes().map(lambda d: d.isoformat(timespec="microseconds") + "+00:00"),
    files=st.dictionaries(_file_names, _file_entries, max_size=3),
    signature=st.none() | signatures(),
    metadata=_json_objects,
    reference=st.none() | _json_objects,
    factory=st.none() | st.just("package.module:build"),
    hmac=st.none() | st.binary(min_size=32, max_size=32).map(lambda b: "hmac-sha256:" + b.hex()),
)

# modeldeploy nginx-config: backend addresses (a name, IPv4 or bracketed IPv6, a port)
_hosts = (
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
    | st.ip_addresses(v=4).map(str)
    | st.ip_addresses(v=6).map(lambda address: f"[{address}]")
)
backend_addresses = st.builds(lambda host, port: f"{host}:{port}", _hosts, st.integers(1, 65535))


# V2 inference requests (modeldeploy.v2): the parsed JSON header and the binary part
# after it, as a client sends them, well formed or off in the ways a client gets wrong
_V2_RANGES = {
    "BOOL": None, "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1), "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
    "FP16": None, "FP32": None, "FP64": None, "BYTES": None,
}  # fmt: skip
_V2_ITEMSIZES = {
    "BOOL": 1, "INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8, "UINT8": 1,
    "UINT16": 2, "UINT32": 4, "UINT64": 8, "FP16": 2, "FP32": 4, "FP64": 8,
}  # fmt: skip
# what a JSON element of the wrong kind may be
_v2_stray_elements = (
    st.booleans() | st.none() | st.text(max_size=2) | st.integers() | finite_floats | st.just([])
)


def _v2_elements(datatype: str, well_formed: bool) -> st.SearchStrategy[Any]:
    """JSON elements of *datatype*: in range when *well_formed*, else near and past its edges."""
    bounds = _V2_RANGES[datatype]
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.text(max_size=3)
    if bounds is not None:
        low, high = bounds
        if well_formed:
            return st.integers(low, high)
        return st.integers(low - 2, high + 2) | st.sampled_from([low, high]) | st.integers()
    if well_formed:  # the sum of squares of a few of these stays inside float32
        return st.floats(-1e15, 1e15) | st.integers(-(2**53), 2**53)
    return (
        finite_floats
        | st.floats(-1e4, 1e4)
        # float32's largest, the midpoint above it (rounds to inf), and past it
        | st.sampled_from([3.4028234663852886e38, 3.4028235677973362e38, 3.4028235677973366e38])
        | st.sampled_from([3.5e38, -1e39, 1e300, 65504.0, 65520.0, 2.0**-149, -0.0])
        | st.integers(-(2**70), 2**70)
        | st.sampled_from([2**24 + 1, 2**53 + 1, 10**400])
    )


def _nested(items: list[Any], shape: list[int]) -> Any:
    """*items* (row-major) as nested lists of *shape*."""
    if len(shape) <= 1:
        return items
    step = len(items) // shape[0] if shape[0] else 0
    return [_nested(items[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def v2_request_parts(
    draw: st.DrawFn, *, well_formed: bool = False
) -> tuple[dict[str, Any], bytes, bool]:
    """
    A V2 request: ``(header, tail, binary)``.

    *header* is the JSON part as parsed, *tail* the binary tensors after it,
    *binary* whether the request gives a header length. With *well_formed*, only
    the requests every client sends: distinct names, flat numeric data of the
    right length in range, binary tensors of the right size, no empty tensor,
    only the protocol's parameters.
    """
    binary = draw(st.booleans())
    # well formed: BOOL and BYTES tensors need a look at each element, the general path's
    datatypes = sorted(_V2_RANGES) if not well_formed else sorted(set(_V2_ITEMSIZES) - {"BOOL"})
    inputs: list[dict[str, Any]] = []
    tail = b""
    names = st.sampled_from(["x", "y", "z"]) if not well_formed else st.just(None)
    for index in range(draw(st.integers(0 if not well_formed else 1, 3))):
        name = draw(names) or f"in{index}"
        min_side = 1 if well_formed else 0
        shape: list[Any] = draw(st.lists(st.integers(min_side, 4), max_size=3))
        count = 1
        for dim in shape:
            count *= dim
        datatype = draw(st.sampled_from(datatypes))
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        use_binary = binary and draw(st.booleans())
        json_fits = datatype not in ("BOOL", "FP16", "BYTES")
        if well_formed and not use_binary and not json_fits:
            use_binary = binary
            if not use_binary:
                datatype = tensor["datatype"] = "FP32"
        if use_binary and datatype != "BYTES":
            size = count * _V2_ITEMSIZES[datatype]
            if not well_formed:
                size = max(0, size + draw(st.sampled_from([0, 0, 0, -1, 1, 8])))
            payload = draw(st.binary(min_size=size, max_size=size))
            if datatype == "BOOL" and draw(st.booleans()):
                payload = bytes(b & 1 for b in payload)
            tensor["parameters"] = {"binary_data_size": len(payload)}
            tail += payload
        elif use_binary:  # BYTES: length-prefixed elements
            items = draw(st.lists(st.binary(max_size=3), min_size=count, max_size=count))
            payload = b"".join(len(b).to_bytes(4, "little") + b for b in items)
            tensor["parameters"] = {"binary_data_size": len(payload)}
            tail += payload
        else:
            elements = _v2_elements(datatype, well_formed)
            data = draw(st.lists(elements, min_size=count, max_size=count))
            if not well_formed:
                if data and draw(st.integers(0, 3)) == 0:  # one stray element
                    data[draw(st.integers(0, len(data) - 1))] = draw(_v2_stray_elements)
                if draw(st.integers(0, 5)) == 0:
                    data = data[:-1] if data else [0]
                if draw(st.booleans()):
                    data = _nested(data, shape)
            tensor["data"] = data
        if not well_formed and draw(st.integers(0, 5)) == 0:  # a field wrong or missing
            key = draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))
            tensor[key] = draw(
                st.none()
                | st.just({})
                | st.just({"shared_memory_region": "r"})
                | st.just({"binary_data_size": True})
                | st.just([1, -1])
                | st.just([1.0])
                | st.just("BF16")
                | st.just([2**49, 2**49])
            )
            if tensor[key] is None:
                del tensor[key]
        inputs.append(tensor)
    header: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        header["id"] = draw(
            st.text(max_size=3) | (st.integers() if not well_formed else st.none())
        )
    if draw(st.booleans()):
        options = st.booleans() if well_formed else st.booleans() | st.none() | st.integers(0, 1)
        header["parameters"] = draw(
            st.fixed_dictionaries({}, optional={"binary_data_output": options})
        )
    if draw(st.booleans()):
        output_parameters = st.fixed_dictionaries({}, optional={"binary_data": st.booleans()})
        if not well_formed:
            output_parameters |= st.just({"binary_data": 1}) | st.just({"classification": 2})
        header["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["a", "b", "c"])},
                    optional={"parameters": output_parameters},
                ),
                max_size=3,
                unique_by=(lambda o: o["name"]) if well_formed else None,
            )
        )
    if not well_formed and binary and draw(st.integers(0, 5)) == 0:
        tail += b"\0"
    return header, tail, binary


# HTTP/1.1 requests on the wire (modeldeploy.servers.gunicorn's framing): a head, a body
# framed by Content-Length or chunks (extensions, trailers), then the request's body bytes
@st.composite
def wire_requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(the request's bytes, its body) for a valid HTTP/1.1 request gunicorn accepts."""
    method = draw(st.sampled_from(["GET", "POST", "PUT"]))
    path = draw(st.sampled_from(["/", "/v2/models/demo/infer", "/predict?x=1"]))
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    extra = draw(
        st.lists(
            st.sampled_from(["Accept: */*", "X-Request-Id: 7", "X-Pad: " + "p" * 300]), max_size=3
        )
    )
    head += extra
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = draw(st.binary(max_size=3000)) if framing != "none" else b""
    if draw(st.booleans()) and framing != "none":
        head.append("Expect: 100-continue")
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        wire = body
    elif framing == "chunked":
        head.append(
            draw(st.sampled_from(["Transfer-Encoding: chunked", "transfer-encoding:  chunked "]))
        )
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        wire = b""
        for piece in pieces:
            if piece:
                ext = draw(st.sampled_from([b"", b";a=b", b' ; name="q"']))
                wire += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
        wire += b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"])) + b"\r\n"
    else:
        wire = b""
    lead = draw(st.sampled_from(["", "\r\n"]))  # one empty line before it is allowed
    return (lead + "\r\n".join(head) + "\r\n\r\n").encode() + wire, body
