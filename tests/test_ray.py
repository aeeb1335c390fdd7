"""``modeldeploy.ray`` without a cluster: the replica class, the builder, the KubeRay manifest."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import modeldeploy as md
import modeldeploy.ray as mdray
from modeldeploy.cli import resolve
from tests import docs
from tests.integration.test_ray import require_ray

# importing Ray warns about its own internals (pydantic, pkg_resources)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MANIFEST = Path(__file__).parents[1] / "docs" / "scaling" / "rayservice.yaml"


def double(batch: Any) -> Any:
    return [2 * x for x in batch]


def small_service() -> md.Service:
    return md.Service(md.predictor(double, batched=True), name="double", max_body_size=16)


def call(ingress: mdray.Ingress, method: str, path: str, body: bytes = b"", **extra: Any) -> Any:
    """One request through the replica's ``__call__``, as Ray's proxy makes it."""
    from starlette.requests import Request

    chunks = [body[i : i + 4] for i in range(0, len(body), 4)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    headers = [(b"content-type", b"application/json"), *extra.get("headers", [])]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": extra.get("root_path", ""),
        "query_string": b"",
        "headers": headers,
    }
    return asyncio.run(ingress(Request(scope, receive)))


@pytest.fixture
def ingress() -> Any:
    pytest.importorskip("starlette")
    replica = mdray.Ingress(small_service)
    yield replica
    replica.__del__()


def test_the_replica_answers_through_httpapp(ingress: mdray.Ingress) -> None:
    response = call(ingress, "POST", "/predict", b"21")
    assert response.status_code == 200
    assert json.loads(response.body) == 42
    assert response.headers["content-type"] == "application/json"


def test_the_replica_answers_under_a_route_prefix(ingress: mdray.Ingress) -> None:
    response = call(ingress, "GET", "/models/v2/models/double", root_path="/models")
    assert response.status_code == 200
    assert json.loads(response.body)["name"] == "double"


def test_the_replica_refuses_a_body_over_the_limit(ingress: mdray.Ingress) -> None:
    # streamed, no Content-Length: refused once the limit is passed
    response = call(ingress, "POST", "/predict", b"[" + b"1," * 20 + b"1]")
    assert response.status_code == 413
    assert json.loads(response.body)["error"]["code"] == "payload_too_large"
    # announced: refused before reading
    response = call(
        ingress, "POST", "/v2/models/double/infer", b"{}", headers=[(b"content-length", b"99")]
    )
    assert response.status_code == 413
    assert "over the limit" in json.loads(response.body)["error"]


def test_the_replica_reports_a_failed_service_to_ray(ingress: mdray.Ingress) -> None:
    ingress.check_health()  # healthy: returns
    (service,) = ingress.app.services.values()
    service.close()
    with pytest.raises(md.ModelLoadError, match="double"):
        ingress.check_health()


def test_a_replica_whose_model_fails_to_load_raises() -> None:
    class Failing:
        def load(self) -> None:
            raise RuntimeError("no weights")

        def predict(self, batch: Any) -> Any:
            return batch

    with pytest.raises(md.ModelLoadError, match="failed to start"):
        mdray.Ingress(lambda: md.Service(Failing()))


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    with pytest.raises(ImportError, match=r"modeldeploy\[ray\]"):
        mdray.app("modeldeploy.demo:service")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "needs spec"),
        ({"spec": "a:b", "replicas": "2"}, "unknown argument"),
        ({"spec": "a:b", "num_replicas": "two"}, "must be a number"),
    ],
)
def test_build_refuses_bad_args(args: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mdray.build(args)


def test_options_pass_through_to_the_deployment() -> None:
    require_ray()
    application = mdray.app(
        "modeldeploy.demo:service",
        num_replicas=3,
        max_ongoing_requests=48,
        ray_actor_options={"num_cpus": 0.5},
        health_check_period_s=2,
    )
    deployment = application._bound_deployment  # Ray keeps no public accessor
    assert deployment.name == mdray.DEPLOYMENT_NAME
    assert deployment.num_replicas == 3
    assert deployment.max_ongoing_requests == 48
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    autoscaled = mdray.app(
        "modeldeploy.demo:service",
        autoscaling_config={"min_replicas": 1, "max_replicas": 4},
    )._bound_deployment
    assert autoscaled._deployment_config.autoscaling_config.max_replicas == 4
    built = mdray.build({"spec": "modeldeploy.demo:service", "num_replicas": "2"})
    assert built._bound_deployment.num_replicas == 2


# -- the KubeRay manifest of docs/scaling.md --------------------------------------------


def test_the_scaling_page_includes_the_manifest() -> None:
    page = (docs.DOCS / "scaling.md").read_text()
    assert '--8<-- "docs/scaling/rayservice.yaml"' in page


def test_the_rayservice_manifest_serves_our_builder() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    (application,) = config["applications"]
    module, _, name = application["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), name)
    assert builder is mdray.build
    assert set(application["args"]) == {"spec"}  # replicas come from `deployments`
    assert resolve(application["args"]["spec"]).services  # the SPEC is served as it is
    (deployment,) = application["deployments"]
    assert deployment["name"] == mdray.DEPLOYMENT_NAME
    # every worker exports its metrics where Prometheus looks
    head = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["metrics-export-port"] == "8080"


def test_the_manifest_is_a_valid_serve_config() -> None:
    require_ray()
    from ray.serve.schema import ServeDeploySchema

    manifest = yaml.safe_load(MANIFEST.read_text())
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    (application,) = config.applications
    (deployment,) = application.deployments
    # options Ray's schema knows, with our values
    assert deployment.max_ongoing_requests == 64
    assert deployment.autoscaling_config["max_replicas"] == 8
    assert mdray.build(application.args)._bound_deployment.name == deployment.name
