"""
Follow a store alias in a running service: move the alias, and every process deploys.

``modeldeploy serve ROOT/name@production --workers 2`` runs one service per
process; each follows the alias on its own, so one ``modeldeploy models alias
ROOT name production v2`` reaches them all, with no signal and no coordinator.
Each process polls the alias file (a ``stat``, and a read when it changed),
loads and checks the new version beside the live one and switches with
:meth:`Service.deploy <modeldeploy.Service.deploy>`, or
:meth:`~modeldeploy.Service.rollback` when the alias goes back to the previous
version. A version that fails its checks or its load is logged and skipped: the
live version keeps serving.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..errors import ModelDeployError

if TYPE_CHECKING:
    from ..service import Service
    from ._store import ModelStore

__all__ = ["AliasFollower"]

logger = logging.getLogger("modeldeploy")


class AliasFollower:
    """
    A daemon thread that keeps a service on the version a store alias names.

    Args:
        store: The model store.
        name: The model's name in the store.
        alias: The alias to follow (``"production"``).
        service: The service to deploy to; the follower acts only while it is
            ready (it may be created before the service starts).
        interval: Seconds between two looks at the alias.
        trusted: Passed to :meth:`ModelStore.load` for pickled artifacts.

    Example:
        ``AliasFollower(store, "iris", "production", service).start()``; stop
        it with :meth:`stop`, or let it end with the process.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        store: ModelStore,
        name: str,
        alias: str,
        service: Service,
        *,
        interval: float = 2.0,
        trusted: bool = False,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.store = store
        self.name = name
        self.alias = alias
        self.service = service
        self.interval = interval
        self.trusted = trusted
        self._stop = threading.Event()
        self._failed: str | None = None  # the version whose last try failed, not retried
        self._thread = threading.Thread(
            target=self._run, name=f"modeldeploy-{name}-follow-{alias}", daemon=True
        )

    def start(self) -> AliasFollower:
        """Start following; returns the follower."""
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop following (a deploy under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def check(self) -> str | None:
        """
        Look at the alias once; deploy or roll back when it moved.

        Returns:
            The version now live when this call changed it, else ``None``.
        """
        service = self.service
        if not service.ready():
            return None
        try:
            wanted = self.store.resolve(self.name, self.alias)
        except ModelDeployError as exc:
            logger.warning("following %s@%s: %s", self.name, self.alias, exc.message)
            return None
        if wanted == service.version or wanted == self._failed:
            return None
        info = service.model_info()
        try:
            if wanted == info["previous"]:
                live = service.rollback()
            else:
                predictor = self.store.load(self.name, wanted, trusted=self.trusted)
                live = service.deploy(predictor, version=wanted)
        except (ModelDeployError, ValueError) as exc:
            self._failed = wanted
            message = exc.message if isinstance(exc, ModelDeployError) else str(exc)
            logger.error(
                "alias %s of model %s names %s, which cannot be deployed: %s; "
                "version %s keeps serving",
                self.alias,
                self.name,
                wanted,
                message,
                service.version,
            )
            return None
        self._failed = None
        logger.info("alias %s of model %s moved: version %s is live", self.alias, self.name, live)
        return live

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: PERF203 - the thread must outlive any surprise
                logger.exception("following alias %s of model %s failed", self.alias, self.name)
