"""Run every benchmark in this folder (``make bench``) and update docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# last, not first: benchmarks/http.py must not shadow the standard library's http
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != HERE] + [str(HERE)]

# each module has main(); the order is cheapest first
BENCHMARKS = ["serializers", "store", "overhead", "app", "monitors", "batching", "http", "scale"]


def main(argv: list[str]) -> int:
    chosen = argv or [name for name in BENCHMARKS if (HERE / f"{name}.py").exists()]
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        # by path, under a name of its own: "http" is the standard library's
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        module.main()
        print(f"== {name} done in {time.perf_counter() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
