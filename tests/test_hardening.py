"""Regressions from the review: hostile inputs that once escaped as untyped errors."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

import modeldeploy as md
from modeldeploy import v2
from modeldeploy.adapters import _body
from modeldeploy.testing import EchoPredictor, GatedPredictor


class TestTimeouts:
    def test_a_caller_cannot_extend_the_service_timeout(self):
        model = GatedPredictor()
        with md.Service(model, workers=1, timeout=0.05) as service:
            with pytest.raises(md.DeadlineExceededError):
                service.predict(1, timeout=3600)
            model.open()

    def test_a_request_deadline_cannot_extend_the_service_timeout(self):
        model = GatedPredictor()
        far = 10**12
        with md.Service(model, workers=1, timeout=0.05) as service:
            response = service.handle(md.Request(b"1", deadline=far))
            model.open()
        assert response.status == 504

    @pytest.mark.parametrize("workers", [0, 1])
    def test_a_huge_timeout_is_as_good_as_none(self, workers):
        with md.Service(EchoPredictor(), workers=workers) as service:
            assert service.predict(7, timeout=1e12) == 7
            assert service.handle(md.Request(b"7", deadline=1e15)).status == 200

    def test_a_huge_timeout_header_is_served(self):
        app = md.HTTPApp(md.Service(EchoPredictor(), workers=1, name="echo"))
        app.start_services()
        try:
            response = app(
                "POST",
                "/predict",
                {"content-type": "application/json", "x-request-timeout": "1e10"},
                b"[1]",
            )
        finally:
            for service in app.services.values():
                service.close()
        assert response.status == 200, response.body


@pytest.mark.parametrize("value", ["²", "1²", "٣", "-1", "1.5", ""])
def test_content_length_is_ascii_digits_only(value):
    with pytest.raises(md.DecodeError):
        _body.content_length(value)


def test_msgpack_dtype_that_numpy_cannot_parse_is_a_decode_error():
    for spec in (b"\x02,1", b"\x0205"):
        with pytest.raises(md.DecodeError):
            md.serializers.get("msgpack").loads(msgpack.packb(msgpack.ExtType(0x53, spec)))


def test_v2_empty_shape_with_a_huge_dimension_is_a_decode_error():
    body = (
        b'{"inputs":[{"name":"x","datatype":"FP32",'
        b'"shape":[0, 4611686018427387904, 4611686018427387904],"data":[]}]}'
    )
    with pytest.raises(md.DecodeError, match="too large"):
        v2.decode_infer_request(body)


def test_v2_header_length_of_thousands_of_digits_is_a_decode_error():
    with pytest.raises(md.DecodeError):
        v2.parse_header_length("9" * 5000)


def test_protobuf_reads_a_two_dimensional_byte_view():
    codec = md.serializers.get("protobuf")
    raw = np.frombuffer(codec.dumps([1, 2]), dtype=np.uint8).reshape(1, -1)
    assert codec.loads(memoryview(raw)) == [1, 2]


class TestTypedJSON:
    codec = md.JSON(typed_arrays=True)

    def test_an_escaped_tensor_key_is_still_a_tensor(self):
        body = rb'{"\u005f_tensor__": {"dtype": "int8", "shape": [2], "data": [1, 2]}}'
        value = self.codec.loads(body)
        assert isinstance(value, np.ndarray)
        assert value.dtype == np.int8

    @pytest.mark.parametrize("dtype", ["int8", "float32"])
    def test_booleans_mixed_into_numbers_are_refused(self, dtype):
        body = b'{"__tensor__": {"dtype": "%s", "shape": [2], "data": [true, 2]}}' % (
            dtype.encode()
        )
        with pytest.raises(md.DecodeError):
            self.codec.loads(body)


def test_a_broken_entry_point_does_not_hide_the_others(monkeypatch):
    from modeldeploy import negotiation

    class Broken:
        name = "broken"

        def load(self):
            raise ImportError("plugin is broken")

    class Good:
        name = "good-format"

        def load(self):
            return md.serializers.JSON

    registry = negotiation.SerializerRegistry()
    monkeypatch.setattr(negotiation, "entry_points", lambda group: [Broken(), Good()])
    assert "good-format" in registry.names()
    assert "broken" not in registry.names()
