"""modeldeploy.adapters.wsgi: the end-to-end suite under gunicorn, and PEP 3333."""

from __future__ import annotations

import pytest

from .e2e import E2E


@pytest.mark.integration
class TestGunicornSync(E2E):
    server_kind = "gunicorn-sync"


@pytest.mark.integration
class TestGunicornGthread(E2E):
    server_kind = "gunicorn-gthread"
