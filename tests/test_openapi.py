"""modeldeploy.openapi and GET /openapi.json: a valid OpenAPI 3.1 document of the routes."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

import modeldeploy as md
from modeldeploy.openapi import document
from modeldeploy.testing import client

IRIS = md.Signature(
    [md.TensorSpec("measurements", "float64", (4,))], [md.TensorSpec("label", "int64", ())]
)


def iris():
    return md.Service(md.predictor(lambda x: 0, signature=IRIS), name="iris")


def test_one_service_is_valid_and_describes_its_signature():
    spec = document([iris()])
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {
        "type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4
    }  # fmt: skip
    ok = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"type": "integer"}
    assert "application/msgpack" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    errors = spec["paths"]["/predict"]["post"]["responses"]
    assert errors["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_several_services_have_no_plain_predict():
    double = md.Service(lambda x: 2 * x, name="double")
    spec = document([iris(), double])
    validate(spec)
    assert "/predict" not in spec["paths"]
    assert {"/models/iris/predict", "/models/double/predict"} <= set(spec["paths"])
    name = spec["paths"]["/v2/models/{model_name}/infer"]["parameters"][0]
    assert name["schema"] == {"enum": ["iris", "double"]}


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_served_on_openapi_json(interface):
    with client(iris(), interface=interface) as http:
        answer = http.get("/openapi.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        spec = answer.json()
        validate(spec)
        # every route the document names answers (with the model name filled in)
        for path, item in spec["paths"].items():
            url = path.replace("{model_name}", "iris").replace("{model_version}", "1")
            if "get" in item:
                assert http.get(url).status_code in (200, 400), url
        assert http.post("/openapi.json").status_code == 405


def test_the_flask_blueprint_serves_it_under_its_prefix():
    import flask

    from modeldeploy.adapters.flask import blueprint

    service = iris()
    app = flask.Flask(__name__)
    app.register_blueprint(blueprint(service, url_prefix="/ml"))
    with client(app, interface="wsgi") as http:
        answer = http.get("/ml/openapi.json")
        assert answer.status_code == 200
        validate(answer.json())
    service.close()


def _operations_conform(app):
    """Every operation the document names, driven by schemathesis against *app* (WSGI)."""
    import schemathesis
    import schemathesis.checks
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    # a tiny X-Request-Timeout is a documented 504, and a schema-valid V2 tensor may
    # still not fit the model (the document's InferRequest is the protocol's, not
    # each model's): answers are checked against the document, statuses included
    excluded = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.positive_data_acceptance,
    ]
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def conforms(case):
            case.validate_response(case.call(), excluded_checks=excluded)

        conforms()
        checked.append(f"{operation.method.upper()} {operation.path}")
    return checked


def test_the_app_answers_as_its_document_says():
    """schemathesis sends requests generated from the document; the answers must fit it."""
    service = iris()
    service.start()
    try:
        checked = _operations_conform(md.wsgi(service))
    finally:
        service.close()
    assert {"POST /predict", "POST /v2/models/{model_name}/infer", "GET /metrics"} <= set(checked)
