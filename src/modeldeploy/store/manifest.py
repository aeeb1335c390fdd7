"""
The manifest of one stored model version: what its files are and how to load them.

A manifest is ``manifest.json`` beside the artifact files. It is written the same
way every time (sorted keys, two-space indent, LF, a trailing newline), so a Git
diff between two versions shows only what changed. With a key, it carries an
HMAC-SHA256 over its canonical bytes (compact JSON, sorted keys, without the
``hmac`` field itself).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from ..errors import IntegrityError
from ..messages import Signature, TensorSpec

__all__ = [
    "SCHEMA",
    "FileEntry",
    "Manifest",
    "canonical_bytes",
    "check_hmac",
    "compute_hmac",
    "json_value",
    "signature_from_json",
    "signature_to_json",
]

SCHEMA: Final = 1
"""The manifest format's version, written as ``"schema"``."""

_HMAC_PREFIX: Final = "hmac-sha256:"
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
# file names inside a version: plain names, never a path or a hidden file
FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def json_value(value: Any, what: str) -> Any:
    """
    Return *value* as plain JSON data (a deep copy), or raise TypeError/ValueError.

    NaN and infinities are refused: they are not JSON, and a manifest must
    read back to the same bytes.
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what} must be JSON data (no NaN): {exc}") from exc


def canonical_bytes(data: Mapping[str, Any]) -> bytes:
    """The bytes an HMAC covers: compact, sorted JSON of *data* without its ``hmac``."""
    body = {key: value for key, value in data.items() if key != "hmac"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def compute_hmac(data: Mapping[str, Any], key: bytes) -> str:
    """Return the ``hmac`` field for *data* under *key*: ``hmac-sha256:<hex>``."""
    digest = _hmac.new(key, canonical_bytes(data), hashlib.sha256).hexdigest()
    return _HMAC_PREFIX + digest


def check_hmac(data: Mapping[str, Any], key: bytes, where: str) -> None:
    """
    Raise IntegrityError unless *data* carries a valid HMAC under *key*.

    The comparison takes constant time (``hmac.compare_digest``).
    """
    given = data.get("hmac")
    if not isinstance(given, str):
        raise IntegrityError(f"{where} is not signed, and the store requires a signature")
    if not _hmac.compare_digest(given.encode(), compute_hmac(data, key).encode()):
        raise IntegrityError(f"{where}: the manifest signature does not match")


@attrs.frozen
class FileEntry:
    """
    One artifact file of a version, as its manifest records it.

    Attributes:
        sha256: The lower-case hex SHA-256 of the file's bytes.
        size: Its size in bytes.

    .. versionadded:: 0.1.0
    """

    sha256: str
    size: int


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def signature_to_json(signature: Signature | None) -> Any:
    """Return *signature* as manifest JSON: ``{"inputs": [{name, dtype, shape}], "outputs"}``."""
    if signature is None:
        return None

    def spec(tensor: TensorSpec) -> dict[str, Any]:
        shape = None if tensor.shape is None else list(tensor.shape)
        return {"dtype": tensor.dtype, "name": tensor.name, "shape": shape}

    return {
        "inputs": [spec(t) for t in signature.inputs],
        "outputs": [spec(t) for t in signature.outputs],
    }


def signature_from_json(data: Any) -> Signature | None:
    """
    Return the Signature of manifest JSON (``None`` for ``null``).

    ``outputs``, and each tensor's ``dtype`` and ``shape``, may be left out
    (no outputs, ``"object"``, any shape), as in a hand-written signature file.

    Raises:
        KeyError, TypeError, ValueError, AttributeError: *data* is not a signature.
    """
    if data is None:
        return None

    def spec(item: Mapping[str, Any]) -> TensorSpec:
        return TensorSpec(str(item["name"]), str(item.get("dtype", "object")), item.get("shape"))

    outputs = data.get("outputs") or ()
    return Signature([spec(item) for item in data["inputs"]], [spec(item) for item in outputs])


@attrs.frozen
class Manifest:
    """
    What ``manifest.json`` says about one version.

    Attributes:
        name: The model's name.
        version: The version's name (``"v3"``).
        format: The name of the format that reads the artifact (``"joblib"``).
        created: When the version was saved, ISO 8601 in UTC with microseconds.
        files: File name to its :class:`FileEntry`, for every artifact file.
        signature: The model's declared inputs and outputs, or ``None``.
        metadata: Free JSON data given at save time (metrics, a Git commit...).
        reference: Reference statistics for drift monitoring, or ``None``:
            JSON data the store keeps and returns without reading it.
        factory: ``"module:attribute"`` of a callable that turns the loaded
            artifact into the model, or ``None``.
        hmac: ``"hmac-sha256:<hex>"`` when saved with a key, else ``None``.

    .. versionadded:: 0.1.0
    """

    name: str
    version: str
    format: str
    created: str
    files: Mapping[str, FileEntry] = attrs.field(converter=_frozen_mapping)
    signature: Signature | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    reference: Mapping[str, Any] | None = None
    factory: str | None = None
    hmac: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the manifest as the JSON object written to ``manifest.json``."""
        data: dict[str, Any] = {
            "created": self.created,
            "factory": self.factory,
            "files": {
                name: {"sha256": entry.sha256, "size": entry.size}
                for name, entry in self.files.items()
            },
            "format": self.format,
            "metadata": dict(self.metadata),
            "name": self.name,
            "schema": SCHEMA,
            "signature": signature_to_json(self.signature),
            "version": self.version,
        }
        if self.reference is not None:
            data["reference"] = dict(self.reference)
        if self.hmac is not None:
            data["hmac"] = self.hmac
        return data

    def dumps(self) -> bytes:
        """Return the bytes of ``manifest.json``: sorted keys, LF, trailing newline."""
        text = json.dumps(self.to_json(), sort_keys=True, indent=2, ensure_ascii=False)
        return (text + "\n").encode()

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """
        Build a manifest from the parsed JSON of ``manifest.json``.

        Raises:
            IntegrityError: *data* is not a manifest this version of
                modeldeploy reads (a missing field, a wrong type, a file name
                that is a path, a malformed hash).
        """
        try:
            if data["schema"] != SCHEMA:
                raise ValueError(f"unknown manifest schema {data['schema']!r}")
            files = {}
            for file_name, entry in data["files"].items():
                if not FILE_NAME.fullmatch(file_name) or file_name == "manifest.json":
                    raise ValueError(f"file name {file_name!r} is not a plain name")
                sha256, size = entry["sha256"], entry["size"]
                if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
                    raise ValueError(f"malformed sha256 for {file_name!r}")
                if type(size) is not int or size < 0:
                    raise ValueError(f"malformed size for {file_name!r}")
                files[file_name] = FileEntry(sha256, size)
            metadata, reference = data["metadata"], data.get("reference")
            if not isinstance(metadata, dict) or not isinstance(reference, (dict, type(None))):
                raise TypeError("metadata and reference are JSON objects")
            strings = [data[k] for k in ("name", "version", "format", "created")]
            optional = [data["factory"], data.get("hmac")]
            if not all(isinstance(s, str) for s in strings) or not all(
                isinstance(s, (str, type(None))) for s in optional
            ):
                raise TypeError("a text field has another type")
            return cls(
                name=data["name"],
                version=data["version"],
                format=data["format"],
                created=data["created"],
                files=files,
                signature=signature_from_json(data["signature"]),
                metadata=metadata,
                reference=reference,
                factory=data["factory"],
                hmac=data.get("hmac"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(f"{where}: manifest.json is malformed") from exc
