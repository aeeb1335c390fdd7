"""
The recipes run as a reader follows them, each in an empty directory.

scikit-learn, ONNX Runtime (with skl2onnx) and LightGBM are installed by the
Makefile (the dev, onnx and lightgbm extras), so their recipes run everywhere,
CI included. PyTorch is not (its build is large and platform-specific): its recipe
runs where torch is installed (``pip install torch``) and is skipped elsewhere.
"""

from __future__ import annotations

import pytest

from tests import docs

# page -> modules it needs that the Makefile may not install (skip without them)
RECIPES = {
    "recipes/scikit-learn.md": (),
    "recipes/onnx.md": (),
    "recipes/lightgbm.md": (),
    "recipes/pytorch.md": ("torch",),
}


@pytest.mark.parametrize(("page", "optional"), RECIPES.items())
def test_the_recipe_runs_in_order(page, optional, tmp_path):
    for module in optional:
        pytest.importorskip(module, reason=f"{page} needs {module}")
    assert len(docs.blocks(page)) >= 2
    assert docs.files(page), "a recipe shows the module it serves"
    docs.run_in_order(page, tmp_path)


@pytest.mark.parametrize("page", RECIPES)
def test_the_recipe_serves_its_module(page):
    """Its ``modeldeploy serve`` line names the module the page writes."""
    (line,) = [
        line
        for block in docs.blocks(page, "sh")
        for line in block.splitlines()
        if line.startswith("modeldeploy serve ")
    ]
    module = line.split()[2].split(":")[0]
    assert f"{module}.py" in docs.files(page)
