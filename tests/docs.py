"""
Run the examples of a docs page: the one shared helper for tests of docs pages.

A page's fenced ``python`` blocks are its runnable examples; each one is run as
its own module, so a block never depends on one before it unless a test says so.

A tutorial's blocks build on each other: :func:`run_in_order` runs them in one
namespace, in an empty directory, after writing the page's files there (blocks
fenced with a title, ```` ```python title="myapp.py" ````, are files the reader
saves, not code to run).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

DOCS = Path(__file__).parents[1] / "docs"

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", flags=re.M | re.S)
_FILE = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', flags=re.M | re.S)


def blocks(page: str | Path, language: str = "python") -> list[str]:
    """Return the fenced code blocks of *language* in *page* (a path under docs/), in order."""
    path = DOCS / page
    return [body for lang, body in _FENCE.findall(path.read_text()) if lang == language]


def files(page: str | Path) -> dict[str, str]:
    """Return the titled blocks of *page*: file name -> content, in order."""
    return dict(_FILE.findall((DOCS / page).read_text()))


@contextlib.contextmanager
def in_directory(directory: Path) -> Iterator[Path]:
    """
    Work in *directory*, importable, as a reader's shell would be; undo it all after.

    Modules imported from *directory* are forgotten on exit, so the next test
    imports its own ``myapp``.
    """
    before = set(sys.modules)
    cwd = Path.cwd()
    sys.path.insert(0, str(directory))
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(cwd)
        sys.path.remove(str(directory))
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(directory)):
                del sys.modules[name]


def write_files(page: str | Path, directory: Path) -> list[Path]:
    """Write the titled blocks of *page* into *directory*; return their paths."""
    written = []
    for name, content in files(page).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written


def run_in_order(page: str | Path, directory: Path) -> dict[str, Any]:
    """
    Run every python block of *page* in order, in one namespace, in *directory*.

    The page's titled blocks are written there first. Returns the namespace.
    """
    write_files(page, directory)
    scope: dict[str, Any] = {"__name__": "__docs__"}
    with in_directory(directory):
        for index, source in enumerate(blocks(page)):
            # the block's number in the file name: a failure's traceback says which
            exec(compile(source, f"{DOCS / page} block{index}", "exec"), scope)
    return scope


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
