"""modeldeploy.adapters.asgi: the end-to-end suite under uvicorn, and the ASGI protocol."""

from __future__ import annotations

import pytest

from .e2e import E2E


@pytest.mark.integration
class TestUvicorn(E2E):
    server_kind = "uvicorn"
