"""
The python examples of the pages that have no test module of their own run as written.

Blocks that need a running server are fenced ``py`` on their page, so they are shown
but not run here; the adapter tests run the same calls against real servers.
"""

from __future__ import annotations

import pytest

from tests import docs

# page -> the fewest python blocks it must keep (a page losing its examples fails)
PAGES = {
    "service.md": 5,
    "rollouts.md": 3,
    "errors.md": 1,
    "adapters/index.md": 1,
    "adapters/asgi.md": 1,
    "adapters/wsgi.md": 1,
    "http.md": 1,
    "v2.md": 9,
    "serializers/msgpack.md": 1,
    "serializers/pickle.md": 1,
    "serializers/protobuf.md": 4,
    "../README.md": 1,
    "testing.md": 3,
    "deployment/index.md": 1,
}
# cli.md is not here: tests/test_cli.py runs its examples against a real server


@pytest.mark.parametrize(("page", "minimum"), PAGES.items())
def test_the_page_has_examples(page, minimum):
    assert len(docs.blocks(page)) >= minimum


@pytest.mark.parametrize(
    ("page", "source"),
    [
        pytest.param(page, source, id=f"{page}-block{i}")
        for page in PAGES
        for i, source in enumerate(docs.blocks(page))
    ],
)
def test_example_runs(page, source):
    docs.run(source, page)
