"""
The admin routes, off by default: roll a running model's versions over HTTP.

Enabled by ``HTTPApp(..., admin_token=...)`` (``modeldeploy serve --admin`` with
``MODELDEPLOY_ADMIN_TOKEN`` set). Every admin request must carry
``Authorization: Bearer <token>``; the token is compared in constant time.

========  =====================================  ========================================
method    path                                   does
========  =====================================  ========================================
GET       ``/admin/models/{name}``               ``Service.model_info()``
POST      ``/admin/models/{name}/deploy``        deploy ``{"version": "v3"}`` from the store
POST      ``/admin/models/{name}/rollback``      ``Service.rollback()``
POST      ``/admin/models/{name}/promote``       ``Service.promote()``
POST      ``/admin/models/{name}/end-canary``    ``Service.end_canary()``
========  =====================================  ========================================

The risk: whoever holds the token decides which model answers your users. Serve
the admin routes only behind TLS and a network boundary you trust, keep the token
out of logs, and prefer moving a store alias (which every worker process follows)
to this route: with several worker processes, an admin request reaches the one
process that happens to receive it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from .errors import (
    DecodeError,
    ModelDeployError,
    ModelNotFoundError,
    NotReadyError,
    RequestError,
)
from .messages import Response

if TYPE_CHECKING:
    from .service import Service
    from .store import ModelStore

__all__ = ["ADMIN_PREFIX", "Admin"]

ADMIN_PREFIX: Final = "/admin/models/"
"""Where the admin routes live."""

_JSON: Final = {"content-type": "application/json"}
_MAX_BODY: Final = 4096


class _UnauthorizedError(RequestError):
    code, http_status, grpc_status = "unauthorized", 401, "UNAUTHENTICATED"


class _NoStoreError(RequestError):
    code, http_status = "no_store", 409


def _answer(status: int, body: Any) -> Response:
    return Response(status, dict(_JSON), json.dumps(body, separators=(",", ":")).encode())


class Admin:
    """
    Answers the admin routes of an :class:`~modeldeploy.http.HTTPApp`.

    Args:
        services: Service name to service.
        token: The bearer token every admin request must carry; not empty.
        stores: Model name to the :class:`~modeldeploy.ModelStore` its
            versions are deployed from (``deploy`` answers 409 without one).

    Raises:
        ValueError: An empty token.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        services: Mapping[str, Service],
        token: str,
        stores: Mapping[str, ModelStore] | None = None,
    ) -> None:
        if not token:
            raise ValueError("the admin token is empty")
        self.services = services
        self._token = f"Bearer {token}".encode()
        self.stores = dict(stores or {})

    def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | memoryview
    ) -> Response:
        """Answer one admin request; errors are ``{"error": {"code", "message"}}``."""
        from .codecs import error_response

        try:
            return self._answer(method, path, headers, body)
        except ModelDeployError as exc:
            return error_response(exc)
        except ValueError as exc:  # a version already loaded, a weight out of range
            return error_response(RequestError(str(exc)))

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | memoryview
    ) -> Response:
        given = headers.get("authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._token):
            raise _UnauthorizedError("admin routes need the admin bearer token")
        name, _, action = path[len(ADMIN_PREFIX) :].partition("/")
        service = self.services.get(name)
        if service is None:
            raise ModelNotFoundError(f"no model named {name!r}")
        if action == "" and method in ("GET", "HEAD"):
            return _answer(200, service.model_info())
        if method != "POST" or action not in ("deploy", "rollback", "promote", "end-canary"):
            return _answer(404, {"error": {"code": "not_found", "message": "not found"}})
        if action == "rollback":
            service.rollback()
        elif action == "promote":
            service.promote()
        elif action == "end-canary":
            service.end_canary()
        else:
            self._deploy(service, body)
        return _answer(200, service.model_info())

    def _deploy(self, service: Service, body: bytes | memoryview) -> None:
        store = self.stores.get(service.name)
        if store is None:
            raise _NoStoreError(f"model {service.name!r} was not served from a model store")
        if len(body) > _MAX_BODY:
            raise RequestError("the deploy request is too large")
        try:
            request = json.loads(bytes(body))
            version = request["version"]
        except (ValueError, TypeError, KeyError) as exc:
            raise DecodeError('the body must be {"version": "..."}') from exc
        if not isinstance(version, str):
            raise DecodeError('"version" must be a string')
        if not service.ready():
            raise NotReadyError(f"model {service.name!r} is {service.state.value}")
        resolved = store.resolve(service.name, version)
        service.deploy(store.load(service.name, resolved), version=resolved)
