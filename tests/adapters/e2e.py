"""The end-to-end suite every HTTP server runs: subclass E2E and set ``server_kind``.

A subclass's tests start one real server (the class-scoped ``server`` fixture of
conftest.py) and talk to it over loopback: raw HTTP with http.client, the V2
protocol with the official tritonclient.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import msgpack
import numpy as np
import pytest
import tritonclient.http as thttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom
from tritonclient.utils import InferenceServerException

import modeldeploy as md
from modeldeploy import v2

from .app import MAX_BODY_SIZE, mlp
from .conftest import Server

DATATYPES = list(v2.DATATYPES)
SHAPES = [(0,), (3,), (2, 3), (2, 0, 4), (1, 1, 1, 5)]


def raw(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, lower-case headers, body."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


def sample(datatype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A deterministic array of *datatype*, extreme values included when there is room."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    dtype = v2.DATATYPES[datatype]
    if datatype == "BYTES":
        words = [b"", b"a", "\u00e9t\u00e9".encode(), b"x" * 40, b"0"]
        flat = np.empty(count, dtype=object)
        flat[:] = [words[i % len(words)] for i in range(count)]
        return flat.reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        flat = rng.integers(info.min, info.max, size=count, dtype=dtype, endpoint=True)
        flat[: min(count, 2)] = [info.min, info.max][: min(count, 2)]
        return flat.reshape(shape)
    return (rng.standard_normal(count) * 100).astype(dtype).reshape(shape)


def as_bytes(array: np.ndarray) -> np.ndarray:
    """tritonclient gives JSON BYTES back as str: compare as bytes."""
    out = np.empty(array.size, dtype=object)
    out[:] = [x.encode() if isinstance(x, str) else x for x in array.ravel().tolist()]
    return out.reshape(array.shape)


def assert_tensor(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.size == 0:
        return  # tritonclient 2.41 reads an empty binary output as float64
    if want.dtype == object:
        assert as_bytes(got).tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def infer_input(name: str, array: np.ndarray, *, binary: bool) -> thttp.InferInput:
    tensor = thttp.InferInput(name, list(array.shape), v2.dtype_to_datatype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def scrape(
    server: Server, accept: str = ""
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    status, headers, body = raw(server, "GET", "/metrics", headers={"Accept": accept})
    assert status == 200
    text = body.decode()
    openmetrics = headers["content-type"].startswith("application/openmetrics-text")
    families = parse_om(text) if openmetrics else parse_prom(text)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }


def requests_total(samples: dict[Any, float], model: str, code: str) -> float:
    labels = (("code", code), ("model", model), ("version", "1"))
    return samples.get(("modeldeploy_requests_total", labels), 0.0)


class E2E:
    """Checks every HTTP server must pass. Subclasses set ``server_kind``."""

    server_kind: str

    # -- health and metadata -----------------------------------------------------------

    def test_health(self, server: Server, client: thttp.InferenceServerClient) -> None:
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mlp/ready"):
            status, _, body = raw(server, "GET", path)
            assert (status, body) == (200, b"")
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("mlp")
        assert client.is_model_ready("echo", model_version="1")
        assert not client.is_model_ready("nope")
        status, _, body = raw(server, "GET", "/v2/models/nope/ready")
        assert status == 404
        assert json.loads(body) == {"error": "no model named 'nope'"}

    def test_server_metadata(self, client: thttp.InferenceServerClient) -> None:
        metadata = client.get_server_metadata()
        assert metadata == {
            "name": "modeldeploy",
            "version": md.__version__,
            "extensions": ["binary_tensor_data"],
        }

    def test_model_metadata(self, server: Server, client: thttp.InferenceServerClient) -> None:
        want = {
            "name": "mlp",
            "versions": ["1"],
            "platform": "modeldeploy",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [4]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [3]}],
        }
        assert client.get_model_metadata("mlp") == want
        assert client.get_model_metadata("mlp", model_version="1") == want
        status, headers, body = raw(server, "GET", "/v2/models/mlp/versions/2")
        assert (status, headers["content-type"]) == (404, "application/json")
        assert json.loads(body) == {"error": "model 'mlp' has no version '2'"}
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata("nope")
        assert info.value.status() == "404"

    # -- /models/{name}/predict: content negotiation --------------------------------

    def test_predict_json(self, server: Server) -> None:
        x = [0.5, -1.0, 2.0, 0.25]
        status, headers, body = raw(
            server, "POST", "/models/mlp/predict", json.dumps(x).encode(),
            {"Content-Type": "application/json", "X-Request-Id": "req-7"},
        )  # fmt: skip
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["x-request-id"] == "req-7"
        want = mlp(np.asarray(x, dtype=np.float32))
        np.testing.assert_allclose(json.loads(body), want, rtol=1e-6)

    @pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
    def test_predict_msgpack_out(self, server: Server, content_type: str) -> None:
        x = [1.0, 2.0, 3.0, 4.0]
        body_in = json.dumps(x).encode() if "json" in content_type else msgpack.packb(x)
        status, headers, body = raw(
            server, "POST", "/models/mlp/predict", body_in,
            {"Content-Type": content_type, "Accept": "application/msgpack"},
        )  # fmt: skip
        assert status == 200
        assert headers["content-type"] == "application/msgpack"
        got = md.MsgPack().loads(body)
        np.testing.assert_allclose(got, mlp(np.asarray(x, dtype=np.float32)), rtol=1e-6)

    @pytest.mark.parametrize(
        ("status", "code", "body", "headers"),
        [
            (415, "unsupported_media_type", b"[1,2,3,4]", {"Content-Type": "text/plain"}),
            (406, "not_acceptable", b"[1,2,3,4]", {"Accept": "application/xml"}),
            (400, "decode_error", b"[1,2,", {}),
            (422, "validation_error", b"[1,2]", {}),
            (400, "bad_request", b"[1,2,3,4]", {"X-Request-Timeout": "soon"}),
        ],
    )
    def test_predict_errors(
        self, server: Server, status: int, code: str, body: bytes, headers: dict[str, str]
    ) -> None:
        headers = {"Content-Type": "application/json", **headers}
        got, response_headers, data = raw(server, "POST", "/models/mlp/predict", body, headers)
        assert got == status
        assert response_headers["content-type"] == "application/json"
        error = json.loads(data)["error"]
        assert error["code"] == code
        assert isinstance(error["message"], str)
        assert "Traceback" not in error["message"]

    @pytest.mark.parametrize("path", ["/models/mlp/predict", "/v2/models/mlp/infer"])
    def test_body_over_the_limit_is_refused_unread(self, server: Server, path: str) -> None:
        # only the headers go out: the server must answer without waiting for the body
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            connection.putrequest("POST", path)
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(MAX_BODY_SIZE + 1))
            connection.endheaders()
            response = connection.getresponse()
            assert response.status == 413
            body = json.loads(response.read())
        finally:
            connection.close()
        if path.startswith("/v2"):
            assert "over the limit" in body["error"]
        else:
            assert body["error"]["code"] == "payload_too_large"

    def test_streamed_body_over_the_limit(self, server: Server) -> None:
        chunk = b"0" * (1 << 20)
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            connection.request(
                "POST", "/models/mlp/predict", body=iter([chunk] * 5), encode_chunked=True,
                headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )  # fmt: skip
            response = connection.getresponse()
            assert response.status == 413
            assert json.loads(response.read())["error"]["code"] == "payload_too_large"
        except (BrokenPipeError, ConnectionResetError):
            pytest.fail("the server closed the connection without a 413")
        finally:
            connection.close()

    def test_predict_needs_a_single_service(self, server: Server) -> None:
        status, _, body = raw(server, "POST", "/predict", b"[1,2,3,4]")
        assert status == 404
        error = json.loads(body)["error"]
        assert error["code"] == "model_not_found"
        assert "/models/{name}/predict" in error["message"]  # and which models there are

    def test_unknown_model_predict(self, server: Server) -> None:
        status, _, body = raw(server, "POST", "/models/nope/predict", b"[1]")
        assert status == 404
        assert json.loads(body)["error"]["code"] == "model_not_found"

    # -- V2 inference with tritonclient ---------------------------------------------------

    @pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
    @pytest.mark.parametrize("datatype", DATATYPES)
    def test_infer_every_datatype(
        self, client: thttp.InferenceServerClient, datatype: str, binary: bool
    ) -> None:
        for seed, shape in enumerate(SHAPES):
            x = sample(datatype, shape, seed)
            result = client.infer(
                "echo",
                [infer_input("x", x, binary=binary)],
                outputs=[thttp.InferRequestedOutput("output0", binary_data=binary)],
                request_id=f"r{seed}",
            )
            response = result.get_response()
            assert response["id"] == f"r{seed}"
            assert response["model_name"] == "echo"
            assert_tensor(result.as_numpy("output0"), x)

    @pytest.mark.parametrize(
        ("datatype", "shape", "binary"),
        [("FP32", (512, 512), True), ("INT64", (64, 64), False), ("BYTES", (4096,), True)],
    )
    def test_infer_large(
        self, client: thttp.InferenceServerClient, datatype: str, shape: tuple[int, ...],
        binary: bool,
    ) -> None:  # fmt: skip
        x = sample(datatype, shape)
        result = client.infer(
            "echo",
            [infer_input("x", x, binary=binary)],
            outputs=[thttp.InferRequestedOutput("output0", binary_data=binary)],
        )
        assert_tensor(result.as_numpy("output0"), x)

    def test_infer_named_outputs(self, client: thttp.InferenceServerClient) -> None:
        a = sample("INT32", (2, 2))
        b = sample("FP64", (3,))
        c = sample("BYTES", (2,))
        inputs = [
            infer_input("a", a, binary=True),
            infer_input("b", b, binary=False),
            infer_input("c", c, binary=True),
        ]
        outputs = [
            thttp.InferRequestedOutput("c", binary_data=False),
            thttp.InferRequestedOutput("a", binary_data=True),
        ]
        result = client.infer("echo", inputs, outputs=outputs)
        names = [o["name"] for o in result.get_response()["outputs"]]
        assert names == ["c", "a"]
        assert result.as_numpy("b") is None
        assert_tensor(result.as_numpy("a"), a)
        assert_tensor(result.as_numpy("c"), c)

    def test_infer_mlp(self, client: thttp.InferenceServerClient) -> None:
        x = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
        result = client.infer("mlp", [infer_input("x", x, binary=True)], model_version="1")
        np.testing.assert_allclose(result.as_numpy("y"), mlp(x), rtol=1e-6)
        assert result.get_response()["model_version"] == "1"

    @pytest.mark.parametrize(
        ("model", "name", "array", "status", "message"),
        [
            ("nope", "x", np.zeros(4, np.float32), "404", "no model named 'nope'"),
            ("mlp", "z", np.zeros(4, np.float32), "400", "unexpected input 'z'"),
            ("mlp", "x", np.zeros(5, np.float32), "400", ""),
            ("mlp", "x", np.array([b"a"] * 4, dtype=object), "400", ""),
        ],
        ids=["unknown-model", "unknown-input", "bad-shape", "bad-datatype"],
    )
    def test_infer_errors(
        self,
        client: thttp.InferenceServerClient,
        model: str,
        name: str,
        array: np.ndarray,
        status: str,
        message: str,
    ) -> None:
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, [infer_input(name, array, binary=True)])
        assert info.value.status() == status
        assert message in info.value.message()

    # -- V2 against the spec, with raw HTTP ------------------------------------------------

    def test_raw_binary_both_ways(self, server: Server) -> None:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        header = json.dumps(
            {
                "id": "raw-1",
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [2, 3],
                     "parameters": {"binary_data_size": x.nbytes}},
                ],
                "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
            }
        ).encode()  # fmt: skip
        status, headers, body = raw(
            server, "POST", "/v2/models/echo/infer", header + x.tobytes(),
            {"Inference-Header-Content-Length": str(len(header)),
             "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert status == 200
        length = int(headers["inference-header-content-length"])
        response = json.loads(body[:length])
        assert response == {
            "model_name": "echo",
            "model_version": "1",
            "id": "raw-1",
            "outputs": [
                {"name": "output0", "datatype": "FP32", "shape": [2, 3],
                 "parameters": {"binary_data_size": x.nbytes}},
            ],
        }  # fmt: skip
        assert body[length:] == x.tobytes()

    def test_raw_json_only(self, server: Server) -> None:
        request = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [2, 2],
                               "data": [[1, 2], [3, 4]]}]}  # fmt: skip
        status, headers, body = raw(server, "POST", "/v2/models/echo/infer",
                                    json.dumps(request).encode())  # fmt: skip
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert "inference-header-content-length" not in headers
        assert json.loads(body)["outputs"] == [
            {"name": "output0", "datatype": "INT8", "shape": [2, 2], "data": [1, 2, 3, 4]}
        ]

    @pytest.mark.parametrize(
        ("body", "headers", "status"),
        [
            (b"{not json", {}, 400),
            (b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}',
             {}, 400),
            (b'{"inputs": []}', {"Inference-Header-Content-Length": "-3"}, 400),
            (b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400),
            (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
             {"X-Request-Timeout": "-1"}, 400),
        ],
        ids=["not-json", "bad-datatype", "negative-length", "long-length", "bad-timeout"],
    )  # fmt: skip
    def test_raw_bad_requests(
        self, server: Server, body: bytes, headers: dict[str, str], status: int
    ) -> None:
        got, response_headers, data = raw(server, "POST", "/v2/models/echo/infer", body, headers)
        assert got == status
        assert response_headers["content-type"] == "application/json"
        error = json.loads(data)
        assert list(error) == ["error"]
        assert isinstance(error["error"], str)

    @pytest.mark.parametrize(
        ("method", "path", "status", "allow"),
        [
            ("GET", "/v2/models/echo/infer", 405, "POST"),
            ("POST", "/v2/health/ready", 405, "GET, HEAD"),
            ("HEAD", "/predict", 405, "POST"),
            ("DELETE", "/models/mlp/predict", 405, "POST"),
            ("GET", "/v2/nowhere", 404, None),
            ("GET", "/v2/models/echo/versions/1/nowhere", 404, None),
            ("GET", "/nowhere", 404, None),
        ],
    )
    def test_routes(
        self, server: Server, method: str, path: str, status: int, allow: str | None
    ) -> None:
        got, headers, body = raw(server, method, path)
        assert got == status
        assert headers.get("allow") == allow
        assert body == b"" if method == "HEAD" else "error" in json.loads(body)

    @pytest.mark.parametrize("path", ["/v2", "/v2/health/ready", "/v2/models/echo", "/metrics"])
    def test_head_is_a_get_without_the_body(self, server: Server, path: str) -> None:
        status, headers, body = raw(server, "GET", path)
        head_status, head_headers, head_body = raw(server, "HEAD", path)
        assert (head_status, head_body) == (status, b"")
        assert head_headers.get("content-type") == headers.get("content-type")
        if path != "/metrics":  # the metrics move between the two requests
            assert head_headers["content-length"] == str(len(body))

    def test_deadline_header(self, server: Server) -> None:
        body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [], "data": [0.5]}]}'
        status, _, data = raw(
            server, "POST", "/v2/models/slow/infer", body, {"X-Request-Timeout": "0.01"}
        )
        assert status == 504
        assert json.loads(data) == {"error": "deadline passed waiting for the model"}

    # -- metrics -------------------------------------------------------------------------

    def test_metrics_count_what_was_sent(self, server: Server) -> None:
        before = scrape(server)
        for _ in range(7):
            assert raw(server, "POST", "/models/mlp/predict", b"[1,2,3,4]")[0] == 200
        for _ in range(3):
            headers = {"Content-Type": "text/plain"}
            assert raw(server, "POST", "/models/mlp/predict", b"x", headers)[0] == 415
        v2_body = (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1,2,3,4]}]}'
        )
        for _ in range(2):
            assert raw(server, "POST", "/v2/models/mlp/infer", v2_body)[0] == 200
        after = scrape(server, accept="application/openmetrics-text; version=1.0.0")
        ok = requests_total(after, "mlp", "ok") - requests_total(before, "mlp", "ok")
        assert ok == 9
        unsupported = "unsupported_media_type"
        assert (
            requests_total(after, "mlp", unsupported) - requests_total(before, "mlp", unsupported)
            == 3
        )

    def test_metrics_formats(self, server: Server) -> None:
        _, headers, _ = raw(server, "GET", "/metrics")
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        _, headers, body = raw(
            server, "GET", "/metrics", headers={"Accept": "application/openmetrics-text"}
        )
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
