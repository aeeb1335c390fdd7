"""Shared fixtures and Hypothesis profiles."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# the machine is small and noisy: no per-example deadline, more examples in CI
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")

IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str) -> str:
    """Return the path of executable *name*; skip locally, fail in CI, when missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message}; .ci/run must install it")
        pytest.skip(message)
    return path
