"""A missing extra raises an error that names what to install (issue #11, trap 7)."""

from __future__ import annotations

import subprocess
import sys

import pytest

NUMPY = "pip install 'modeldeploy[numpy]'"
SIGNATURE = "md.Signature([md.TensorSpec('x', 'float32', (4,))])"


@pytest.mark.parametrize(
    ("missing", "statement", "hint"),
    [
        ("defusedxml", "md.XML()", "pip install 'modeldeploy[xml]'"),
        ("grpc", "import modeldeploy.adapters.grpc", "pip install 'modeldeploy[grpc]'"),
        ("flask", "import modeldeploy.adapters.flask", "pip install 'modeldeploy[flask]'"),
        ("numpy", "import modeldeploy.v2", NUMPY),
        ("numpy", "import modeldeploy.demo", NUMPY),
        ("numpy", "md.predictor(Estimator())", NUMPY),
        ("numpy", f"validation.compile_validator({SIGNATURE})", NUMPY),
    ],
)
def test_the_error_names_the_extra(missing: str, statement: str, hint: str) -> None:
    source = (
        f"import sys; sys.modules[{missing!r}] = None  # as if it were not installed\n"
        "import modeldeploy as md\n"
        "from modeldeploy import validation\n"
        "class Estimator:\n"
        "    def predict(self, x):\n"
        "        return x\n"
        f"{statement}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: "), result.stderr
    assert f"needs {missing}: {hint}" in last
