"""The python examples of docs/monitors.md run and their assertions hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests import docs


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class TestDocs(docs.PageExamples):
    page = "monitors.md"
    minimum = 6
