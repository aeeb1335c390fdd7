"""
Run the examples of a docs page: the one shared helper for tests of docs pages.

A page's fenced ``python`` blocks are its runnable examples; each one is run as
its own module, so a block never depends on one before it unless a test says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

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


class PageExamples:
    """
    Base of a ``TestDocs`` class that runs every python block of its ``page``.

    A subclass sets ``page`` (and ``minimum``, the fewest blocks the page must
    keep); it gets one ``test_example_runs[blockN]`` per block.
    """

    page: ClassVar[str]
    minimum: ClassVar[int] = 1

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "source" in metafunc.fixturenames:
            found = blocks(self.page)
            ids = [f"block{i}" for i in range(len(found))]
            metafunc.parametrize("source", found, ids=ids)

    def test_the_page_has_examples(self) -> None:
        assert len(blocks(self.page)) >= self.minimum

    def test_example_runs(self, source: str) -> None:
        run(source, self.page)
