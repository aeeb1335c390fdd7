"""
Shared timing and reporting for the benchmarks.

Every figure is reported beside a limit measured in the same run (a bare
memcpy, a bare model call), because this machine is small and noisy: the
ratio is what carries from one run to the next, not the absolute time.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# benchmarks/http.py shares its name with the standard library's http package, and a
# script run from this folder has the folder first on sys.path: move it last, so that
# `import http.client` (prometheus_client, uvicorn) finds the standard library's
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE] + [str(_HERE)]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
QUICK = os.environ.get("BENCH_QUICK") == "1"  # a short smoke run (CI, make test)


def _loops(fn: Callable[[], object], budget: float) -> int:
    """How many calls of *fn* make one run of about a fifth of *budget*."""
    fn()  # warm caches and lazy imports
    number = 1
    while True:  # grow the loop until one run takes a measurable slice of the budget
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > budget / 10 or number >= 1 << 24:
            break
        number *= 4
    return max(1, int(number * (budget / 5) / max(elapsed, 1e-9)))


def _run(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def per_calls(*fns: Callable[[], object], budget: float = 0.2, repeats: int = 5) -> list[float]:
    """
    Seconds per call of each of *fns*: the best of *repeats* runs of about *budget* seconds.

    The runs of the functions alternate (a, b, a, b, ...), so a drift of the
    machine (another process, the CPU's clock) falls on all of them alike,
    and the minimum is the least disturbed estimate on a shared machine.
    """
    if QUICK:
        budget, repeats = budget / 10, 2
    numbers = [_loops(fn, budget) for fn in fns]
    best = [float("inf")] * len(fns)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for i, (fn, number) in enumerate(zip(fns, numbers, strict=True)):
                best[i] = min(best[i], _run(fn, number))
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def per_call(fn: Callable[[], object], *, budget: float = 0.2, repeats: int = 5) -> float:
    """Seconds per call of *fn*: :func:`per_calls` of one function."""
    return per_calls(fn, budget=budget, repeats=repeats)[0]


def percentiles(samples: list[float], *qs: float) -> list[float]:
    """The *qs* percentiles (0-100) of *samples*."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return [ordered[0] for _ in qs]
    cuts = statistics.quantiles(ordered, n=1000, method="inclusive")
    return [
        ordered[0] if q <= 0 else ordered[-1] if q >= 100 else cuts[int(q * 10) - 1] for q in qs
    ]


def us(seconds: float) -> str:
    """Format seconds as microseconds for a table."""
    return f"{seconds * 1e6:,.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line naming the machine and the versions measured."""
    import numpy

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {numpy.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def write_section(name: str, markdown: str) -> None:
    """Replace the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    if QUICK:
        print(markdown)
        return
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block + "\n"
    )
    DOCS.write_text(text)
    print(markdown)
