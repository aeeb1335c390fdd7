"""The examples of docs/versions.md run as written."""

from __future__ import annotations

from tests.docs import PageExamples


class TestVersionsPage(PageExamples):
    page = "versions.md"
    minimum = 5
