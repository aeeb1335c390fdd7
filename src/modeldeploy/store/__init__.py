"""
The model store: versioned, hash-checked, optionally signed models on disk.

>>> import tempfile
>>> from modeldeploy.store import ModelStore
>>> store = ModelStore(tempfile.mkdtemp())
>>> store.save("scale", [[1.0, 2.0]], format="json")
'v1'

See :class:`ModelStore`, the formats in :mod:`modeldeploy.store.formats`, and
the "Versions" page of the docs.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from ._store import KEY_ENV, LATEST, ModelStore, load_spec, parse_spec
from .follow import AliasFollower
from .formats import ModelFormat
from .manifest import FileEntry, Manifest

__all__ = [
    "KEY_ENV",
    "LATEST",
    "AliasFollower",
    "FileEntry",
    "Manifest",
    "ModelFormat",
    "ModelStore",
    "load_spec",
    "parse_spec",
]
