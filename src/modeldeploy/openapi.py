"""
The OpenAPI 3.1 document of the HTTP routes, built from the services they serve.

:func:`document` describes ``/predict`` (or ``/models/{name}/predict`` per model),
the Open Inference Protocol (KServe V2) routes, ``/metrics`` and the error bodies,
with each model's name, and the JSON schema of its inputs and outputs when it
declares a signature. :class:`~modeldeploy.http.HTTPApp` serves it on
``GET /openapi.json``, so Swagger UI, client generators and schemathesis read it.

>>> import modeldeploy as md
>>> from modeldeploy.openapi import document
>>> spec = document([md.Service(abs, name="abs")])
>>> spec["openapi"], sorted(spec["paths"])[:2]
('3.1.0', ['/metrics', '/models/abs/predict'])

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._version import __version__
from .messages import Signature, TensorSpec
from .service import Service

__all__ = ["document"]

_JSON = "application/json"
_REF = "#/components/schemas/"

# the statuses each kind of route may answer with an error body
_PREDICT_ERRORS = {
    "400": "The body cannot be decoded",
    "406": "No serializer can write what Accept asks for",
    "413": "The body is over the size limit",
    "415": "No serializer reads this Content-Type",
    "422": "The input does not fit the model's signature",
    "500": "The model failed",
    "503": "Overloaded or not ready; see Retry-After",
    "504": "The deadline passed",
}
_V2_ERRORS = {
    "400": "Bad request: undecodable, or not fitting the model",
    "404": "No such model or version",
    "413": "The body is over the size limit",
    "500": "The model failed",
    "503": "Overloaded or not ready",
    "504": "The deadline passed",
}

_V2_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


def _scalar_schema(dtype: str) -> dict[str, Any]:
    if dtype in ("str", "bytes"):
        return {"type": "string"}
    if dtype == "bool":
        return {"type": "boolean"}
    if dtype.startswith("float"):
        return {"type": "number"}
    if dtype.startswith(("int", "uint")):
        return {"type": "integer"}
    return {}  # object: any JSON value


def _tensor_schema(spec: TensorSpec) -> dict[str, Any]:
    """The JSON schema of one value of *spec*: nested arrays, one level per dimension."""
    schema = _scalar_schema(spec.dtype)
    if spec.shape is None:
        return schema
    for size in reversed(spec.shape):
        schema = {"type": "array", "items": schema}
        if size >= 0:
            schema["minItems"] = schema["maxItems"] = size
    return schema


def _values_schema(specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
    if not specs:
        return {}
    if len(specs) == 1:
        return _tensor_schema(specs[0])
    return {
        "type": "object",
        "properties": {spec.name: _tensor_schema(spec) for spec in specs},
        "required": [spec.name for spec in specs if not getattr(spec, "optional", False)],
    }


def _errors(statuses: dict[str, str], schema: str) -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {_JSON: {"schema": {"$ref": _REF + schema}}},
        }
        for status, description in statuses.items()
    }


def _predict_operation(service: Service) -> dict[str, Any]:
    signature: Signature | None = service.signature
    media_types = [s.media_type for s in service.negotiator.serializers]
    request = _values_schema(signature.inputs) if signature is not None else {}
    answer = _values_schema(signature.outputs) if signature is not None else {}
    return {
        "post": {
            "operationId": f"predict_{service.name}",
            "summary": f"Predict with model {service.name!r} (version {service.version})",
            "description": (
                "The body is one input in the format its Content-Type names; the answer "
                "is written in the format Accept prefers. The JSON schemas describe "
                "the JSON form."
            ),
            "parameters": [
                {
                    "name": "X-Request-Timeout",
                    "in": "header",
                    "required": False,
                    "description": "Seconds the request may take; shortens the service's timeout",
                    "schema": {"type": "number", "exclusiveMinimum": 0},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": request if media == _JSON else {}} for media in media_types
                },
            },
            "responses": {
                "200": {
                    "description": "The prediction",
                    "content": {
                        media: {"schema": answer if media == _JSON else {}}
                        for media in media_types
                    },
                },
                **_errors(_PREDICT_ERRORS, "Error"),
            },
        }
    }


def _model_name_parameter(names: list[str]) -> dict[str, Any]:
    return {"name": "model_name", "in": "path", "required": True, "schema": {"enum": names}}


def _version_parameter() -> dict[str, Any]:
    return {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}


def _health(summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {"200": {"description": "Yes"}, "400": {"description": "No"}},
        }
    }


def _v2_paths(names: list[str]) -> dict[str, Any]:
    model = [_model_name_parameter(names)]
    versioned = [*model, _version_parameter()]
    paths: dict[str, Any] = {
        "/v2/health/live": _health("Whether the server is live"),
        "/v2/health/ready": _health("Whether every model is ready"),
        "/v2": {
            "get": {
                "summary": "Server metadata",
                "responses": {"200": _json_response("Server metadata", "ServerMetadata")},
            }
        },
    }
    for prefix, parameters in (
        ("/v2/models/{model_name}", model),
        ("/v2/models/{model_name}/versions/{model_version}", versioned),
    ):
        paths[prefix] = {
            "parameters": parameters,
            "get": {
                "summary": "Model metadata",
                "responses": {
                    "200": _json_response("Model metadata", "ModelMetadata"),
                    **_errors({"404": "No such model or version"}, "V2Error"),
                },
            },
        }
        ready = _health("Whether the model is ready")
        ready["get"]["responses"].update(_errors({"404": "No such model or version"}, "V2Error"))
        paths[prefix + "/ready"] = {"parameters": parameters, **ready}
        paths[prefix + "/infer"] = {
            "parameters": parameters,
            "post": {
                "summary": "Inference (JSON tensors, or the binary tensor extension)",
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {"schema": {"$ref": _REF + "InferRequest"}},
                        "application/octet-stream": {"schema": {}},
                    },
                },
                "responses": {
                    "200": _json_response("The outputs", "InferResponse"),
                    **_errors(_V2_ERRORS, "V2Error"),
                },
            },
        }
    return paths


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"$ref": _REF + schema}}}}


def _components() -> dict[str, Any]:
    tensor_metadata: dict[str, Any] = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"enum": _V2_DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    }
    tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            **tensor_metadata["properties"],
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    }
    return {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "examples": ["validation_error"]},
                            "message": {"type": "string"},
                        },
                    }
                },
            },
            "V2Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "ServerMetadata": {
                "type": "object",
                "required": ["name", "version", "extensions"],
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}},
                },
            },
            "TensorMetadata": tensor_metadata,
            "ModelMetadata": {
                "type": "object",
                "required": ["name", "platform", "inputs", "outputs"],
                "properties": {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": {"$ref": _REF + "TensorMetadata"}},
                    "outputs": {"type": "array", "items": {"$ref": _REF + "TensorMetadata"}},
                },
            },
            "Tensor": tensor,
            "InferRequest": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": {"$ref": _REF + "Tensor"}},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "parameters": {"type": "object"},
                            },
                        },
                    },
                },
            },
            "InferResponse": {
                "type": "object",
                "required": ["model_name", "outputs"],
                "properties": {
                    "model_name": {"type": "string"},
                    "model_version": {"type": "string"},
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "outputs": {"type": "array", "items": {"$ref": _REF + "Tensor"}},
                },
            },
        }
    }


def document(services: Iterable[Service], *, title: str = "modeldeploy") -> dict[str, Any]:
    """
    Return the OpenAPI 3.1 document of the routes an HTTPApp serves for *services*.

    ``/predict`` is described when there is one service (as the app routes it),
    ``/models/{name}/predict`` for each; a model with a signature gets the JSON
    schema of its input and output (read after ``start()`` for predictors that
    learn their signature on load).

    Args:
        services: The services, as the HTTPApp holds them.
        title: The document's ``info.title``.

    .. versionadded:: 0.1.0
    """
    services = list(services)
    paths: dict[str, Any] = {}
    if len(services) == 1:
        paths["/predict"] = _predict_operation(services[0])
    for service in services:
        operation = _predict_operation(service)
        operation["post"]["operationId"] = f"predict_model_{service.name}"
        paths[f"/models/{service.name}/predict"] = operation
    paths.update(_v2_paths([s.name for s in services]))
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics (OpenMetrics when Accept asks for it)",
            "responses": {
                "200": {
                    "description": "The exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {_JSON: {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "Models: "
            + ", ".join(f"{s.name} (version {s.version})" for s in services),
        },
        "paths": paths,
        "components": _components(),
    }
