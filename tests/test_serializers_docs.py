"""The examples of docs/serializers/index.md run, and its plugin example installs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modeldeploy.serializers
from modeldeploy import ModelDeployError
from modeldeploy.negotiation import ENTRY_POINT_GROUP, SerializerRegistry
from tests import docs

PAGE = "serializers/index.md"
BLOCKS = docs.blocks(PAGE)
PLUGIN = next(block for block in BLOCKS if "class CSV" in block)
USAGE = next(block for block in BLOCKS if 'serializers.get("text/csv"' in block)
(PYPROJECT,) = docs.blocks(PAGE, "toml")
PLUGIN_CLASS: Any = docs.run(PLUGIN, PAGE)["CSV"]


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> SerializerRegistry:
    """A fresh registry behind ``serializers.get`` and ``register``, so no example leaks."""
    fresh = SerializerRegistry()
    monkeypatch.setattr(modeldeploy.serializers, "registry", fresh)
    monkeypatch.setattr(modeldeploy.serializers, "register", fresh.register)
    return fresh


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Install the page's plugin as a distribution built from its pyproject snippet."""
    # tomllib is 3.11+; the snippet is one table of one key
    header, line = PYPROJECT.strip().splitlines()
    assert header == f'[project.entry-points."{ENTRY_POINT_GROUP}"]'
    name, _, quoted = (part.strip() for part in line.partition("="))
    target = quoted.strip('"')
    module = target.partition(":")[0]
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    dist_info = tmp_path / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    yield module
    sys.modules.pop(module, None)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(
    "source",
    [block for block in BLOCKS if block is not USAGE],
    ids=[f"block{i}" for i, block in enumerate(BLOCKS) if block is not USAGE],
)
def test_example_runs(source: str) -> None:
    docs.run(source, PAGE)


def test_plugin_is_found_through_its_entry_point(
    installed_plugin: str, registry: SerializerRegistry
) -> None:
    scope = docs.run(USAGE, PAGE)  # no CSV in scope: the except branch would fail
    codec: Any = scope["codec"]
    assert type(codec).__module__ == installed_plugin
    assert codec.max_size == 4096
    assert "csv" in registry.names()
    assert registry.get("application/csv").name == "csv"


def test_without_the_plugin_the_application_registers_it(registry: SerializerRegistry) -> None:
    scope = docs.run(PLUGIN, PAGE)
    assert "csv" not in registry.names()
    docs.run(USAGE, PAGE, scope)
    assert registry.get("text/csv").name == "csv"


@given(st.binary() | st.text().map(str.encode))
def test_plugin_raises_only_modeldeploy_errors(body: bytes) -> None:
    try:
        value = PLUGIN_CLASS().loads(body)
    except ModelDeployError:
        return
    # compared encoded, so NaN (float() reads "nan") compares equal to itself
    encoded = PLUGIN_CLASS().dumps(value)
    assert PLUGIN_CLASS().dumps(PLUGIN_CLASS().loads(encoded)) == encoded


@given(st.lists(st.lists(st.floats(allow_nan=False), min_size=1)))
def test_plugin_round_trips_tables(table: list[list[float]]) -> None:
    codec = PLUGIN_CLASS()
    assert codec.loads(codec.dumps(table)) == table
