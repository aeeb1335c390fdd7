"""
Run the examples of a docs page: the one shared helper for tests of docs pages.

A page's fenced ``python`` blocks are its runnable examples; each one is run as
its own module, so a block never depends on one before it unless a test says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).parents[1] / "docs"

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", flags=re.M | re.S)


def blocks(page: str | Path, language: str = "python") -> list[str]:
    """Return the fenced code blocks of *language* in *page* (a path under docs/), in order."""
    path = DOCS / page
    return [body for lang, body in _FENCE.findall(path.read_text()) if lang == language]


def run(source: str, page: str | Path, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute one block as the module ``__docs__`` and return its namespace."""
    scope = {"__name__": "__docs__"} if namespace is None else namespace
    exec(compile(source, str(DOCS / page), "exec"), scope)
    return scope


def examples(page: str | Path) -> pytest.MarkDecorator:
    """Parametrize a test over the python blocks of *page* as ``source`` (ids ``block0``...)."""
    found = blocks(page)
    return pytest.mark.parametrize("source", found, ids=[f"block{i}" for i in range(len(found))])
