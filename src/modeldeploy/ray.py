"""
Ray Serve: the same Service on a Ray cluster, behind Ray's HTTP proxy.

.. code-block:: python

    # myapp_ray.py
    import modeldeploy.ray

    app = modeldeploy.ray.app("myapp:service", num_replicas=2)

.. code-block:: console

    $ serve run myapp_ray:app                            # or, with no module of your own:
    $ serve run modeldeploy.ray:build spec=myapp:service num_replicas=2

Each replica imports the Service definition itself (``SPEC``, read as
``modeldeploy serve`` reads it, or a factory function) and answers through
:meth:`HTTPApp.acall <modeldeploy.http.HTTPApp.acall>`: ``/predict``, the V2 REST
routes and ``/metrics`` behave as under ``modeldeploy serve``, with the same
predictor, serializers, monitors, errors, limits and batching. Batching is
modeldeploy's, inside each replica; Ray's ``@serve.batch`` is not used (it would
batch at the same place, a replica, without the item isolation, deadlines and
monitors the Service gives). ``max_ongoing_requests`` bounds how many requests a
replica holds at once, so it bounds the batches too: keep it at least
``max_batch_size``.

Metrics: each replica copies its ``modeldeploy_*`` metrics into Ray's metrics
(``export_metrics``), so Ray's per-node metrics export, which Prometheus scrapes,
carries every replica's counts beside Ray Serve's own.

Ray is imported only here: ``pip install 'modeldeploy[ray]'``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from .errors import ModelDeployError, ModelLoadError, PayloadTooLargeError
from .http import HTTPApp

if TYPE_CHECKING:
    from ray.serve import Application
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["DEPLOYMENT_NAME", "app", "build"]

logger = logging.getLogger("modeldeploy")

DEPLOYMENT_NAME: Final = "modeldeploy"
"""
The name of the Ray Serve deployment :func:`app` builds, as a Serve config's
``deployments`` list names it.

.. versionadded:: 0.1.0
"""

_CLOSE_TIMEOUT: Final = 30.0  # seconds a stopping replica gives accepted requests
_METRICS_PERIOD: Final = 5.0  # seconds between copies of a replica's metrics into Ray's

Target = str | Callable[[], object]
"""What a replica serves: a ``SPEC`` string or a function returning a Service."""


def _ray_serve() -> Any:
    try:
        return importlib.import_module("ray.serve")
    except ImportError as exc:
        raise ImportError(
            "modeldeploy.ray needs Ray Serve: pip install 'modeldeploy[ray]'"
        ) from exc


def _http_app(target: Target) -> HTTPApp:
    """Build, in the replica, what it serves; the same rules as ``modeldeploy serve``."""
    from .cli.serve import as_app, resolve

    if isinstance(target, str):
        return resolve(target)
    return as_app(target(), getattr(target, "__qualname__", repr(target)))


class _MetricsBridge:
    """
    Copies the replica's ``modeldeploy_*`` metrics into Ray's metrics, every few seconds.

    The monitors of a replica write to prometheus_client's default registry, in the
    replica's process; Ray's metrics agent exports, for each node, what every Ray
    process records through :mod:`ray.util.metrics`. Each sample becomes a Ray gauge
    of the same name (exported with Ray's ``ray_`` prefix) and labels, plus
    ``replica``: Prometheus gets every replica's counts from the agents it already
    scrapes.
    """

    def __init__(self, replica: str) -> None:
        self._replica = replica
        self._gauges: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="modeldeploy-ray-metrics", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_METRICS_PERIOD):
            self._copy_logged()

    def _copy_logged(self) -> None:
        try:
            self.copy()
        except Exception:  # a metrics failure never stops a replica
            logger.exception("copying metrics into Ray's failed")

    def copy(self) -> None:
        """Set one Ray gauge per ``modeldeploy_*`` sample of the default registry."""
        from prometheus_client import REGISTRY
        from ray.util.metrics import Gauge

        for family in REGISTRY.collect():
            if not family.name.startswith("modeldeploy"):
                continue
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # a timestamp, not a count
                gauge = self._gauges.get(sample.name)
                if gauge is None:
                    keys = (*sorted(sample.labels), "replica")
                    gauge = Gauge(sample.name, family.documentation, tag_keys=keys)
                    self._gauges[sample.name] = gauge
                gauge.set(sample.value, tags={**sample.labels, "replica": self._replica})

    def stop(self) -> None:
        self._stop.set()


def _replica_id() -> str:
    """The replica's id, as Ray's own metrics label it; the process id outside Serve."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # not in a replica (a test calling Ingress directly)
        return str(os.getpid())


class Ingress:
    """
    A Ray Serve replica: one :class:`~modeldeploy.http.HTTPApp`, its services started.

    :func:`app` turns this class into the deployment; each replica is one
    instance, in its own Ray worker process.

    Args:
        target: A ``SPEC`` (``package.module:attribute``, as for
            ``modeldeploy serve``) or a function of no argument returning a
            Service, an HTTPApp, a Predictor or a callable.
        export_metrics: Copy the replica's ``modeldeploy_*`` metrics (the
            default Prometheus registry) into Ray's metrics every 5 s, so Ray's
            metrics export carries them, labelled by ``replica``.

    Raises:
        ModelLoadError: A service failed to start; Ray retries the replica.

    .. versionadded:: 0.1.0
    """

    def __init__(self, target: Target, export_metrics: bool = False) -> None:
        self.app = _http_app(target)
        failure = self.app.start_services()
        if failure is not None:
            raise ModelLoadError(f"a service failed to start: {failure}")
        self._metrics = _MetricsBridge(_replica_id()) if export_metrics else None

    async def __call__(self, request: Request) -> Response:
        """Answer one request from Ray's HTTP proxy (a Starlette request)."""
        from starlette.responses import Response

        scope = request.scope
        path: str = scope["path"]
        # under a route prefix, the routes are the app's own
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw
        }
        body = await self._body(request, path, headers)
        if isinstance(body, Response):
            return body
        answer = await self.app.acall(
            request.method, path, headers, body, scope.get("query_string", b"").decode("latin-1")
        )
        return Response(
            b"" if request.method == "HEAD" else answer.body,
            status_code=answer.status,
            headers=dict(answer.headers),
        )

    async def _body(self, request: Request, path: str, headers: Mapping[str, str]) -> Any:
        """The request's body, or a 413 once it passes ``max_body_size``; nothing more is read."""
        limit = self.app.max_body_size
        length = headers.get("content-length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            return self._error(
                path, PayloadTooLargeError(f"body of {length} bytes is over the limit of {limit}")
            )
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return self._error(
                    path, PayloadTooLargeError(f"body is over the limit of {limit}")
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _error(self, path: str, error: ModelDeployError) -> Response:
        from starlette.responses import Response

        answer = self.app.error(path, error)
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    def check_health(self) -> None:
        """
        Ray's periodic health check: raise when a service has failed.

        Ray then replaces the replica. A service that is only not ready yet
        (still loading) is healthy.
        """
        for service in self.app.services.values():
            if not service.health():
                raise ModelLoadError(f"model {service.name!r} has failed")

    def __del__(self) -> None:
        # Ray's graceful stop of a replica: finish what was accepted, then release workers
        metrics: _MetricsBridge | None = self.__dict__.get("_metrics")
        if metrics is not None:
            metrics.stop()
        app: HTTPApp | None = self.__dict__.get("app")
        if app is not None:
            for service in app.services.values():
                service.close(timeout=_CLOSE_TIMEOUT)


def app(
    target: Target,
    *,
    name: str = DEPLOYMENT_NAME,
    num_replicas: int | str | None = None,
    autoscaling_config: Mapping[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    export_metrics: bool = True,
    **options: Any,
) -> Application:
    """
    Return a Ray Serve application serving *target*, for ``serve.run`` or ``serve run``.

    Args:
        target: A ``SPEC`` (``package.module:attribute``, read in each replica as
            ``modeldeploy serve`` reads it) or a function of no argument that
            returns a Service, an HTTPApp, a Predictor or a callable. Each
            replica builds its own: a started Service holds threads, which
            cannot travel between processes.
        name: The deployment's name.
        num_replicas: Replicas, or ``"auto"`` for Ray's autoscaling defaults;
            Ray's default (1) when ``None``.
        autoscaling_config: Ray's ``autoscaling_config`` (``min_replicas``,
            ``max_replicas``, ``target_ongoing_requests``...), passed through.
        max_ongoing_requests: Requests a replica holds at once, passed through;
            keep it at least the services' ``max_batch_size``.
        ray_actor_options: Resources of each replica (``num_cpus``,
            ``num_gpus``, ``runtime_env``...), passed through.
        export_metrics: Copy each replica's ``modeldeploy_*`` metrics into Ray's
            metrics export (as ``ray_modeldeploy_*`` gauges labelled by
            ``replica``), where Prometheus scrapes every node.
        **options: Any other option of ``ray.serve.deployment``, passed through.

    Raises:
        ImportError: Ray Serve is not installed (the ``ray`` extra).

    Example:
        ``serve.run(modeldeploy.ray.app("myapp:service", num_replicas=2))``

    .. versionadded:: 0.1.0
    """
    serve = _ray_serve()
    settings: dict[str, Any] = {"name": name, **options}
    for key, value in (
        ("num_replicas", num_replicas),
        ("autoscaling_config", autoscaling_config),
        ("max_ongoing_requests", max_ongoing_requests),
        ("ray_actor_options", ray_actor_options),
    ):
        if value is not None:
            settings[key] = dict(value) if isinstance(value, Mapping) else value
    deployment = serve.deployment(Ingress, **settings)
    application: Application = deployment.bind(target, export_metrics)
    return application


def build(args: Mapping[str, str]) -> Application:
    """
    The application builder for Ray's ``serve run`` and Serve config files.

    ``import_path: modeldeploy.ray:build`` with ``args: {spec: "myapp:service"}``
    serves ``myapp:service`` with no module of your own; replicas and
    autoscaling then come from the config's ``deployments`` entry named
    :data:`DEPLOYMENT_NAME`, or from ``args`` (``num_replicas``,
    ``max_ongoing_requests``).

    Args:
        args: ``spec`` (required), and optionally ``num_replicas`` and
            ``max_ongoing_requests``.

    Raises:
        ValueError: ``spec`` is missing, or an argument is unknown or not a number.

    .. versionadded:: 0.1.0
    """
    known = {"spec", "num_replicas", "max_ongoing_requests"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; modeldeploy.ray:build takes {known}")
    if "spec" not in args:
        raise ValueError("modeldeploy.ray:build needs spec=package.module:attribute")
    numbers: dict[str, Any] = {}
    for key in ("num_replicas", "max_ongoing_requests"):
        if key in args:
            value = str(args[key])
            if key == "num_replicas" and value == "auto":
                numbers[key] = value
            elif value.isdigit():
                numbers[key] = int(value)
            else:
                raise ValueError(f"{key} must be a number, got {value!r}")
    return app(str(args["spec"]), **numbers)
