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
from .negotiation import Negotiator

__all__ = [
    "DeadlineExceededError",
    "DecodeError",
    "EncodeError",
    "IntegrityError",
    "ModelDeployError",
    "ModelLoadError",
    "ModelNotFoundError",
    "Monitor",
    "Negotiator",
    "NotAcceptableError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PredictionError",
    "Predictor",
    "Request",
    "RequestError",
    "Response",
    "Serializer",
    "ServiceError",
    "Signature",
    "TensorSpec",
    "UnsupportedMediaTypeError",
    "UntrustedPayloadError",
    "ValidationError",
    "VersionNotFoundError",
    "__version__",
]
