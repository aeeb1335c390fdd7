"""``pip install modeldeploy`` with no extra: the core, the CLI and the HTTP adapters work.

The package is installed into a fresh virtual environment, as a user would, and
used there: no numpy, orjson, defusedxml, uvicorn or grpcio is present.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# as a user's shell has it: not this checkout's src/ on the path
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USE = textwrap.dedent(
    """
    import importlib.util, json, msgpack
    assert importlib.util.find_spec("numpy") is None, "numpy is installed"
    import modeldeploy as md
    from modeldeploy.adapters import asgi, wsgi
    from modeldeploy.http import HTTPApp

    app = HTTPApp(md.Service(lambda x: [v * 2 for v in x], name="double", workers=0))
    app.start_services()
    def call(path, body, content_type="application/json"):
        headers = {"content-type": content_type, "accept": content_type}
        return app("POST", path, headers, body)
    as_json = call("/predict", b"[1, 2]")
    as_msgpack = call("/predict", msgpack.packb([1, 2]), "application/msgpack")
    v2 = call("/v2/models/double/infer", b"{}")
    print(json.dumps({
        "json": [as_json.status, as_json.body.decode()],
        "msgpack": [as_msgpack.status, msgpack.unpackb(as_msgpack.body)],
        "v2": [v2.status, json.loads(v2.body)["error"]],
        "metrics": app("GET", "/metrics", {}, b"").status,
        "adapters": [callable(asgi(app)), callable(wsgi(app))],
    }))
    """
)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding modeldeploy and its five runtime dependencies only."""
    where = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True,
        timeout=600,
        env=ENV,
    )
    return where


def test_the_command_runs(bare: Path) -> None:
    done = subprocess.run(
        [bare / "bin" / "modeldeploy", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("modeldeploy ")


def test_predict_and_metrics_work_and_v2_names_its_extra(bare: Path) -> None:
    done = subprocess.run(
        [bare / "bin" / "python", "-c", USE], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["json"] == [200, "[2,4]"]
    assert result["msgpack"] == [200, [2, 4]]
    assert result["v2"] == [501, "the V2 routes need numpy: pip install 'modeldeploy[numpy]'"]
    assert result["metrics"] == 200
    assert result["adapters"] == [True, True]
    # said once, at start, where the operator looks
    assert "modeldeploy[numpy]" in done.stderr


def test_serving_the_cli_without_a_server_extra_says_which(bare: Path) -> None:
    done = subprocess.run(
        [bare / "bin" / "modeldeploy", "serve", "modeldeploy.demo:service"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bare,
        env=ENV,
    )
    assert done.returncode != 0
    assert "modeldeploy[" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_proto_files_the_docs_name_are_installed(bare: Path) -> None:
    # docs/adapters/grpc.md (grpcurl) and docs/serializers/protobuf.md (protoc) point there
    show = (
        "import modeldeploy, pathlib; root = pathlib.Path(modeldeploy.__file__).parent / 'proto'; "
        "print((root / 'inference/grpc_service.proto').read_text()[:2000]); "
        "print((root / 'modeldeploy/v1/value.proto').read_text()[:2000])"
    )
    done = subprocess.run(
        [bare / "bin" / "python", "-c", show], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert "service GRPCInferenceService" in done.stdout
    assert "package modeldeploy.v1;" in done.stdout


@pytest.mark.parametrize(
    ("statement", "hint"),
    [
        ("import modeldeploy.adapters.grpc", "pip install 'modeldeploy[grpc]'"),
        ("import modeldeploy; modeldeploy.XML()", "pip install 'modeldeploy[xml]'"),
        ("import modeldeploy.demo", "pip install 'modeldeploy[numpy]'"),
    ],
)
def test_a_missing_extra_names_itself(bare: Path, statement: str, hint: str) -> None:
    done = subprocess.run(
        [bare / "bin" / "python", "-c", statement],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("ModuleNotFoundError: ")
    assert hint in done.stderr.strip().splitlines()[-1]
