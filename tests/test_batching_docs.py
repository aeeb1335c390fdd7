"""The python examples of docs/batching.md run and their assertions hold."""

from __future__ import annotations

from tests import docs

PAGE = "batching.md"


def test_the_page_has_examples() -> None:
    assert len(docs.blocks(PAGE)) >= 8


@docs.examples(PAGE)
def test_example_runs(source: str) -> None:
    docs.run(source, PAGE)
