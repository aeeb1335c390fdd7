"""A body limit bounds memory, not only bytes: JSON decodes within ``max_memory``.

``JSON.loads`` refuses a body that could decode into more than ``max_memory``
(``MEMORY_FACTOR`` times ``max_size`` by default), from a count of its ``,`` ``:``
``[`` ``{`` bytes. The count is an upper bound only if the per-item costs in
``serializers/json.py`` are: ``test_the_estimate_bounds_what_decoding_allocates``
checks them with tracemalloc, shape by shape, for both engines. The RSS figures go
to the report: peak RSS over the limit for the worst body each shape can send.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

from modeldeploy.errors import PayloadTooLargeError
from modeldeploy.serializers.json import JSON, MEMORY_FACTOR, MIN_MEMORY, _decoded_size
from tests.reliability.clients import record

pytestmark = pytest.mark.reliability

FULL = os.environ.get("MODELDEPLOY_RELIABILITY_FULL") == "1"

# shape -> (opening, one item, closing): bodies of many small values, the costly kind
SHAPES = {
    "floats": (b"[", b"0.5,", b"0.5]"),
    "ints": (b"[", b"7,", b"7]"),
    "empty arrays": (b"[", b"[],", b"[]]"),
    "empty objects": (b"[", b"{},", b"{}]"),
    "strings": (b"[", b'"ab",', b'"ab"]'),
    "non-ASCII strings": (b"[", '"\u00e9\U0001f600",'.encode(), b'"x"]'),
    "objects of one member": (b"[", b'{"a":1},', b'{"a":1}]'),
    "nested arrays": (b"[", b"[[0.5]],", b"[[0.5]]]"),
}


def body(shape: str, size: int) -> bytes:
    opening, item, closing = SHAPES[shape]
    return opening + item * (size // len(item)) + closing


def unique_keys(size: int) -> bytes:
    """One object with distinct keys: each member is a new str and a dict slot."""
    count = size // 12
    return json.dumps({f"k{i}": 0.5 for i in range(count)}, separators=(",", ":")).encode()


@pytest.mark.parametrize("backend", ["orjson", "stdlib"])
@pytest.mark.parametrize("shape", [*SHAPES, "unique keys"])
def test_the_estimate_bounds_what_decoding_allocates(backend: str, shape: str) -> None:
    data = unique_keys(1 << 18) if shape == "unique keys" else body(shape, 1 << 18)
    serializer = JSON(backend=backend, max_memory=1 << 40)  # type: ignore[arg-type]
    serializer.loads(unique_keys(64) if shape == "unique keys" else body(shape, 64))  # warm up
    tracemalloc.start()
    try:
        value = serializer.loads(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value  # decoded, and kept alive until the peak was read
    estimate = _decoded_size(data, 1 << 62)
    assert peak <= estimate, f"{shape}: {peak} bytes allocated, estimate {estimate}"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_body_over_max_memory_is_refused_before_decoding(shape: str) -> None:
    data = body(shape, 1 << 20)
    serializer = JSON(max_memory=len(data) * 4)
    with pytest.raises(PayloadTooLargeError, match="max_memory"):
        serializer.loads(data)
    with pytest.raises(PayloadTooLargeError, match="max_memory"):
        serializer.loads(memoryview(data))


def test_small_bodies_are_not_counted() -> None:
    # under max_memory / 144 bytes nothing is counted, whatever the body holds
    serializer = JSON(max_memory=144 * 1000)
    assert serializer.loads(b"[" + b"[]," * 300 + b"[]]") == [[]] * 301


def test_max_memory_defaults_to_a_multiple_of_max_size() -> None:
    assert JSON(max_size=64 << 20).max_memory == MEMORY_FACTOR * (64 << 20)
    assert JSON(max_size=1000).max_memory == MIN_MEMORY
    with pytest.raises(ValueError, match="max_memory"):
        JSON(max_memory=0)


# -- figures: peak RSS in a fresh process ---------------------------------------------

_PROBE = textwrap.dedent(
    """
    import json, sys, time
    from modeldeploy.serializers.json import JSON, _decoded_size
    from tests.reliability.test_memory import body
    def status(field):  # kB in /proc/self/status
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field))
    shape, size, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serializer = JSON(max_size=limit)
    data = body(shape, size)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current RSS
    before = status("VmRSS:")
    started = time.perf_counter()
    try:
        serializer.loads(data)
        outcome = "decoded"
    except Exception as exc:
        outcome = type(exc).__name__
    took = time.perf_counter() - started
    peak = status("VmHWM:")
    print(json.dumps({"outcome": outcome, "growth": peak - before, "s": took}))
    """
)


def probe(shape: str, size: int, limit: int) -> dict[str, float | str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, shape, str(size), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout)


def largest_accepted(shape: str, limit: int) -> int:
    """The largest body of *shape* (under *limit* bytes) the default max_memory lets through."""
    serializer = JSON(max_size=limit)
    low, high = 1024, limit
    while high - low > 4096:
        middle = (low + high) // 2
        if _decoded_size(body(shape, middle), serializer.max_memory) <= serializer.max_memory:
            low = middle
        else:
            high = middle
    return low


def test_peak_memory_is_a_bounded_multiple_of_the_limit() -> None:
    """Peak RSS over the body, for the worst accepted body of each shape, over the limit."""
    limit = (64 << 20) if FULL else (4 << 20)
    rows = {}
    started = time.monotonic()
    for shape in SHAPES:
        size = largest_accepted(shape, limit)
        accepted = probe(shape, size, limit)
        assert accepted["outcome"] == "decoded", accepted
        rows[shape] = {
            "body_mib": round(size / (1 << 20), 2),
            "peak_over_limit": round(float(accepted["growth"]) / limit, 2),
        }
        # peak RSS growth (the body excluded) stays within max_memory, with room for the
        # allocator's pages: the bound the docs state
        assert float(accepted["growth"]) <= MEMORY_FACTOR * limit * 1.1, (shape, accepted)
    # the case: a 50 MiB array of floats (here: 50/64 of the limit) is refused
    refused = probe("floats", limit * 50 // 64, limit)
    assert refused["outcome"] == "PayloadTooLargeError", refused
    record(
        "memory",
        {
            "limit_mib": limit >> 20,
            "memory_factor": MEMORY_FACTOR,
            "shapes": rows,
            "refused_floats_body_mib": round(limit * 50 / 64 / (1 << 20), 1),
            "refused_peak_over_limit": round(float(refused["growth"]) / limit, 3),
            "refused_in_ms": round(float(refused["s"]) * 1000, 1),
            "duration_s": round(time.monotonic() - started, 1),
        },
    )


def test_the_v2_parser_bounds_memory_as_well() -> None:
    from modeldeploy import v2

    count = 1 << 20
    data = b"[" + b"0," * count + b"0]"
    request = (
        b'{"inputs":[{"name":"x","datatype":"INT64","shape":[%d],"data":' % (count + 1)
        + data
        + b"}]}"
    )
    # 2 MiB of small ints: over 16 MiB (MIN_MEMORY) decoded, so refused under a 4 MiB limit
    with pytest.raises(PayloadTooLargeError, match="max_memory"):
        v2.decode_infer_request(request, None, max_body_size=4 << 20)
    # and decoded when the limit allows it
    parsed = v2.decode_infer_request(request, None, max_body_size=64 << 20)
    assert parsed.inputs["x"].shape == (count + 1,)
