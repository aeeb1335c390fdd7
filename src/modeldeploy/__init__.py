"""
modeldeploy: turn a trained model into a fast, safe, observable service.

Importing modeldeploy configures nothing: no logging setup, no global metric,
no optional dependency imported.
"""

from __future__ import annotations

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
    RequestError,
    ServiceError,
    UnsupportedMediaTypeError,
    UntrustedPayloadError,
    ValidationError,
    VersionNotFoundError,
)
from .interfaces import Monitor, Predictor, Serializer
from .messages import Request, Response, Signature, TensorSpec
from .monitors import CompositeMonitor, LogMonitor, MonitorFailed, PrometheusMonitor
from .negotiation import Negotiator
from .predictors import predictor, signature_from_sklearn
from .service import Service, State

if TYPE_CHECKING:
    from .serializers import JSON, XML, MsgPack, Pickle, Protobuf

__all__ = [
    "JSON",
    "XML",
    "CompositeMonitor",
    "DeadlineExceededError",
    "DecodeError",
    "EncodeError",
    "IntegrityError",
    "LogMonitor",
    "ModelDeployError",
    "ModelLoadError",
    "ModelNotFoundError",
    "Monitor",
    "MonitorFailed",
    "MsgPack",
    "Negotiator",
    "NotAcceptableError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "Pickle",
    "PredictionError",
    "Predictor",
    "PrometheusMonitor",
    "Protobuf",
    "Request",
    "RequestError",
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
    "VersionNotFoundError",
    "__version__",
    "predictor",
    "signature_from_sklearn",
]

_SERIALIZERS = frozenset({"JSON", "MsgPack", "Pickle", "Protobuf", "XML"})


def __getattr__(name: str) -> Any:
    # backends import their own dependency (orjson, defusedxml, google.protobuf):
    # load one only when asked for, so `import modeldeploy` stays light
    if name in _SERIALIZERS:
        from . import serializers

        return getattr(serializers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
