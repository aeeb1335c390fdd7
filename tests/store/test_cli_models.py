"""``modeldeploy models ...`` and ``modeldeploy serve ROOT/NAME@REF``, run as real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy.store import KEY_ENV, ModelStore
from tests.integration.servers import request, serve

ROOT = Path(__file__).parents[2]
X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.2, 0.9], [0.8, 0.1]])
Y = np.array([0, 1, 1, 0, 0, 1])
SIGNATURE = {
    "inputs": [{"name": "X", "dtype": "float32", "shape": [2]}],
    "outputs": [
        {"name": "label", "dtype": "int64", "shape": []},
        {"name": "probabilities", "dtype": "float32", "shape": [2]},
    ],
}


def models(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", "models", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory, estimator: LogisticRegression) -> Path:
    from skl2onnx import to_onnx

    path = tmp_path_factory.mktemp("artifacts") / "model.onnx"
    model = to_onnx(estimator, X[:1].astype(np.float32), options={"zipmap": False})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def saved(tmp_path: Path, onnx_file: Path) -> Path:
    """A store with iris v1 (alias staging), saved by the command."""
    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps(SIGNATURE))
    root = tmp_path / "models"
    result = models(
        "save", str(root), "iris", str(onnx_file), "--format", "onnx",
        "--signature", str(signature), "--metadata", "accuracy=0.97",
        "--metadata", "commit=abc123", "--alias", "staging",
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "v1\n", "")
    return root


def test_save_show_and_list(saved: Path, onnx_file: Path) -> None:
    assert (saved / "iris" / "v1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    shown = models("show", str(saved), "iris@staging")
    assert shown.returncode == 0
    manifest = json.loads(shown.stdout)
    assert manifest["metadata"] == {"accuracy": 0.97, "commit": "abc123"}
    assert manifest["signature"] == SIGNATURE
    assert shown.stdout == (saved / "iris" / "v1" / "manifest.json").read_text()

    listed = models("list", str(saved))
    assert listed.stdout.split("\n")[0].split() == ["MODEL", "VERSIONS", "LATEST", "ALIASES"]
    assert listed.stdout.split("\n")[1].split() == ["iris", "1", "v1", "staging=v1"]
    versions = json.loads(models("list", str(saved), "iris", "--json").stdout)
    assert [(v["version"], v["format"], v["aliases"], v["signed"]) for v in versions] == [
        ("v1", "onnx", "staging", "no")
    ]


def test_alias(saved: Path, onnx_file: Path) -> None:
    assert models("save", str(saved), "iris", str(onnx_file), "--format", "onnx").stdout == "v2\n"
    assert models("alias", str(saved), "iris", "production", "v2").returncode == 0
    assert ModelStore(saved).aliases("iris") == {"production": "v2", "staging": "v1"}
    refused = models("alias", str(saved), "iris", "production", "v9")
    assert refused.returncode == 1
    assert "no version 'v9'" in refused.stderr
    assert ModelStore(saved).aliases("iris")["production"] == "v2"


def test_a_named_version_is_immutable(saved: Path, onnx_file: Path) -> None:
    args = ("save", str(saved), "iris", str(onnx_file), "--format", "onnx", "--version", "gold")
    assert models(*args).stdout == "gold\n"
    again = models(*args)
    assert again.returncode == 1
    assert "iris/gold exists; versions never change" in again.stderr


def test_verify(saved: Path) -> None:
    ok = models("verify", str(saved))
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.splitlines() == ["ok      iris/v1", "1 of 1 versions passed (hash checks)"]

    unsigned = models("verify", str(saved), "iris@staging", key="k")
    assert unsigned.returncode == 1
    assert "FAILED  iris/v1: iris/v1 is not signed" in unsigned.stdout

    artifact = saved / "iris" / "v1" / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 1
    artifact.write_bytes(bytes(data))
    tampered = models("verify", str(saved), "iris")
    assert tampered.returncode == 1
    assert "does not match its sha256" in tampered.stdout


def test_verify_reports_and_clean_removes_leftovers(saved: Path) -> None:
    leftover = saved / "iris" / ".tmp-killed"
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(b"half")
    verified = models("verify", str(saved))
    assert verified.returncode == 0
    assert "left    iris/.tmp-killed: an unfinished save" in verified.stdout
    assert models("clean", str(saved)).stdout == ""  # younger than an hour: kept
    cleaned = models("clean", str(saved), "--older-than", "0")
    assert (cleaned.returncode, cleaned.stdout) == (0, "removed iris/.tmp-killed\n")
    assert not leftover.exists()
    assert ModelStore(saved).versions("iris") == ["v1"]


def test_usage_errors(tmp_path: Path) -> None:
    missing = models("list", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "is not a directory" in missing.stderr
    unknown = models("show", str(tmp_path), "iris")
    assert unknown.returncode == 1
    assert "no model 'iris'" in unknown.stderr
    bad_metadata = models(
        "save", str(tmp_path), "m", __file__, "--format", "json", "--metadata", "novalue"
    )
    assert bad_metadata.returncode == 2
    assert "KEY=VALUE" in bad_metadata.stderr
    bad_signature = tmp_path / "signature.json"
    bad_signature.write_text('{"outputs": []}')
    refused = models(
        "save", str(tmp_path), "m", __file__, "--format", "json", "--signature", str(bad_signature)
    )
    assert refused.returncode == 2
    assert "--signature is not a signature: KeyError('inputs')" in refused.stderr


def test_a_short_signature_file(tmp_path: Path, onnx_file: Path) -> None:
    signature = tmp_path / "signature.json"
    signature.write_text('{"inputs": [{"name": "X", "dtype": "float32"}]}')
    saved = models(
        "save",
        str(tmp_path),
        "m",
        str(onnx_file),
        "--format",
        "onnx",
        "--signature",
        str(signature),
    )
    assert saved.returncode == 0, saved.stderr
    assert json.loads(models("show", str(tmp_path), "m").stdout)["signature"] == {
        "inputs": [{"dtype": "float32", "name": "X", "shape": None}],
        "outputs": [],
    }


@pytest.mark.integration
def test_serve_a_store_reference(saved: Path, estimator: LogisticRegression) -> None:
    server = serve(f"{saved}/iris@staging", "--server", "wsgiref")
    try:
        rows = [[0.1, 0.9], [0.9, 0.2]]
        status, _, body = request(
            server.port, "POST", "/predict", json.dumps(rows[0]).encode(),
            {"content-type": "application/json"},
        )  # fmt: skip
        assert status == 200, body
        answer = json.loads(body)
        assert answer["label"] == int(estimator.predict(rows[:1])[0])
        assert answer["probabilities"] == pytest.approx(estimator.predict_proba(rows[:1])[0])
        status, _, body = request(server.port, "GET", "/v2/models/iris")
        assert status == 200
        metadata = json.loads(body)
        assert (metadata["name"], metadata["versions"]) == ("iris", ["v1"])
        assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
        assert server.terminate() == 0
    finally:
        server.kill()


def test_serve_refuses_an_unsigned_pickle(tmp_path: Path, estimator: LogisticRegression) -> None:
    store = ModelStore(tmp_path)
    store.save("clf", estimator, format="joblib")
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "serve", f"{tmp_path}/clf", "--server", "wsgiref"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != KEY_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "joblib artifact runs code" in result.stderr
