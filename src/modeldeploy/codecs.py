"""
Protocol codecs: how one protocol's request becomes the model's input, and back.

Every request, whatever its protocol, takes the one path of
:meth:`Service.handle <modeldeploy.Service.handle>`: size limit, readiness,
deadline, request id, monitors, admission, the model, error mapping. The only
part that differs between ``POST /predict``, V2 REST and V2 gRPC is the codec
the route hands to ``handle``:

* :class:`PredictCodec`: the serializers, chosen by ``Content-Type`` and
  ``Accept`` (``/predict``, the default);
* :class:`modeldeploy.v2.RestCodec`: V2 JSON and binary tensors;
* :class:`modeldeploy.v2.GrpcCodec`: the V2 ``ModelInferRequest`` message.

A codec keeps no per-request state: what :meth:`Codec.decode` learns that
encoding needs (the negotiated serializer, the V2 outputs asked for) travels in
the *reply* value it returns beside the input.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from .errors import ModelDeployError
from .interfaces import Serializer
from .messages import Request, Response, make_response
from .negotiation import Negotiator

if TYPE_CHECKING:
    from ._workers import Deployment

__all__ = ["VERSION_HEADER", "Codec", "PredictCodec", "error_response"]

VERSION_HEADER: Final = "x-model-version"
"""
The response header naming the model version that computed the answer.

.. versionadded:: 0.1.0
"""

_CODECS_CACHED: Final = 256  # distinct (Content-Type, Accept) pairs remembered
_JSON: Final = "application/json"


@runtime_checkable
class Codec(Protocol):
    """
    **Protocol:** one request protocol's decoding, encoding and error bodies.

    .. versionadded:: 0.1.0
    """

    def decode(self, request: Request, deployment: Deployment, /) -> tuple[Any, Any]:
        """
        Return the model's input for *request*, validated, and the reply state.

        Raises only :class:`~modeldeploy.errors.ModelDeployError`.
        """

    def encode(
        self, reply: Any, value: Any, request_id: str, deployment: Deployment, /
    ) -> Response:
        """Return the response carrying the model's output *value*."""

    def error(self, error: ModelDeployError, request_id: str, /) -> Response:
        """Return the response carrying *error*; never raises."""


def error_response(error: ModelDeployError, request_id: str | None = None) -> Response:
    """
    The plain error response: ``{"error": {"code", "message"}}`` with the error's status.

    Errors are always JSON: the client may not read what it asked for (that
    may be the very error), and every HTTP client reads JSON.

    .. versionadded:: 0.1.0
    """
    body = json.dumps({"error": error.to_dict()}, separators=(",", ":")).encode()
    headers = {"content-type": _JSON}
    if request_id is not None:
        headers["x-request-id"] = request_id
    headers.update(error.headers())
    return Response(error.http_status, headers, body)


class PredictCodec:
    """
    The ``/predict`` codec: serializers picked by ``Content-Type`` and ``Accept``.

    The pair of serializers for a pair of header values is negotiated once and
    cached (256 pairs at most: headers are client data), so a request costs a
    dict lookup, the decoder, the validator and the encoder.

    Args:
        serializers: The formats, in preference order.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_codecs", "negotiator")

    def __init__(self, serializers: Sequence[Serializer]) -> None:
        self.negotiator = Negotiator(serializers)
        self._codecs: dict[tuple[str, str], tuple[Serializer, Serializer]] = {}

    def decode(self, request: Request, deployment: Deployment, /) -> tuple[Any, Serializer]:
        """Decode with the serializer of ``Content-Type``; the reply is the encoder."""
        codecs = self._codecs.get((request.content_type, request.accept))
        if codecs is None:
            codecs = self._negotiate(request.content_type, request.accept)
        decoder, encoder = codecs
        x = decoder.loads(request.body)
        validate = deployment.validate
        return (x if validate is None else validate(x)), encoder

    def encode(
        self, reply: Serializer, value: Any, request_id: str, deployment: Deployment, /
    ) -> Response:
        """Encode *value* with the negotiated serializer."""
        headers = {
            "content-type": reply.media_type,
            "x-request-id": request_id,
            VERSION_HEADER: deployment.version,
        }
        return make_response(200, headers, reply.dumps(value))

    def error(self, error: ModelDeployError, request_id: str, /) -> Response:
        """The plain JSON error body."""
        return error_response(error, request_id)

    def _negotiate(self, content_type: str, accept: str) -> tuple[Serializer, Serializer]:
        """The decoder and encoder for a pair of headers; raise 415 or 406 before any work."""
        decoder = self.negotiator.decoder(content_type)
        codecs = decoder, self.negotiator.encoder(accept, decoder)
        if len(self._codecs) < _CODECS_CACHED:
            self._codecs[content_type, accept] = codecs
        return codecs
