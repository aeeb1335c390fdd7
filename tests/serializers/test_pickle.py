"""Pickle: data model round trips, zero-copy arrays, limits and the restricted loader."""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import serializers
from modeldeploy.errors import (
    DecodeError,
    ModelDeployError,
    PayloadTooLargeError,
    UntrustedPayloadError,
)
from modeldeploy.interfaces import Serializer
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES
from modeldeploy.serializers.pickle import ALIGNMENT, MAGIC, Pickle
from tests import strategies
from tests.serializers import hostile

codec = Pickle()
frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy's own _frombuffer, whatever its module


class Reduce:
    """Pickles as ``func(*args)``, with an optional BUILD *state*."""

    def __init__(self, func, args, state=None):
        self.value = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.value


class TestPickle:
    def test_fits_the_protocol_and_the_registry(self):
        assert isinstance(codec, Serializer)
        assert codec.media_types == BUILTIN_MEDIA_TYPES["pickle"]
        assert type(serializers.get("application/python-pickle", trusted=True)) is Pickle

    @given(strategies.pickle_values)
    def test_roundtrip(self, value):
        assert strategies.bit_equal(codec.loads(codec.dumps(value)), value)

    @given(strategies.pickle_values)
    def test_roundtrip_trusted_and_from_a_memoryview(self, value):
        body = memoryview(bytearray(codec.dumps(value)))
        assert strategies.bit_equal(Pickle(trusted=True).loads(body), value)

    # numpy pickles datetime64 and non-contiguous arrays through _reconstruct (refused)
    @given(st.lists(strategies.pickle_hashables | strategies.arrays(), max_size=3))
    def test_stdlib_protocol_5_pickles_load(self, value):
        assert strategies.bit_equal(codec.loads(pickle.dumps(value, protocol=5)), value)

    def test_bodies_without_arrays_are_plain_pickles(self):
        value = {"a": [1, 2.5, None], "b": (1, {2})}
        assert pickle.loads(codec.dumps(value)) == value

    @given(strategies.arrays(strategies.plain_dtypes))
    def test_arrays_are_read_only_views_of_the_body(self, array):
        body = codec.dumps(array)
        assert body.startswith(MAGIC)
        decoded = codec.loads(body)
        assert strategies.bit_equal(decoded, array)
        assert not decoded.flags.writeable
        if array.nbytes:
            assert np.shares_memory(decoded, np.frombuffer(body, np.uint8))

    def test_array_bytes_are_aligned_in_the_body(self):
        body = codec.dumps([np.arange(3, dtype=np.int8), np.arange(5.0)])
        base = np.frombuffer(body, np.uint8).ctypes.data
        for array in codec.loads(body):
            assert (array.ctypes.data - base) % ALIGNMENT == 0

    def test_misaligned_input_is_copied(self):
        body = codec.dumps(np.arange(4.0))
        decoded = codec.loads(memoryview(bytearray(b"\0" + body))[1:])
        assert decoded.flags.aligned
        np.testing.assert_array_equal(decoded, np.arange(4.0))

    def test_fortran_non_contiguous_and_subclassed_arrays_load_untrusted(self):
        arrays = [
            np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            np.arange(12.0).reshape(3, 4)[:, ::2],
            np.array(["2020-01-01"], "M8[D]"),
            np.ma.MaskedArray([1.0, 2.0]).view(np.ndarray)[::-1],
        ]
        decoded = codec.loads(codec.dumps(arrays))
        for got, want in zip(decoded, arrays, strict=True):
            assert strategies.bit_equal(got, want)
        assert decoded[0].flags.f_contiguous

    def test_framed_bodies_load_with_trusted_pickle_semantics(self):
        value = {"x": np.arange(3.0), "y": np.float32(2)}
        assert strategies.bit_equal(Pickle(trusted=True).loads(codec.dumps(value)), value)

    def test_trusted_loads_anything(self):
        value = collections.OrderedDict(a=1)
        assert Pickle(trusted=True).loads(pickle.dumps(value)) == value
        with pytest.raises(UntrustedPayloadError, match=r"collections\.OrderedDict"):
            codec.loads(pickle.dumps(value))

    def test_size_limit(self):
        body = codec.dumps(b"x" * 100)
        with pytest.raises(PayloadTooLargeError):
            Pickle(max_size=50).loads(body)

    @given(st.integers(1, 80))
    def test_depth_limit(self, depth):
        value: object = 1
        for _ in range(depth):
            value = (value,) if depth % 2 else [value]
        body = codec.dumps(value)
        if depth > codec.max_depth:
            with pytest.raises(DecodeError):
                codec.loads(body)
        else:
            assert codec.loads(body) == value

    def test_cycles_are_refused_by_the_depth_limit(self):
        cyclic: list[object] = []
        cyclic.append(cyclic)
        for loader in (codec, Pickle(trusted=True)):
            with pytest.raises(DecodeError):
                loader.loads(pickle.dumps(cyclic))

    def test_shared_references_do_not_explode_the_depth_walk(self):
        value: list[object] = [1]
        for _ in range(60):
            value = [value, value]  # 2**60 paths, 61 distinct lists
        decoded = codec.loads(pickle.dumps(value))
        assert decoded[0] is decoded[1]
        for _ in range(60):
            decoded = decoded[1]
        assert decoded == [1]

    def test_very_deep_pickles_raise_decode_error_not_recursion_error(self):
        body = b"\x80\x05" + b"]" * 200_000 + b"a" * 199_999 + b"."
        with pytest.raises(DecodeError):
            codec.loads(body)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload ran code"


def _evil_payloads(path):
    command = f"touch {path}"
    yield Reduce(os.system, (command,))
    yield Reduce(subprocess.call, (["touch", str(path)],))
    yield Reduce(subprocess.Popen, (["touch", str(path)],))
    yield Reduce(eval, (f"open({str(path)!r}, 'w')",))
    yield Reduce(exec, (f"open({str(path)!r}, 'w')",))
    yield Reduce(getattr, (Reduce(__import__, ("os",)), "system"))
    yield Reduce(open, (str(path), "w"))
    yield Reduce(np.load, (str(path),))
    yield [1, {"nested": Reduce(os.system, (command,))}]


class TestPickleRefusesMaliciousPayloads:
    @pytest.mark.parametrize("index", range(9))
    @pytest.mark.parametrize("protocol", [0, 2, 4, 5])
    def test_reduce_to_dangerous_callables_never_runs(self, marker, index, protocol):
        payload = list(_evil_payloads(marker))[index]
        with pytest.raises(UntrustedPayloadError) as info:
            codec.loads(pickle.dumps(payload, protocol=protocol))
        assert "is not allowed" in info.value.message

    def test_the_payloads_are_live_under_trusted(self, tmp_path):
        # proves the suite's payloads would run: trusted=True is full pickle
        path = tmp_path / "ran"
        Pickle(trusted=True).loads(pickle.dumps(Reduce(os.system, (f"touch {path}",))))
        assert path.exists()

    def test_error_names_the_global(self, marker):
        with pytest.raises(UntrustedPayloadError, match=r"(posix|os)\.system"):
            codec.loads(pickle.dumps(Reduce(os.system, (f"touch {marker}",))))

    @pytest.mark.parametrize(
        "body",
        [
            b"cos\nsystem\n(S'touch {m}'\ntR.",  # GLOBAL
            b"(S'touch {m}'\nios\nsystem\n.",  # INST
            b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR.",
            b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x10__import__('os')\x85R.",
        ],
    )
    def test_handwritten_payloads(self, marker, body):
        with pytest.raises(UntrustedPayloadError):
            codec.loads(body.replace(b"{m}", str(marker).encode()))

    def test_obj_and_extension_opcodes_are_refused(self, marker):
        # OBJ: MARK, class, args, OBJ; EXT1: the copyreg extension registry
        with pytest.raises(UntrustedPayloadError, match="OBJ"):
            codec.loads(b"\x80\x02(cbuiltins\nset\no.")
        with pytest.raises(UntrustedPayloadError, match="EXT1"):
            codec.loads(b"\x80\x02\x82\x01.")

    def test_object_dtype_is_refused(self):
        raw = np.zeros(1, np.int64).tobytes()
        for dtype in (np.dtype("O"), np.dtype([("a", "O")]), np.dtype("V8")):
            with pytest.raises(UntrustedPayloadError):
                codec.loads(pickle.dumps(Reduce(frombuffer, (raw, dtype, (1,), "C"))))
            with pytest.raises(UntrustedPayloadError):
                codec.loads(pickle.dumps(dtype))

    def test_object_arrays_are_refused(self):
        with pytest.raises(UntrustedPayloadError):
            codec.loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=5))

    def test_forged_dtype_flags_are_refused(self):
        # a float64 whose state claims it holds objects: numpy would read the
        # raw bytes as PyObject pointers
        forged = Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 63))
        raw = struct.pack("<q", 0x41414141)
        with pytest.raises(UntrustedPayloadError, match="not canonical"):
            codec.loads(pickle.dumps(Reduce(frombuffer, (raw, forged, (1,), "C"))))
        scalar = np.float64(0).__reduce__()[0]
        with pytest.raises(UntrustedPayloadError):
            codec.loads(pickle.dumps(Reduce(scalar, (forged, raw))))

    def test_legacy_reconstruct_is_refused(self):
        with pytest.raises(UntrustedPayloadError, match="_reconstruct"):
            codec.loads(pickle.dumps(np.arange(3.0), protocol=4))
        np.testing.assert_array_equal(
            Pickle(trusted=True).loads(pickle.dumps(np.arange(3.0), protocol=4)), np.arange(3.0)
        )

    def test_public_numpy_callables_are_refused(self):
        with pytest.raises(UntrustedPayloadError, match=r"numpy\.frombuffer"):
            codec.loads(pickle.dumps(Reduce(np.frombuffer, (b"\0" * 8, "f8"))))

    @pytest.mark.parametrize("state", [{"x": 1}, (None, {"__call__": 1}), (None, {"_base": 1})])
    def test_build_cannot_poison_the_allowed_callables(self, state):
        for module, name in (("numpy", "dtype"), ("builtins", "bytearray")):
            body = (
                b"\x80\x05\x8c" + bytes([len(module)]) + module.encode()
                + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93"
                + pickle.dumps(state, protocol=5)[2:-1] + b"b."
            )  # fmt: skip
            with pytest.raises(DecodeError):
                codec.loads(body)
        assert codec.loads(pickle.dumps(np.float32(1.5))) == np.float32(1.5)

    def test_dtype_objects_are_not_values(self):
        with pytest.raises(DecodeError):
            codec.loads(pickle.dumps([np.dtype("f8")]))

    def test_bytearray_cannot_allocate_from_a_count(self):
        with pytest.raises(DecodeError):
            codec.loads(pickle.dumps(Reduce(bytearray, (2**40,))))

    @pytest.mark.parametrize(
        "body",
        [
            b"\x80\x05Nr\xff\xff\xff\x0f.",  # LONG_BINPUT: memo grown to 2**29 slots
            b"\x80\x02Np268435455\n.",  # PUT with a decimal index
        ],
    )
    def test_huge_memo_indices_are_refused_before_allocation(self, body):
        with pytest.raises(DecodeError, match="memo"):
            codec.loads(body)


class TestPickleHostileInput:
    @given(st.binary(max_size=200))
    def test_garbage_raises_only_modeldeploy_errors(self, data):
        for loader in (codec, Pickle(trusted=True)):
            with contextlib.suppress(ModelDeployError):
                loader.loads(data)

    @given(strategies.pickle_values, st.data())
    def test_truncations_raise_only_modeldeploy_errors(self, value, data):
        hostile.check_truncation(codec, value, data)

    @given(strategies.pickle_values, st.data())
    def test_corrupted_bytes_raise_only_modeldeploy_errors(self, value, data):
        hostile.check_corruption(codec, value, data)

    def test_trailing_data_is_refused(self):
        with pytest.raises(DecodeError):
            codec.loads(pickle.dumps(1) + b"x")
        with pytest.raises(DecodeError):
            codec.loads(codec.dumps(np.zeros(2)) + b"x")

    def test_out_of_band_buffer_without_a_frame(self):
        with pytest.raises(DecodeError):
            codec.loads(b"\x80\x05\x97.")  # NEXT_BUFFER, no buffers

    @pytest.mark.parametrize(
        ("count", "spans"),
        [(1, [(0, 8)]), (1, [(64, 2**40)]), (2**31, []), (1, [(2**63, 1)])],
    )
    def test_frame_spans_outside_the_body(self, count, spans):
        stream = pickle.dumps(None, protocol=5)
        head = struct.pack("<4sIQ", MAGIC, count, len(stream))
        body = head + b"".join(struct.pack("<QQ", *s) for s in spans) + stream
        with pytest.raises(DecodeError):
            codec.loads(body + b"\0" * 64)

    def test_wrong_buffer_size_for_the_shape(self):
        body = codec.dumps(np.arange(4.0))
        stream = pickle.dumps(Reduce(frombuffer, (b"\0" * 7, np.dtype("f8"), (1,), "C")))
        with pytest.raises(DecodeError):
            codec.loads(stream)
        assert codec.loads(body).shape == (4,)

    def test_unhashable_set_item_raises_decode_error(self):
        with pytest.raises(DecodeError):
            codec.loads(b"\x80\x05\x8f](]e\x90.")  # EMPTY_SET, [ [] ], ADDITEMS


class TestFirstHour:
    """What a new user hits first (issue #11, trap 7)."""

    @pytest.mark.parametrize("protocol", [2, 4])
    def test_an_array_of_an_older_protocol_is_refused_with_the_fix(self, protocol):
        body = pickle.dumps(np.arange(3.0), protocol=protocol)
        with pytest.raises(UntrustedPayloadError) as info:
            Pickle().loads(body)
        assert f"the body is pickle protocol {protocol}: send protocol 5" in info.value.message

    def test_protocol_5_needs_no_hint(self):
        assert Pickle().loads(pickle.dumps(np.arange(3.0), protocol=5)).tolist() == [0, 1, 2]
        with pytest.raises(UntrustedPayloadError) as info:
            Pickle().loads(pickle.dumps(Reduce(os.system, ("true",)), protocol=5))
        assert "protocol" not in info.value.message

    def test_a_trusted_pickle_on_a_network_service_is_logged_once(self, caplog, monkeypatch):
        import modeldeploy as md
        from modeldeploy.http import HTTPApp
        from modeldeploy.serializers import pickle as pickle_module

        monkeypatch.setattr(pickle_module, "_warned_trusted", False)
        serializers = [md.JSON(), Pickle(trusted=True)]
        with caplog.at_level("WARNING", logger="modeldeploy"):
            HTTPApp(md.Service(abs, name="a", serializers=serializers))
            HTTPApp(md.Service(abs, name="b", serializers=serializers))
            HTTPApp(md.Service(abs, name="c", serializers=[Pickle()]))
        warnings = [r.getMessage() for r in caplog.records if "trusted=True" in r.getMessage()]
        assert warnings == [
            (
                "model 'a' serves Pickle(trusted=True): any client that reaches it can run "
                "code in this process; use it only behind authentication, on a trusted network"
            )
        ]
