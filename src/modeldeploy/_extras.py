"""
Optional dependencies: which extra installs which module, and the error that says so.

The core imports none of them. A module or function that needs one imports it
through :func:`needs` (or :func:`import_extra`), so that a missing one raises a
``ModuleNotFoundError`` naming the package to install, not a bare "No module
named 'defusedxml'":

.. code-block:: python

    with needs("modeldeploy.serializers.xml"):
        from defusedxml.ElementTree import DefusedXMLParser

The error stays a ``ModuleNotFoundError`` with the missing module's ``name``, so
code that catches ``ImportError`` keeps working.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType, ModuleType
from typing import Final

__all__ = ["INSTALL", "import_extra", "install_hint", "needs"]

INSTALL: Final[Mapping[str, str]] = MappingProxyType(
    {
        # top-level module -> what to pip install (pyproject.toml's extras)
        "numpy": "'modeldeploy[numpy]'",
        "defusedxml": "'modeldeploy[xml]'",
        "grpc": "'modeldeploy[grpc]'",
        "flask": "'modeldeploy[flask]'",
        "uvicorn": "'modeldeploy[asgi]'",
        "orjson": "'modeldeploy[fast]'",
        "onnxruntime": "'modeldeploy[onnx]'",
        "torch": "'modeldeploy[torch]'",
        "lightgbm": "'modeldeploy[lightgbm]'",
        "httpx": "'modeldeploy[testing]'",
        "hypothesis": "'modeldeploy[testing]'",
        "opentelemetry": "'modeldeploy[otel]'",
        "gunicorn": "gunicorn",
        "pandas": "pandas",
    }
)


def install_hint(exc: ModuleNotFoundError, what: str) -> ModuleNotFoundError | None:
    """The error naming what to install for *exc*, or None when it is not an extra's module."""
    top = (exc.name or "").partition(".")[0]
    install = INSTALL.get(top)
    if install is None:
        return None
    return ModuleNotFoundError(f"{what} needs {top}: pip install {install}", name=exc.name)


@contextlib.contextmanager
def needs(what: str) -> Iterator[None]:
    """Turn a missing extra's ModuleNotFoundError, raised inside, into one naming the extra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        hint = install_hint(exc, what)
        if hint is None:
            raise
        raise hint from exc


def import_extra(module: str, what: str) -> ModuleType:
    """Import *module*, an extra's; *what* needs it (for the error message)."""
    with needs(what):
        return importlib.import_module(module)
