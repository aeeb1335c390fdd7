"""
modeldeploy: turn a trained model into a fast, safe, observable service.

Importing modeldeploy configures nothing: no logging setup, no global metric,
no optional dependency imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    DeadlineExceededError,
    DecodeError,
    EncodeError,
    IntegrityError,
    ModelDeployError,
    ModelLoadError,
    ModelNotFoundError,
    NotAcceptableError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    PredictionError,
    RequestCancelledError,
    RequestError,
    RequestTimeoutError,
    ServiceError,
    UnsupportedMediaTypeError,
    UntrustedPayloadError,
    ValidationError,
    VersionExistsError,
    VersionNotFoundError,
)
from .interfaces import Monitor, Predictor, RequestRecorder, Serializer
from .messages import Request, Response, Signature, TensorSpec
from .monitors import (
    CompositeMonitor,
    DriftMonitor,
    LogMonitor,
    MonitorFailed,
    OpenTelemetryMonitor,
    PrometheusMonitor,
    reference_statistics,
)
from .negotiation import Negotiator
from .predictors import predictor, signature_from_sklearn
from .service import MAX_QUEUE, Service, State

if TYPE_CHECKING:
    from .adapters.asgi import asgi
    from .adapters.decorator import handler
    from .adapters.wsgi import wsgi
    from .http import HTTPApp
    from .serializers import JSON, XML, MsgPack, Pickle, Protobuf
    from .store import ModelStore

__all__ = [
    "JSON",
    "MAX_QUEUE",
    "XML",
    "CompositeMonitor",
    "DeadlineExceededError",
    "DecodeError",
    "DriftMonitor",
    "EncodeError",
    "HTTPApp",
    "IntegrityError",
    "LogMonitor",
    "ModelDeployError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelStore",
    "Monitor",
    "MonitorFailed",
    "MsgPack",
    "Negotiator",
    "NotAcceptableError",
    "NotReadyError",
    "OpenTelemetryMonitor",
    "OverloadedError",
    "PayloadTooLargeError",
    "Pickle",
    "PredictionError",
    "Predictor",
    "PrometheusMonitor",
    "Protobuf",
    "Request",
    "RequestCancelledError",
    "RequestError",
    "RequestRecorder",
    "RequestTimeoutError",
    "Response",
    "Serializer",
    "Service",
    "ServiceError",
    "Signature",
    "State",
    "TensorSpec",
    "UnsupportedMediaTypeError",
    "UntrustedPayloadError",
    "ValidationError",
    "VersionExistsError",
    "VersionNotFoundError",
    "__version__",
    "asgi",
    "handler",
    "predictor",
    "reference_statistics",
    "signature_from_sklearn",
    "wsgi",
]

# name -> module; each imports an optional dependency (orjson, defusedxml,
# google.protobuf, numpy), so it is loaded only when first asked for and
# `import modeldeploy` stays light
_LAZY = {
    "JSON": "modeldeploy.serializers",
    "MsgPack": "modeldeploy.serializers",
    "Pickle": "modeldeploy.serializers",
    "Protobuf": "modeldeploy.serializers",
    "XML": "modeldeploy.serializers",
    "HTTPApp": "modeldeploy.http",
    "ModelStore": "modeldeploy.store",
    "asgi": "modeldeploy.adapters.asgi",
    "wsgi": "modeldeploy.adapters.wsgi",
    "handler": "modeldeploy.adapters.decorator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
