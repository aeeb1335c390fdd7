"""The error hierarchy: codes, statuses, messages and chaining are data, and stable."""

from __future__ import annotations

import inspect

import pytest

import modeldeploy
from modeldeploy import errors

ALL = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.ModelDeployError)
]
GRPC_CODES = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
}  # fmt: skip

REQUIRED = [
    "DecodeError", "EncodeError", "UnsupportedMediaTypeError", "NotAcceptableError",
    "PayloadTooLargeError", "ValidationError", "ModelNotFoundError", "VersionNotFoundError",
    "ModelLoadError", "PredictionError", "OverloadedError", "DeadlineExceededError",
    "NotReadyError", "IntegrityError", "UntrustedPayloadError", "RequestCancelledError",
]  # fmt: skip


@pytest.mark.parametrize("name", REQUIRED)
def test_required_errors_exist_and_are_exported(name):
    cls = getattr(errors, name)
    assert issubclass(cls, errors.ModelDeployError)
    assert getattr(modeldeploy, name) is cls


def test_codes_are_unique_among_leaves():
    leaves = [c for c in ALL if not any(o is not c and issubclass(o, c) for o in ALL)]
    codes = [c.code for c in leaves]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_statuses_are_consistent(cls):
    assert cls.grpc_status in GRPC_CODES
    assert 400 <= cls.http_status < 600
    if issubclass(cls, errors.RequestError):
        assert 400 <= cls.http_status < 500
    if issubclass(cls, errors.ServiceError):
        assert 500 <= cls.http_status < 600
    assert cls.code.isidentifier() and cls.code.islower()


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_default_message_and_dict(cls):
    error = cls()
    assert error.message == cls.default_message
    assert str(error) == error.message
    assert error.to_dict() == {"code": cls.code, "message": cls.default_message}


def _decode(text):
    try:
        int(text)
    except ValueError as exc:
        raise errors.DecodeError("body is not valid") from exc


def test_cause_is_chained_and_not_in_the_message():
    with pytest.raises(errors.DecodeError) as info:
        _decode("secret-value")
    assert isinstance(info.value.__cause__, ValueError)
    assert "secret" not in info.value.message
    assert "secret" not in str(info.value.to_dict())


def test_overloaded_carries_retry_after_as_whole_seconds():
    assert errors.OverloadedError(retry_after=2.4).headers() == {"Retry-After": "2"}
    assert errors.OverloadedError(retry_after=0.01).headers() == {"Retry-After": "1"}
    assert errors.OverloadedError(retry_after=0.01).retry_after == 0.01
    assert errors.NotReadyError().headers() == {}


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (errors.DeadlineExceededError, TimeoutError),
        (errors.DecodeError, ValueError),
        (errors.ValidationError, ValueError),
        (errors.ModelNotFoundError, LookupError),
    ],
)
def test_stdlib_bases_help_generic_callers(cls, base):
    assert issubclass(cls, base)
