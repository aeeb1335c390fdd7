"""
Adapters: thin translators between a server or framework and the HTTP core.

One module each. :func:`asgi` and :func:`wsgi` use only the standard library and
are importable here; the Flask, gRPC and decorator adapters import their
framework, so import them by their own module (``modeldeploy.adapters.flask``).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from .asgi import asgi
from .wsgi import wsgi

__all__ = ["asgi", "wsgi"]
