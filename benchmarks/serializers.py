"""
Serializer speed (issue #3), each figure beside a limit measured in the same run.

1. A 4 MiB float32 tensor: every backend's ``dumps`` and ``loads`` against
   ``bytes(memoryview(arr))``, a bare memcpy of the same bytes. Targets: msgpack
   and pickle encode <= 1.5x the memcpy.
2. Zero-copy decoding: msgpack and pickle ``loads`` of a 4 MiB and a 64 MiB
   tensor, beside a memcpy of each. Target: both sizes < 20 us (no copy, so the
   time does not grow with the size).
3. A 1,000-float list and a small dict: every backend's round trip
   (``loads(dumps(x))``) beside the plain stdlib ``json`` module and the bare
   library each backend wraps; our JSON on orjson against
   ``JSON(backend="stdlib")`` and against the plain ``json`` module. Target >= 5x.
"""

from __future__ import annotations

import json
import pickle
import random
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import orjson
from _harness import QUICK, machine, per_call, table, us, write_section

from modeldeploy import serializers

MIB = 1 << 20
BIG_LIMIT = 2**27  # 128 MiB: the default max_size (64 MiB) refuses a 64 MiB tensor's frame

# a typical small request: every field a JSON client would send, no null
SMALL = {
    "id": "req-0001",
    "model": "iris",
    "version": 3,
    "inputs": [5.1, 3.5, 1.4, 0.2],
    "normalize": True,
    "top_k": 2,
}
# the same with one null: orjson writes NaN as null too, so our JSON re-encodes such a
# body on the stdlib path to tell the two apart (see docs/serializers/json.md)
SMALL_NULL = {**SMALL, "user": None}

TENSOR_HEADER = ["backend", "body (MiB)", "dumps (us)", "dumps / memcpy", "loads (us)",
                 "loads / memcpy", "zero-copy"]  # fmt: skip
ROUND_HEADER = ["backend", "round trip (us)", "bare library, same run (us)", "ratio",
                "time / plain `json`"]  # fmt: skip
ZERO_COPY_INTRO = (
    "### Zero-copy decoding: 4 MiB and 64 MiB\n\n"
    "msgpack and pickle map the array onto the body, so `loads` costs the same at any "
    "size; a copy (the memcpy column) grows with it. The 64 MiB case uses "
    "`max_size=2**27`, as the default limit (64 MiB) refuses its body."
)
SAFETY_NOTE = (
    "Beside its bare library each backend pays for what makes it safe on untrusted input: "
    "msgpack walks a decoded value longer than `max_depth` bytes to check its nesting; "
    "pickle scans every opcode of the stream in Python before the restricted unpickler "
    "runs, then walks the value for `max_depth`; protobuf and XML build and read their "
    "message or element tree in Python, one node per value."
)
AGAINST = [('our `JSON(backend="stdlib")`', "json stdlib"), ("plain `json` module", "plain json")]
JSON_INTRO = (
    "### JSON: orjson against the standard library\n\n"
    "Our `JSON()` (on orjson) against our own stdlib engine, which checks each value "
    "in Python so that it refuses exactly what orjson refuses, and against the plain "
    "`json` module, which checks nothing. Bare orjson, without our checks, is the floor."
)


def tensor(n_bytes: int) -> Any:
    return np.random.default_rng(0).standard_normal(n_bytes // 4, dtype=np.float32)


def memcpy(array: Any) -> float:
    return per_call(lambda: bytes(memoryview(array)))


def codec_times(codec: Any, value: Any) -> tuple[float, float, bytes]:
    """Seconds per ``dumps`` and per ``loads`` of *value*, and its encoding."""
    body = codec.dumps(value)
    return per_call(lambda: codec.dumps(value)), per_call(lambda: codec.loads(body)), body


def same_array(decoded: Any, array: Any) -> bool:
    return decoded.dtype == array.dtype and np.array_equal(decoded, array)


def is_view_of(decoded: Any, body: bytes) -> bool:
    return not decoded.flags.writeable and np.shares_memory(decoded, np.frombuffer(body, np.uint8))


JSON_MEMORY = 1 << 30  # bytes a JSON body of the 4 MiB tensor may decode into


def tensor_rows(array: Any, copy: float) -> tuple[list[list[str]], dict[str, float]]:
    """The 4 MiB table: every backend's dumps and loads as multiples of *copy*."""
    # label -> (codec, decodes to a list rather than an array)
    codecs: dict[str, tuple[Any, bool]] = {
        "msgpack": (serializers.get("msgpack"), False),
        "pickle": (serializers.get("pickle"), False),
        "protobuf": (serializers.get("protobuf"), False),
        "XML": (serializers.get("xml"), False),
        # a million numbers as JSON pass the default memory bound's estimate (max_memory,
        # 4x the body limit): it prices each value at its worst; raised here, as a
        # service taking such bodies would
        "JSON, nested lists": (serializers.get("json", max_memory=JSON_MEMORY), True),
        "JSON, `typed_arrays=True`": (
            serializers.get("json", typed_arrays=True, max_memory=JSON_MEMORY),
            False,
        ),
    }
    zero_copy = {"msgpack", "pickle"}
    rows, ratios = [], {}
    for label, (codec, as_list) in codecs.items():
        dumps, loads, body = codec_times(codec, array)
        decoded = codec.loads(body)
        # nested lists carry Python floats: the values survive, the dtype does not
        assert type(decoded) is list if as_list else decoded.dtype == array.dtype, label
        assert np.array_equal(np.asarray(decoded, array.dtype), array), label
        view = not as_list and is_view_of(decoded, body)
        assert view == (label in zero_copy), label
        ratios[label] = dumps / copy
        rows.append(
            [
                label,
                f"{len(body) / MIB:,.1f}",
                us(dumps),
                f"{dumps / copy:,.2f}x",
                us(loads),
                f"{loads / copy:,.3f}x",
                "yes" if view else "no",
            ]
        )
    return rows, ratios


def zero_copy_rows(small: Any, big: Any) -> tuple[list[list[str]], list[float]]:
    """msgpack and pickle loads at 4 MiB and 64 MiB, beside a memcpy of each size."""
    sizes = [(small, memcpy(small)), (big, memcpy(big))]
    rows, times = [], []
    for name in ("msgpack", "pickle"):
        codec = serializers.get(name, max_size=BIG_LIMIT)
        for array, copy in sizes:
            body = codec.dumps(array)
            decoded = codec.loads(body)
            assert same_array(decoded, array) and is_view_of(decoded, body), name
            loads = per_call(lambda codec=codec, body=body: codec.loads(body))
            times.append(loads)
            rows.append(
                [
                    f"{name}, {array.nbytes // MIB} MiB",
                    us(loads),
                    us(copy),
                    f"{loads / copy:.5f}x",
                    "< 20 us" + (" ✓" if loads < 20e-6 else " ✗ missed"),
                ]
            )
    return rows, times


def round_trip(dumps: Callable[[Any], Any], loads: Callable[[Any], Any], value: Any) -> float:
    assert loads(dumps(value)) == value
    return per_call(lambda: loads(dumps(value)))


def small_rows(value: Any) -> tuple[list[list[str]], dict[str, float]]:
    """Every backend's round trip of *value* beside the bare library and plain json."""
    plain_json = round_trip(json.dumps, json.loads, value)
    # the library each backend wraps, called with no checks of ours
    bare: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {
        "json": ("orjson", orjson.dumps, orjson.loads),
        "msgpack": ("msgpack", msgpack.packb, msgpack.unpackb),
        "pickle": ("pickle", lambda v: pickle.dumps(v, protocol=5), pickle.loads),
    }
    rows, times = [], {"plain json": plain_json}
    for name in ("json", "msgpack", "pickle", "protobuf", "xml"):
        codec = serializers.get(name)
        ours = round_trip(codec.dumps, codec.loads, value)
        times[name] = ours
        limit, ratio = "—", "—"
        if name in bare:
            label, dump, load = bare[name]
            seconds = round_trip(dump, load, value)
            times["bare " + name] = seconds
            limit, ratio = f"{label}: {us(seconds)}", f"{ours / seconds:.2f}x"
        rows.append([name, us(ours), limit, ratio, f"{ours / plain_json:.2f}x"])
    stdlib = serializers.get("json", backend="stdlib")
    times["json stdlib"] = round_trip(stdlib.dumps, stdlib.loads, value)
    rows.append(
        [
            'json, `backend="stdlib"`',
            us(times["json stdlib"]),
            "—",
            "—",
            f"{times['json stdlib'] / plain_json:.2f}x",
        ]
    )
    rows.append(["plain `json` module", us(plain_json), "—", "—", "1.00x"])
    return rows, times


def json_rows(
    bodies: dict[str, tuple[dict[str, float], bool]],
) -> tuple[list[list[str]], list[str]]:
    """Our JSON on orjson against our stdlib engine and the plain json module."""
    rows, missed = [], []
    for label, (times, targeted) in bodies.items():
        ours = times["json"]
        for against, key in AGAINST:
            speedup = times[key] / ours
            verdict = "—"
            if targeted:
                verdict = ">= 5x" + (" ✓" if speedup >= 5 else " ✗ missed")
                if speedup < 5:
                    missed.append(f"{label} vs the {against}")
            rows.append([label, against, us(ours), us(times[key]), f"**{speedup:.1f}x**", verdict])
        bare = times["bare json"]
        rows.append(
            [
                label,
                "bare orjson (no checks)",
                us(ours),
                us(bare),
                f"{bare / ours:.0%} of ours",
                "—",
            ]
        )
    return rows, missed


def json_null_times(value: Any) -> dict[str, float]:
    ours = serializers.get("json")
    stdlib = serializers.get("json", backend="stdlib")
    return {
        "json": round_trip(ours.dumps, ours.loads, value),
        "json stdlib": round_trip(stdlib.dumps, stdlib.loads, value),
        "plain json": round_trip(json.dumps, json.loads, value),
        "bare json": round_trip(orjson.dumps, orjson.loads, value),
    }


def where_the_time_goes(small: dict[str, float], null: dict[str, float]) -> str:
    ours, bare, plain = small["json"], small["bare json"], small["plain json"]
    return (
        f"Where the time goes for the small dict: bare orjson takes {us(bare)} us of our "
        f"{us(ours)} us round trip. The other {us(ours - bare)} us are our wrapper: two "
        "Python method calls, the size and depth checks, and a scan of the output for "
        "`null`, because orjson writes NaN as `null` and `allow_nan=False` must refuse NaN. "
        f"orjson alone is {plain / bare:.1f}x faster than the `json` module on this body, so "
        f"any wrapper costing more than {us(max(plain / 5 - bare, 0))} us per round trip "
        "misses 5x against the plain module; against our stdlib engine, which makes the "
        "same checks, it holds. On 1,000 floats the wrapper is noise.\n\n"
        f"With one `null` in the dict our round trip takes {us(null['json'])} us (bare "
        f"orjson {us(null['bare json'])}): orjson's output cannot tell `None` from NaN, so "
        "`dumps` runs the standard library's C encoder over such a value once more, only to "
        "look for a non-finite float (the whole stdlib engine, a walk in Python, only when "
        "it finds one). Bodies without `null` (numbers, strings, arrays) never pay it; that "
        "row has no target and shows the cost."
    )


def main() -> None:
    array = tensor(4 * MIB)
    big = tensor(4 * MIB if QUICK else 64 * MIB)  # the smoke run skips the 256 MiB of buffers
    copy = memcpy(array)
    t_rows, encode_ratios = tensor_rows(array, copy)
    z_rows, z_times = zero_copy_rows(array, big)
    del big

    rng = random.Random(0)
    floats = [rng.uniform(-1.0, 1.0) for _ in range(1000)]
    f_rows, f_times = small_rows(floats)
    s_rows, s_times = small_rows(SMALL)
    n_times = json_null_times(SMALL_NULL)
    j_rows, missed = json_rows(
        {
            "1,000 floats": (f_times, True),
            "small dict": (s_times, True),
            "small dict + one `null`": (n_times, False),
        }
    )

    encode_ok = all(encode_ratios[name] <= 1.5 for name in ("msgpack", "pickle"))
    decode_ok = all(t < 20e-6 for t in z_times)
    summary = (
        "Targets: msgpack and pickle encode <= 1.5x memcpy "
        f"(measured {encode_ratios['msgpack']:.2f}x and {encode_ratios['pickle']:.2f}x: "
        f"{'met' if encode_ok else 'missed'}); zero-copy decode < 20 us at 4 and 64 MiB "
        f"(slowest {max(z_times) * 1e6:.1f} us: {'met' if decode_ok else 'missed'}); "
        "JSON on orjson >= 5x stdlib: "
        + ("met everywhere." if not missed else "missed for " + "; ".join(missed) + ".")
    )
    tensor_intro = (
        "### A 4 MiB float32 tensor\n\n"
        "Each backend's `dumps` and `loads` of `np.float32[1_048_576]`, as multiples of "
        "`bytes(memoryview(arr))` (a memcpy of the same 4 MiB) measured in the same run: "
        f"**{us(copy)} us**. A zero-copy `loads` returns a read-only view of the body."
    )
    markdown = "\n\n".join(
        [
            "## Serializers (`benchmarks/serializers.py`)",
            f"{machine()}; times in microseconds per call, best of 5 runs.",
            tensor_intro,
            table(TENSOR_HEADER, t_rows),
            ZERO_COPY_INTRO,
            table(["loads", "time (us)", "memcpy, same size (us)", "ratio", "target"], z_rows),
            "### Small values: round trip `loads(dumps(x))`\n\nA list of 1,000 Python floats:",
            table(ROUND_HEADER, f_rows),
            f"A small dict: `{json.dumps(SMALL)}`",
            table(ROUND_HEADER, s_rows),
            SAFETY_NOTE,
            JSON_INTRO,
            table(["body", "against", "ours (us)", "theirs (us)", "speed-up", "target"], j_rows),
            where_the_time_goes(s_times, n_times),
            summary,
        ]
    )
    write_section("serializers", markdown)


if __name__ == "__main__":
    main()
