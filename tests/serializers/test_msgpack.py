"""MsgPack: data model round trips, zero-copy arrays, limits and hostile input."""

from __future__ import annotations

import contextlib
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import serializers
from modeldeploy.errors import DecodeError, EncodeError, ModelDeployError, PayloadTooLargeError
from modeldeploy.interfaces import Serializer
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES
from modeldeploy.serializers.msgpack import ALIGNMENT, FRAME_EXT, NDARRAY_EXT, SCALAR_EXT, MsgPack
from tests import strategies
from tests.serializers import hostile

codec = MsgPack()


def buffer_of(body: bytes) -> np.ndarray:
    return np.frombuffer(body, np.uint8)


class TestMsgPack:
    def test_fits_the_protocol_and_the_registry(self):
        assert isinstance(codec, Serializer)
        assert codec.media_types == BUILTIN_MEDIA_TYPES["msgpack"]
        assert codec.media_type == "application/msgpack"
        assert type(serializers.get("application/x-msgpack", max_depth=3)) is MsgPack

    @given(strategies.msgpack_values)
    def test_roundtrip(self, value):
        assert strategies.bit_equal(codec.loads(codec.dumps(value)), value)

    @given(strategies.msgpack_values)
    def test_roundtrip_from_a_memoryview(self, value):
        body = codec.dumps(value)
        assert strategies.bit_equal(codec.loads(memoryview(bytearray(body))), value)

    def test_plain_values_are_plain_msgpack(self):
        value = {"a": [1, 2.5, None, True, b"x"], 7: "s"}
        assert msgpack.unpackb(codec.dumps(value), strict_map_key=False) == value

    def test_tuples_and_subclasses_encode_as_their_base(self):
        from collections import OrderedDict
        from enum import IntEnum

        class Color(IntEnum):
            RED = 1

        decoded = codec.loads(codec.dumps((1, OrderedDict(a=Color.RED), (2,))))
        assert decoded == [1, {"a": 1}, [2]]
        assert type(decoded[1]["a"]) is int

    def test_numpy_scalars_keep_their_type(self):
        for scalar in (np.float64(1.5), np.int8(-3), np.bool_(True), np.str_("hé")):
            decoded = codec.loads(codec.dumps(scalar))
            assert type(decoded) is type(scalar)
            assert decoded == scalar

    @given(strategies.arrays(strategies.plain_dtypes))
    def test_arrays_are_read_only_views_of_the_body(self, array):
        body = codec.dumps(array)
        decoded = codec.loads(body)
        assert strategies.bit_equal(decoded, array)
        assert not decoded.flags.writeable
        if array.nbytes:
            assert np.shares_memory(decoded, buffer_of(body))

    def test_array_bytes_are_aligned_in_the_body(self):
        body = codec.dumps({"a": np.arange(3, dtype=np.int8), "b": np.arange(5.0)})
        decoded = codec.loads(body)
        base = buffer_of(body).ctypes.data
        for array in decoded.values():
            assert (array.ctypes.data - base) % ALIGNMENT == 0
            assert array.flags.aligned

    def test_misaligned_input_is_copied_and_still_read_only(self):
        body = codec.dumps(np.arange(4.0))
        shifted = memoryview(bytearray(b"\0" + body))[1:]
        decoded = codec.loads(shifted)
        assert decoded.flags.aligned
        assert not decoded.flags.writeable
        np.testing.assert_array_equal(decoded, np.arange(4.0))

    def test_writable_input_still_gives_read_only_arrays(self):
        decoded = codec.loads(bytearray(codec.dumps(np.arange(4.0))))
        assert not decoded.flags.writeable

    def test_non_contiguous_and_fortran_arrays_roundtrip(self):
        for array in (np.arange(12.0).reshape(3, 4)[:, ::2], np.asfortranarray(np.ones((2, 3)))):
            decoded = codec.loads(codec.dumps(array))
            np.testing.assert_array_equal(decoded, array)
            assert decoded.flags.c_contiguous

    def test_encode_copies_array_bytes_once(self):
        array = np.arange(1 << 16, dtype=np.float32)
        body = codec.dumps(array)
        assert len(body) < array.nbytes + 2 * ALIGNMENT

    @pytest.mark.parametrize(
        "value",
        [
            object(),
            {1, 2},
            2**64,
            -(2**63) - 1,
            np.array([object()], dtype=object),
            np.zeros(2, dtype=[("a", "i4")]),
            np.void(b"ab"),
        ],
    )
    def test_values_outside_the_data_model_raise_encode_error(self, value):
        with pytest.raises(EncodeError):
            codec.dumps(value)

    def test_size_limit(self):
        body = codec.dumps(b"x" * 100)
        with pytest.raises(PayloadTooLargeError):
            MsgPack(max_size=50).loads(body)
        assert MsgPack(max_size=len(body)).loads(body) == b"x" * 100

    @given(st.integers(1, 80))
    def test_depth_limit(self, depth):
        value: object = 1
        for _ in range(depth):
            value = [value]
        body = codec.dumps({"k": value})
        if depth + 1 > codec.max_depth:
            with pytest.raises(DecodeError):
                codec.loads(body)
        else:
            assert codec.loads(body) == {"k": value}

    def test_depth_limit_far_beyond_msgpack_stack(self):
        with pytest.raises(DecodeError):
            codec.loads(b"\x91" * 100_000 + b"\xc0")

    def test_array_references_are_depth_neutral(self):
        body = codec.dumps([[np.zeros(3)]])
        assert MsgPack(max_depth=2).loads(body)[0][0].shape == (3,)
        with pytest.raises(DecodeError):
            MsgPack(max_depth=1).loads(body)


def frame(document: bytes, region: bytes = b"") -> bytes:
    head = 10 + len(document)
    padding = -head % ALIGNMENT
    total = head + padding + len(region)
    return (
        struct.pack(">BIbI", 0xC9, total - 6, FRAME_EXT, len(document))
        + document
        + b"\0" * padding
        + region
    )


def array_ref(dtype: bytes, shape: tuple[int, ...], offset: int) -> bytes:
    payload = bytes([len(dtype)]) + dtype + bytes([len(shape)])
    payload += b"".join(struct.pack(">Q", d) for d in shape) + struct.pack(">Q", offset)
    return msgpack.packb(msgpack.ExtType(NDARRAY_EXT, payload))


class TestMsgPackHostileInput:
    @given(st.binary(max_size=200))
    def test_garbage_raises_only_modeldeploy_errors(self, data):
        with contextlib.suppress(ModelDeployError):
            codec.loads(data)

    @given(strategies.msgpack_values, st.data())
    def test_truncations_raise_decode_error(self, value, data):
        hostile.check_truncation(codec, value, data)

    @given(strategies.msgpack_values, st.data())
    def test_corrupted_bytes_raise_only_modeldeploy_errors(self, value, data):
        hostile.check_corruption(codec, value, data)

    def test_extra_data_raises_decode_error(self):
        with pytest.raises(DecodeError):
            codec.loads(codec.dumps(1) + b"\x01")
        with pytest.raises(DecodeError):
            codec.loads(codec.dumps(np.zeros(2)) + b"\0")

    @pytest.mark.parametrize(
        "dtype", [b"|O", b"O", b"i4,O", b"V8", b"(2,)f8", b"<f4,<i4", b"not-a-dtype", b"S0"]
    )
    def test_refused_dtypes_from_the_wire(self, dtype):
        with pytest.raises(DecodeError):
            codec.loads(frame(array_ref(dtype, (1,), 0), b"\0" * 64))
        scalar = msgpack.packb(
            msgpack.ExtType(SCALAR_EXT, bytes([len(dtype)]) + dtype + b"\0" * 8)
        )
        with pytest.raises(DecodeError):
            codec.loads(scalar)

    @pytest.mark.parametrize(
        ("shape", "offset"),
        [((9,), 0), ((1,), 60), ((2**62, 2**62), 0), ((0, 2**63), 0), ((1,) * 40, 0)],
    )
    def test_references_outside_the_region_raise_decode_error(self, shape, offset):
        with pytest.raises(DecodeError):
            codec.loads(frame(array_ref(b"<f8", shape, offset), b"\0" * 64))

    def test_array_reference_outside_a_frame(self):
        with pytest.raises(DecodeError):
            codec.loads(array_ref(b"<f8", (0,), 0))

    @pytest.mark.parametrize("code", [1, FRAME_EXT, 127])
    def test_unknown_ext_types_raise_decode_error(self, code):
        with pytest.raises(DecodeError):
            codec.loads(msgpack.packb(msgpack.ExtType(code, b"abc")))

    @pytest.mark.parametrize(
        "payload", [b"", b"\x00", b"\x03<f8", b"\x03<f8\x00\x00", b"\x21" + b"f" * 40]
    )
    def test_malformed_ext_payloads(self, payload):
        with pytest.raises(DecodeError):
            codec.loads(frame(msgpack.packb(msgpack.ExtType(NDARRAY_EXT, payload)), b"\0" * 64))
        with pytest.raises(DecodeError):
            codec.loads(msgpack.packb(msgpack.ExtType(SCALAR_EXT, payload)))

    @pytest.mark.parametrize(
        "body",
        [
            b"\xdd\xff\xff\xff\xff",  # array of 2**32-1 items, none present
            b"\xdf\xff\xff\xff\xff",  # map of 2**32-1 pairs
            b"\xdb\xff\xff\xff\xff",  # str of 4 GiB
            b"\xc6\xff\xff\xff\xff",  # bin of 4 GiB
            b"\xc9\xff\xff\xff\xff\x05",  # ext of 4 GiB
        ],
    )
    def test_huge_declared_lengths_raise_decode_error(self, body):
        with pytest.raises(DecodeError):
            codec.loads(body)

    def test_frame_length_mismatch(self):
        body = bytearray(codec.dumps(np.zeros(2)))
        body[1:5] = struct.pack(">I", 2**32 - 1)
        with pytest.raises(DecodeError):
            codec.loads(bytes(body))

    def test_unhashable_map_key_raises_decode_error(self):
        with pytest.raises(DecodeError):
            codec.loads(b"\x81\x90\x01")  # {[]: 1}

    def test_non_buffer_and_non_contiguous_input(self):
        with pytest.raises(DecodeError):
            codec.loads(memoryview(np.zeros((4, 4), np.uint8)[:, ::2]))
        with pytest.raises(DecodeError):
            codec.loads("text")  # type: ignore[arg-type]


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(strategies.msgpack_values)
def test_container_header_count_bounds_the_depth(value):
    """The pre-count that spares most bodies the depth walk never undercounts."""
    from modeldeploy.serializers import msgpack as backend

    body = serializers.get("msgpack").dumps(value)
    assert backend._container_headers(body) >= _depth(value)


class TestPackerReuse:
    """dumps reuses one msgpack Packer (and its array list) per thread."""

    @given(st.lists(st.tuples(st.booleans(), strategies.msgpack_values), max_size=8))
    def test_a_failed_dumps_leaves_nothing_behind(self, calls) -> None:
        codec = serializers.get("msgpack")
        for fails, value in calls:
            if fails:  # after part of the value (arrays too) was packed
                with pytest.raises(EncodeError):
                    codec.dumps([value, np.arange(3), {1}])
            else:
                assert strategies.bit_equal(codec.loads(codec.dumps(value)), value)

    def test_threads_never_share_a_packer(self) -> None:
        import threading

        codec = serializers.get("msgpack")
        start = threading.Barrier(4)
        wrong: list[int] = []

        def pack(seed: int) -> None:
            value = {"seed": seed, "array": np.full(64, seed, dtype=np.int32), "list": [seed] * 9}
            start.wait()
            for _ in range(300):
                got = codec.loads(codec.dumps(value))
                if got["seed"] != seed or not (got["array"] == seed).all():
                    wrong.append(seed)

        threads = [threading.Thread(target=pack, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert wrong == []

    def test_a_dumps_inside_a_dumps_gets_a_packer_of_its_own(self) -> None:
        codec = serializers.get("msgpack")
        inner: list[bytes] = []

        class Tag(str):
            def __str__(self) -> str:  # user code that runs while the outer dumps packs
                inner.append(codec.dumps({"inner": [1, 2, 3], "array": np.arange(2)}))
                return str.__str__(self)

        value = {"a": "x" * 10, "b": Tag("tag"), "c": [1, np.arange(3)]}
        decoded = codec.loads(codec.dumps(value))
        assert strategies.bit_equal(decoded, {"a": "x" * 10, "b": "tag", "c": [1, np.arange(3)]})
        (body,) = inner
        assert strategies.bit_equal(codec.loads(body), {"inner": [1, 2, 3], "array": np.arange(2)})

    def test_a_thread_does_not_keep_the_buffer_of_a_large_body(self) -> None:
        from modeldeploy.serializers import msgpack as backend

        codec = serializers.get("msgpack")
        codec.dumps([1.5] * 10)
        kept = backend._packing.pair
        codec.dumps([1.5] * 10)
        assert backend._packing.pair is kept  # reused for small bodies
        big = "x" * (backend._KEEP_PACKER_UP_TO + 1)
        assert codec.loads(codec.dumps(big)) == big
        assert "pair" not in backend._packing.__dict__  # its grown buffer is let go
        assert codec.loads(codec.dumps([1])) == [1]
