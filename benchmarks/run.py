"""Run every benchmark in this folder (``make bench``) and update docs/benchmarks.md."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# each module has main(); the order is cheapest first
BENCHMARKS = ["serializers", "overhead", "batching", "http"]


def main(argv: list[str]) -> int:
    chosen = argv or [name for name in BENCHMARKS if (HERE / f"{name}.py").exists()]
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(name).main()
        print(f"== {name} done in {time.perf_counter() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
