"""
pytest fixtures for testing an application that serves models with modeldeploy.

Installing modeldeploy registers this module as a pytest plugin (the ``pytest11``
entry point ``modeldeploy``): the fixtures are there in every test, with no
import. Disable it with ``-p no:modeldeploy``.

* ``modeldeploy_service``: make a started :class:`~modeldeploy.Service`,
  closed after the test.
* ``modeldeploy_client``: make an in-process HTTP client
  (:func:`modeldeploy.testing.client`), started and closed around the test.
* ``recording_monitor``: a fresh :class:`~modeldeploy.testing.RecordingMonitor`.
* ``metrics_registry``: a fresh ``prometheus_client.CollectorRegistry``, so a
  test's metrics start at zero and never meet another test's.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

# pytest imports this module in every run where modeldeploy is installed: the
# helpers (and httpx, through client) are imported when a fixture is used
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..service import Service
    from . import RecordingMonitor
    from ._client import Client

__all__ = ["metrics_registry", "modeldeploy_client", "modeldeploy_service", "recording_monitor"]


@pytest.fixture
def modeldeploy_service() -> Iterator[Callable[..., Service]]:
    """
    Make started services: ``modeldeploy_service(model, **options)``; each is closed after.

    Takes the arguments of :class:`~modeldeploy.Service`; a model that fails
    to load fails the test at that call.
    """
    from ..service import Service

    made: list[Service] = []

    def make(model: Any, **options: Any) -> Service:
        service = Service(model, **options)
        made.append(service)
        service.start()
        return service

    yield make
    for service in reversed(made):
        service.close()


@pytest.fixture
def modeldeploy_client() -> Iterator[Callable[..., Client]]:
    """
    Make in-process clients: ``modeldeploy_client(target, interface="asgi")``.

    Takes the arguments of :func:`modeldeploy.testing.client`; each client is
    entered (its services started) and closed after the test.
    """
    from . import client

    made: list[Client] = []

    def make(target: Any, **options: Any) -> Client:
        http = client(target, **options)
        http.__enter__()
        made.append(http)
        return http

    yield make
    for http in reversed(made):
        http.__exit__(None, None, None)


@pytest.fixture
def recording_monitor() -> RecordingMonitor:
    """A fresh :class:`~modeldeploy.testing.RecordingMonitor`."""
    from . import RecordingMonitor

    return RecordingMonitor()


@pytest.fixture
def metrics_registry() -> CollectorRegistry:
    """A fresh, empty ``prometheus_client.CollectorRegistry``."""
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()
