"""
modeldeploy: turn a trained model into a fast, safe, observable service.

Importing modeldeploy configures nothing: no logging setup, no global metric,
no optional dependency imported.
"""

from __future__ import annotations

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

__all__ = [
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
    "Negotiator",
    "NotAcceptableError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PredictionError",
    "Predictor",
    "PrometheusMonitor",
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
