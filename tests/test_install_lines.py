"""Every ``modeldeploy[extra]`` the docs, the README and the Dockerfile name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # the standard library from Python 3.11

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)
_NAMED = re.compile(r"modeldeploy\[([A-Za-z0-9_,\- ]+)\]")
PAGES = sorted([*ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"]) + sorted(
    ROOT.joinpath("docs").rglob("Dockerfile")
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_extras_exist(page):
    named = {
        extra.strip()
        for group in _NAMED.findall(page.read_text())
        for extra in group.split(",")
        if extra.strip()
    }
    assert named <= EXTRAS, f"{page.name} names extras pyproject.toml lacks: {named - EXTRAS}"


def test_the_guides_say_how_to_install_what_they_use():
    for page in ("tutorials/flask-pickle.md", "testing.md", "deployment/Dockerfile"):
        assert _NAMED.search((ROOT / "docs" / page).read_text()), page
    for recipe in ROOT.joinpath("docs", "recipes").glob("*.md"):
        if recipe.name != "index.md":
            assert "pip install" in recipe.read_text(), recipe.name
