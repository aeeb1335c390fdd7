"""
The contract every serializer backend keeps, run against each registered backend.

A new backend (built in or from an entry point) gets these tests for free; its own
``test_<name>.py`` covers the rest of its data model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import serializers
from modeldeploy.errors import DecodeError, ModelDeployError, PayloadTooLargeError
from modeldeploy.interfaces import Serializer
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES, registry
from tests import strategies
from tests.serializers import hostile

BUILTINS = ("json", "msgpack", "pickle", "protobuf", "xml")

DEEP = 10_000


# nested lists written by hand, so no encoder's own recursion limit is in the way
DEEP_PAYLOADS: dict[str, Callable[[int], bytes]] = {
    "json": lambda depth: b"[" * depth + b"]" * depth,
    "msgpack": lambda depth: b"\x91" * depth + b"\xc0",  # fixarray(1) ... nil
    # protocol 5: EMPTY_LIST MARK ... EMPTY_LIST APPENDS ... STOP
    "pickle": lambda depth: b"\x80\x05" + b"](" * (depth - 1) + b"]" + b"e" * (depth - 1) + b".",
    "protobuf": hostile.wire_nested_lists,
    "xml": lambda depth: b"<list>" * depth + b"<none/>" + b"</list>" * depth,
}


def deep_payload(name: str, depth: int) -> bytes:
    """*depth* nested lists in *name*'s format."""
    build = DEEP_PAYLOADS.get(name)
    if build is not None:
        return build(depth)
    # a backend without a hand-written payload (a third-party one) writes its own
    return serializers.get(name, max_depth=depth + 1).dumps(nested_lists(depth))


def nested_lists(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture(scope="module", params=serializers.names())
def name(request: pytest.FixtureRequest) -> str:
    """The registry name of one backend; every registered backend is required."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="module")
def serializer(name: str) -> Serializer:
    return serializers.get(name)


def only_model_deploy_errors(serializer: Serializer, data: bytes) -> None:
    with contextlib.suppress(ModelDeployError):
        serializer.loads(data)


def test_every_builtin_is_registered() -> None:
    assert set(BUILTINS) <= set(serializers.names())
    assert set(BUILTIN_MEDIA_TYPES) == set(BUILTINS)
    for name in BUILTINS:  # a missing backend module fails here, never skips
        assert registry.factory(name).__module__ == f"modeldeploy.serializers.{name}"


class TestIdentity:
    def test_fits_the_protocol(self, name: str, serializer: Serializer) -> None:
        assert isinstance(serializer, Serializer)
        assert serializer.name == name
        assert serializer.media_type == serializer.media_types[0]

    def test_registry_finds_it_by_name_and_every_media_type(
        self, name: str, serializer: Serializer
    ) -> None:
        cls = registry.factory(name)
        assert type(serializer) is cls
        for media_type in serializer.media_types:
            assert type(serializers.get(media_type)) is cls
            assert type(serializers.get(f"{media_type.upper()}; charset=utf-8")) is cls

    def test_builtin_media_types_match_the_registry_table(
        self, name: str, serializer: Serializer
    ) -> None:
        if name in BUILTIN_MEDIA_TYPES:
            assert serializer.media_types == BUILTIN_MEDIA_TYPES[name]


class TestRoundtrip:
    @given(value=strategies.common_values)
    def test_common_data_model(self, serializer: Serializer, value: Any) -> None:
        assert strategies.nan_equal(serializer.loads(serializer.dumps(value)), value)

    @given(value=strategies.common_values)
    def test_memoryview_input(self, serializer: Serializer, value: Any) -> None:
        data = serializer.dumps(value)
        assert strategies.nan_equal(serializer.loads(memoryview(data)), value)
        # a view into the middle of a larger buffer, as a server's receive buffer gives
        padded = memoryview(b"\x00" * 3 + data + b"\x00")[3:-1]
        assert strategies.nan_equal(serializer.loads(padded), value)

    def test_dumps_returns_bytes(self, serializer: Serializer) -> None:
        assert type(serializer.dumps({"a": [1, 2.5, None, True, "x"]})) is bytes


class TestUntrustedInput:
    @given(data=st.binary(max_size=512))
    def test_garbage(self, serializer: Serializer, data: bytes) -> None:
        only_model_deploy_errors(serializer, data)

    @given(value=strategies.common_values, data=st.data())
    def test_truncations(self, serializer: Serializer, value: Any, data: st.DataObject) -> None:
        encoded = serializer.dumps(value)
        cut = data.draw(st.integers(0, max(len(encoded) - 1, 0)))
        only_model_deploy_errors(serializer, encoded[:cut])

    @given(value=strategies.common_values, data=st.data())
    def test_flipped_bytes(self, serializer: Serializer, value: Any, data: st.DataObject) -> None:
        encoded = bytearray(serializer.dumps(value))
        if not encoded:
            return
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] ^= data.draw(st.integers(1, 255))
        only_model_deploy_errors(serializer, bytes(encoded))

    def test_empty_body_is_a_decode_error(self, serializer: Serializer) -> None:
        with pytest.raises(DecodeError):
            serializer.loads(b"")


class TestLimits:
    def test_max_size(self, name: str, serializer: Serializer) -> None:
        data = serializer.dumps({"values": list(range(200)), "name": "x" * 100})
        assert serializers.get(name, max_size=len(data)).loads(data) == serializer.loads(data)
        small = serializers.get(name, max_size=len(data) - 1)
        with pytest.raises(PayloadTooLargeError):
            small.loads(data)
        with pytest.raises(PayloadTooLargeError):
            small.loads(memoryview(data))

    @pytest.mark.parametrize("depth", [1, 3, 50])
    def test_deep_payload_is_valid_when_shallow(
        self, name: str, serializer: Serializer, depth: int
    ) -> None:
        # so the deep case fails for its depth, not for a malformed payload
        value = serializer.loads(deep_payload(name, depth))
        levels = 0
        while isinstance(value, list):
            levels += 1
            value = value[0] if value else None
        assert levels == depth

    def test_deep_nesting_is_a_decode_error(self, name: str, serializer: Serializer) -> None:
        data = deep_payload(name, DEEP)
        for deep_reader in (serializer, serializers.get(name, max_depth=100)):
            with pytest.raises(DecodeError):
                deep_reader.loads(data)

    def test_max_depth_is_honoured(self, name: str) -> None:
        shallow = serializers.get(name, max_depth=5)
        data = serializers.get(name).dumps(nested_lists(20))
        with pytest.raises(DecodeError):
            shallow.loads(data)
        assert shallow.loads(serializers.get(name).dumps([[1]])) == [[1]]


class TestTextCodePoints:
    """A NumPy text value whose 4-byte units name no character is a DecodeError, at decode.

    NumPy maps any units, but making a ``str`` of one beyond U+10FFFF raises
    SystemError later, in whatever code first reads the value.
    """

    @pytest.mark.parametrize("name", ["msgpack", "pickle"])
    @pytest.mark.parametrize(
        "value",
        [np.str_("ab"), np.array(["xy", "z"]), np.array(["xy"], dtype=">U2")],
        ids=["scalar", "array", "big-endian array"],
    )
    def test_a_unit_beyond_u10ffff_is_refused(self, name: str, value: object) -> None:
        codec = serializers.get(name)
        body = bytearray(codec.dumps(value))
        first = "a" if isinstance(value, np.str_) else "x"
        big_endian = isinstance(value, np.ndarray) and value.dtype.byteorder == ">"
        unit = ord(first).to_bytes(4, "big" if big_endian else "little")
        at = body.find(unit)
        assert at != -1
        body[at : at + 4] = (0x110000).to_bytes(4, "big" if big_endian else "little")
        with pytest.raises(DecodeError, match="beyond U"):
            codec.loads(bytes(body))

    @pytest.mark.parametrize("name", ["msgpack", "pickle"])
    def test_the_largest_code_point_and_surrogates_still_decode(self, name: str) -> None:
        codec = serializers.get(name)
        value = np.array(["\U0010ffff", "\ud800"])
        assert (codec.loads(codec.dumps(value)) == value).all()
