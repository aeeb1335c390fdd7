"""
Serializer registry and HTTP content negotiation.

The registry maps names and media types to serializer factories; the built-in
backends are imported only when first asked for, so an optional dependency
(defusedxml, numpy) is needed only by the backend that uses it. Third-party
backends register through the ``modeldeploy.serializers`` entry-point group.

:class:`Negotiator` picks a request's decoder from ``Content-Type`` and its
encoder from ``Accept`` (RFC 9110 section 12.5.1: q-values, ``type/*`` and
``*/*`` ranges, the most specific range deciding). Results are cached per
header value, so a steady stream of identical headers costs one dict lookup.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from .errors import NotAcceptableError, UnsupportedMediaTypeError
from .interfaces import Serializer

__all__ = [
    "BUILTIN_MEDIA_TYPES",
    "ENTRY_POINT_GROUP",
    "Negotiator",
    "SerializerRegistry",
    "media_type_of",
    "parse_accept",
    "registry",
]

logger = logging.getLogger("modeldeploy")

ENTRY_POINT_GROUP = "modeldeploy.serializers"

SerializerFactory = Callable[..., Serializer]

# name -> (import path of the factory, media types it reads, canonical first);
# backends take their media_types from here so the two cannot drift apart
_BUILTINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "json": ("modeldeploy.serializers.json:JSON", ("application/json", "text/json")),
    "msgpack": (
        "modeldeploy.serializers.msgpack:MsgPack",
        ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack"),
    ),
    "pickle": (
        "modeldeploy.serializers.pickle:Pickle",
        ("application/python-pickle", "application/x-python-pickle", "application/x-pickle"),
    ),
    "protobuf": (
        "modeldeploy.serializers.protobuf:Protobuf",
        ("application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf"),
    ),
    "xml": ("modeldeploy.serializers.xml:XML", ("application/xml", "text/xml")),
}


BUILTIN_MEDIA_TYPES: dict[str, tuple[str, ...]] = {
    name: media_types for name, (_, media_types) in _BUILTINS.items()
}
"""The media types of each built-in backend, canonical first."""


def media_type_of(header: str) -> str:
    """
    Return the bare, lower-case media type of a ``Content-Type`` header value.

    >>> media_type_of("Application/JSON; charset=utf-8")
    'application/json'

    .. versionadded:: 0.1.0
    """
    return header.split(";", 1)[0].strip().lower()


@lru_cache(maxsize=256)
def parse_accept(header: str) -> tuple[tuple[str, float], ...]:
    """
    Parse an ``Accept`` header into ``(media_range, q)`` pairs.

    Ranges keep the order of the header; a missing or malformed ``q`` counts
    as 1 or 0 respectively (a malformed weight must not win). An empty header
    means ``*/*``.

    >>> parse_accept("text/html;q=0.5, application/msgpack")
    (('text/html', 0.5), ('application/msgpack', 1.0))

    .. versionadded:: 0.1.0
    """
    ranges: list[tuple[str, float]] = []
    for part in header.split(","):
        media_range, *params = (p.strip() for p in part.split(";"))
        media_range = media_range.lower()
        if not media_range:
            continue
        if "/" not in media_range:
            media_range = "*/*" if media_range == "*" else media_range + "/*"
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                # "nan" and "inf" parse as floats but are malformed weights
                q = min(max(q, 0.0), 1.0) if math.isfinite(q) else 0.0
        ranges.append((media_range, q))
    return tuple(ranges) or (("*/*", 1.0),)


def _quality(media_type: str, ranges: Sequence[tuple[str, float]]) -> tuple[int, float]:
    """Return (specificity, q) of the most specific range matching *media_type*."""
    main = media_type.split("/", 1)[0]
    best = (-1, 0.0)
    for media_range, q in ranges:
        if media_range == media_type:
            specificity = 2
        elif media_range == main + "/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, q)
    return best


class SerializerRegistry:
    """
    Names and media types to serializer factories.

    The module-level :data:`registry` holds the built-ins and every backend
    registered through the ``modeldeploy.serializers`` entry-point group (the
    entry point's name is the serializer name; it loads a factory whose
    instances have ``media_types``).

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}
        self._factories: dict[str, SerializerFactory] = {}
        self._by_media_type: dict[str, str] = {}
        self._entry_points_loaded = False
        self._lock = threading.Lock()
        for name, (path, media_types) in _BUILTINS.items():
            self._paths[name] = path
            for media_type in media_types:
                self._by_media_type[media_type] = name

    def register(
        self, name: str, factory: SerializerFactory, media_types: Iterable[str] = ()
    ) -> None:
        """
        Register *factory* under *name* and each of *media_types*.

        A later registration of the same name or media type replaces the
        earlier one, so an application can swap a built-in backend.
        """
        with self._lock:
            self._factories[name] = factory
            self._paths.pop(name, None)
            for media_type in media_types:
                self._by_media_type[media_type_of(media_type)] = name

    def names(self) -> list[str]:
        """Return every registered serializer name, sorted."""
        self._load_entry_points()
        return sorted({*self._paths, *self._factories})

    def factory(self, key: str) -> SerializerFactory:
        """
        Return the factory registered under a name or media type.

        Raises:
            UnsupportedMediaTypeError: Nothing is registered under *key*.
        """
        name = self._resolve(key)
        if name is None:
            self._load_entry_points()
            name = self._resolve(key)
        if name is None:
            raise UnsupportedMediaTypeError(f"no serializer registered for {key!r}")
        with self._lock:
            factory = self._factories.get(name)
            if factory is None:
                module_name, _, attribute = self._paths[name].partition(":")
                factory = getattr(importlib.import_module(module_name), attribute)
                self._factories[name] = factory
        return factory

    def get(self, key: str, **options: Any) -> Serializer:
        """
        Return a new serializer for a name or media type.

        ``get("msgpack")`` and ``get("application/msgpack")`` are the same;
        *options* go to the backend's constructor (``max_size=...``).

        Raises:
            UnsupportedMediaTypeError: Nothing is registered under *key*.
        """
        return self.factory(key)(**options)

    def _resolve(self, key: str) -> str | None:
        if key in self._paths or key in self._factories:
            return key
        return self._by_media_type.get(media_type_of(key))

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                factory = entry_point.load()
            except Exception:  # one broken plugin must not hide the others
                logger.exception("serializer entry point %r failed to load", entry_point.name)
                continue
            self.register(entry_point.name, factory, getattr(factory, "media_types", ()))


registry = SerializerRegistry()
"""The process-wide registry behind :func:`modeldeploy.serializers.get`."""


class Negotiator:
    """
    Picks serializers for one service from ``Content-Type`` and ``Accept``.

    Args:
        serializers: The candidates, in our order of preference (used for
            ties and for ``*/*``).

    .. versionadded:: 0.1.0
    """

    _CACHE_LIMIT = 1024  # distinct header values kept; a client cannot grow it past this

    def __init__(self, serializers: Sequence[Serializer]) -> None:
        if not serializers:
            raise ValueError("a Negotiator needs at least one serializer")
        self.serializers = tuple(serializers)
        self._by_media_type: dict[str, Serializer] = {}
        for serializer in reversed(self.serializers):  # earlier wins on a clash
            for media_type in serializer.media_types:
                self._by_media_type[media_type] = serializer
        self._decoders: dict[str, Serializer] = {}
        self._encoders: dict[tuple[str, str], Serializer] = {}

    @property
    def media_types(self) -> list[str]:
        """The canonical media types on offer, in preference order."""
        return [s.media_type for s in self.serializers]

    def decoder(self, content_type: str) -> Serializer:
        """
        Return the serializer that reads *content_type*.

        Raises:
            UnsupportedMediaTypeError: No candidate reads it.
        """
        found = self._decoders.get(content_type)
        if found is not None:
            return found
        found = self._by_media_type.get(media_type_of(content_type))
        if found is None:
            offered = ", ".join(self.media_types)
            raise UnsupportedMediaTypeError(
                f"unsupported Content-Type {media_type_of(content_type)!r}; use one of: {offered}"
            )
        if len(self._decoders) < self._CACHE_LIMIT:
            self._decoders[content_type] = found
        return found

    def encoder(self, accept: str, preferred: Serializer | None = None) -> Serializer:
        """
        Return the serializer the client prefers for the response.

        Args:
            accept: The raw ``Accept`` header.
            preferred: Wins ties (typically the request's own format), so a
                client that accepts anything gets answered in kind.

        Raises:
            NotAcceptableError: No candidate is acceptable.
        """
        key = (accept, preferred.name if preferred is not None else "")
        found = self._encoders.get(key)
        if found is not None:
            return found
        ranges = parse_accept(accept)
        candidates = self.serializers
        if preferred is not None and preferred in candidates:
            candidates = (preferred, *(s for s in candidates if s is not preferred))
        best: Serializer | None = None
        best_q = 0.0
        for serializer in candidates:
            # the most specific range naming any of its media types decides
            q = max(_quality(mt, ranges) for mt in serializer.media_types)[1]
            if q > best_q:
                best, best_q = serializer, q
        if best is None:
            offered = ", ".join(self.media_types)
            raise NotAcceptableError(f"cannot answer in any accepted type; offered: {offered}")
        if len(self._encoders) < self._CACHE_LIMIT:
            self._encoders[key] = best
        return best
