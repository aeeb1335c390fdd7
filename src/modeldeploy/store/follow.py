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
from collections.abc import Callable
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
        canary_alias: A second alias (``"canary"``): while it names a version
            other than the live one, that version answers *canary_weight* of
            the requests (:meth:`Service.canary <modeldeploy.Service.canary>`);
            moving the main alias to it promotes it without a second load;
            removing it, or pointing it at the live version, ends the canary.
        canary_weight: The canary's share of the requests.
        canary_key: A request header that keeps each client on one side.

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
        canary_alias: str | None = None,
        canary_weight: float = 0.05,
        canary_key: str | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.store = store
        self.name = name
        self.alias = alias
        self.service = service
        self.interval = interval
        self.trusted = trusted
        self.canary_alias = canary_alias
        self.canary_weight = canary_weight
        self.canary_key = canary_key
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
        Look at the aliases once; deploy, roll back, promote or run a canary as they say.

        Returns:
            The version now live when this call changed it, else the canary's
            version when this call started one, else ``None``.
        """
        service = self.service
        if not service.ready():
            return None
        wanted = self._resolve(self.alias)
        if wanted is None:
            return None
        live = self._follow_live(wanted)
        if self.canary_alias is None:
            return live
        canary = self._follow_canary(self._resolve(self.canary_alias, missing_ok=True))
        return live or canary

    def _resolve(self, alias: str, *, missing_ok: bool = False) -> str | None:
        try:
            return self.store.resolve(self.name, alias)
        except ModelDeployError as exc:
            if not missing_ok:
                logger.warning("following %s@%s: %s", self.name, alias, exc.message)
            return None

    def _follow_live(self, wanted: str) -> str | None:
        service = self.service
        if wanted == service.version or wanted == self._failed:
            return None
        info = service.model_info()
        canary = info["canary"]["version"] if info["canary"] else None

        def switch() -> str:
            if wanted == canary:
                return service.promote()  # loaded already: no second load
            if wanted == info["previous"]:
                return service.rollback()
            predictor = self.store.load(self.name, wanted, trusted=self.trusted)
            return service.deploy(predictor, version=wanted)

        live = self._try(self.alias, wanted, switch)
        if live is not None:
            logger.info(
                "alias %s of model %s moved: version %s is live", self.alias, self.name, live
            )
        return live

    def _follow_canary(self, wanted: str | None) -> str | None:
        service = self.service
        info = service.model_info()
        running = info["canary"]["version"] if info["canary"] else None
        if wanted is None or wanted == service.version:
            if running is not None:
                service.end_canary()
                logger.info("canary alias of model %s cleared: canary ended", self.name)
            return None
        if wanted == running or wanted == self._failed:
            return None

        def start() -> str:
            if running is not None:
                service.end_canary()
            # the previous version is loaded already: no second load of it
            predictor = (
                None
                if wanted == info["previous"]
                else self.store.load(self.name, wanted, trusted=self.trusted)
            )
            return service.canary(
                predictor, weight=self.canary_weight, key=self.canary_key, version=wanted
            )

        assert self.canary_alias is not None
        return self._try(self.canary_alias, wanted, start)

    def _try(self, alias: str, wanted: str, action: Callable[[], str]) -> str | None:
        """Run *action*; a version that cannot be deployed is logged once and remembered."""
        try:
            done = action()
        except (ModelDeployError, ValueError) as exc:
            self._failed = wanted
            message = exc.message if isinstance(exc, ModelDeployError) else str(exc)
            logger.error(
                "alias %s of model %s names %s, which cannot be deployed: %s; "
                "version %s keeps serving",
                alias,
                self.name,
                wanted,
                message,
                self.service.version,
            )
            return None
        self._failed = None
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: PERF203 - the thread must outlive any surprise
                logger.exception("following alias %s of model %s failed", self.alias, self.name)
