"""The ASGI adapter mounted under a prefix of a Starlette (or FastAPI) app, as documented."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import modeldeploy as md
from modeldeploy.adapters import asgi


def host_page(request: object) -> PlainTextResponse:
    return PlainTextResponse("the host app")


@pytest.fixture
def service() -> md.Service:
    with md.Service(lambda x: x * 2, name="double", workers=0) as service:
        yield service


async def call(app: object, method: str, path: str, body: bytes = b"") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )


@pytest.mark.parametrize("prefix", ["/ml", "/api/v1/models"])
def test_every_route_answers_under_the_mount(service: md.Service, prefix: str) -> None:
    import asyncio

    host = Starlette(routes=[Route("/", host_page), Mount(prefix, app=asgi(service))])

    async def run() -> list[httpx.Response]:
        return [
            await call(host, "POST", f"{prefix}/predict", b"[1, 2]"),
            await call(host, "GET", f"{prefix}/v2/health/ready"),
            await call(host, "GET", f"{prefix}/v2/models/double"),
            await call(host, "GET", f"{prefix}/metrics"),
            await call(host, "GET", "/"),
            await call(host, "GET", f"{prefix}/nope"),
        ]

    predict, ready, metadata, metrics, page, missing = asyncio.run(run())
    assert (predict.status_code, predict.json()) == (200, [1, 2, 1, 2])
    assert ready.status_code == 200
    assert json.loads(metadata.content)["name"] == "double"
    assert metrics.status_code == 200
    assert page.text == "the host app"
    assert missing.status_code == 404
