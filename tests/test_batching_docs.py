"""The python examples of docs/batching.md run and their assertions hold."""

from __future__ import annotations

from tests import docs


class TestDocs(docs.PageExamples):
    page = "batching.md"
    minimum = 8
