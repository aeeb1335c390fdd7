"""Every Hypothesis strategy the suite uses, in one place."""

from __future__ import annotations

import json

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
