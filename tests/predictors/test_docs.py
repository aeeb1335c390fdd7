"""The python examples of docs/predictors.md run and their assertions hold."""

from __future__ import annotations

from tests import docs


class TestDocs(docs.PageExamples):
    page = "predictors.md"
    minimum = 8
