"""
The limit: a hand-written ASGI app with no framework, ``uvicorn raw_asgi:app``.

Read the body, ``orjson.loads`` (the engine modeldeploy's JSON serializer uses),
predict on the event loop's thread, ``orjson.dumps`` the float32 output straight
from NumPy, send. No routing, no content negotiation, no validation, no error
handling, no metrics, no batching: the least work that answers the request.

``BENCH_ECHO=1`` answers the input itself, without the model: what the transport
(uvicorn, the ASGI calls, orjson both ways) costs a request of this size.
"""

from __future__ import annotations

import os

import numpy as np
import orjson
from models import from_env

model = from_env()
if os.environ.get("BENCH_ECHO") == "1":
    model = lambda x: x  # noqa: E731 - the transport alone
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    message = await receive()
    body = message["body"]
    while message.get("more_body"):
        message = await receive()
        body += message["body"]
    x = np.asarray(orjson.loads(body), dtype=np.float32)
    out = orjson.dumps(model(x), option=orjson.OPT_SERIALIZE_NUMPY)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_HEADERS, (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})
