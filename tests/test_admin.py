"""The admin routes: off by default, behind a bearer token, rolling versions from a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modeldeploy as md
from modeldeploy.http import HTTPApp
from modeldeploy.store import ModelStore
from tests.store.test_store import scaler

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).parents[1]


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models", key="k")
    for factor in (2.0, 3.0):
        store.save("scale", {"factor": factor}, format="json", factory=scaler)
    return store


@pytest.fixture
def app(store: ModelStore) -> HTTPApp:
    service = md.Service(store.load("scale", "v1"), workers=0).start()
    yield HTTPApp(service, admin_token=TOKEN, stores={"scale": store})
    service.close()


def predict(app: HTTPApp) -> tuple[str, float]:
    response = app("POST", "/predict", {"content-type": "application/json"}, b"1.0")
    return response.headers["x-model-version"], json.loads(response.body)


def test_off_by_default(store: ModelStore) -> None:
    with md.Service(store.load("scale", "v1"), workers=0) as service:
        app = HTTPApp(service)
        for method, path in (
            ("GET", "/admin/models/scale"),
            ("POST", "/admin/models/scale/rollback"),
        ):
            assert app(method, path, AUTH, b"").status == 404


def test_deploy_rollback_over_http(app: HTTPApp) -> None:
    response = app("POST", "/admin/models/scale/deploy", AUTH, b'{"version": "v2"}')
    assert response.status == 200, response.body
    assert json.loads(response.body)["live"] == "v2"
    assert predict(app) == ("v2", 3.0)
    response = app("POST", "/admin/models/scale/rollback", AUTH, b"")
    assert (response.status, json.loads(response.body)["live"]) == (200, "v1")
    assert predict(app) == ("v1", 2.0)
    info = app("GET", "/admin/models/scale", AUTH, b"")
    assert json.loads(info.body)["previous"] == "v2"


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}, {"authorization": "Bearer"}],
)
def test_the_token_is_required(app: HTTPApp, headers: dict[str, str]) -> None:
    response = app("POST", "/admin/models/scale/deploy", headers, b'{"version": "v2"}')
    assert response.status == 401
    assert json.loads(response.body)["error"]["code"] == "unauthorized"
    assert predict(app) == ("v1", 2.0)


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{", 400), (b'{"version": 2}', 400), (b'{"version": "v9"}', 404), (b"{}", 400)],
)
def test_a_bad_deploy_changes_nothing(app: HTTPApp, body: bytes, status: int) -> None:
    response = app("POST", "/admin/models/scale/deploy", AUTH, body)
    assert response.status == status, response.body
    assert predict(app) == ("v1", 2.0)


def test_unknown_model_and_action(app: HTTPApp) -> None:
    assert app("POST", "/admin/models/nope/rollback", AUTH, b"").status == 404
    assert app("POST", "/admin/models/scale/explode", AUTH, b"").status == 404
    assert app("POST", "/admin/models/scale/rollback", AUTH, b"").status == 503  # no previous


def test_the_cli_refuses_admin_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELDEPLOY_ADMIN_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "serve", "modeldeploy.demo:service", "--admin"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "MODELDEPLOY_ADMIN_TOKEN" in done.stderr
