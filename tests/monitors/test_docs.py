"""The python examples of docs/monitors.md run and their assertions hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests import docs

PAGE = "monitors.md"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_the_page_has_examples() -> None:
    assert len(docs.blocks(PAGE)) >= 4


@docs.examples(PAGE)
def test_example_runs(source: str) -> None:
    docs.run(source, PAGE)
