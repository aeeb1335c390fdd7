"""
The two models every contestant of ``benchmarks/http.py`` serves, and their request.

Float32 MLPs with ReLU, weights drawn from a fixed seed, so every server process
of every contestant computes the same function:

* ``tiny``: 64 -> 256 -> 10, where the HTTP plumbing costs more than the model;
* ``heavy``: 512 -> 2048 -> 512, where the model costs more than the plumbing,
  and batching requests together pays.

The server apps pick one from the ``BENCH_MODEL`` environment variable.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

SEED = 0
SIZES = {"tiny": (64, 256, 10), "heavy": (512, 2048, 512)}


class MLP:
    """``relu(x @ w1) @ w2``: one item of shape (n_in,), or a batch of rows (n, n_in)."""

    def __init__(self, name: str) -> None:
        n_in, n_hidden, n_out = SIZES[name]
        rng = np.random.default_rng(SEED)
        self.name = name
        self.n_in, self.n_out = n_in, n_out
        self.w1 = rng.standard_normal((n_in, n_hidden), dtype=np.float32) / np.float32(
            np.sqrt(n_in)
        )
        self.w2 = rng.standard_normal((n_hidden, n_out), dtype=np.float32) / np.float32(
            np.sqrt(n_hidden)
        )

    def __call__(self, x: Any) -> np.ndarray:
        return np.maximum(x @ self.w1, 0) @ self.w2

    def instance(self) -> np.ndarray:
        """The one instance every request carries (fixed, so every body is the same)."""
        rng = np.random.default_rng(SEED + 1)
        return rng.standard_normal(self.n_in, dtype=np.float32)


def from_env() -> MLP:
    """The model ``BENCH_MODEL`` names (``tiny`` when unset)."""
    return MLP(os.environ.get("BENCH_MODEL", "tiny"))
