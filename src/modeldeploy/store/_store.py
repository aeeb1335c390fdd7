"""The model store on the file system: :class:`ModelStore`."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import importlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from ..errors import (
    IntegrityError,
    ModelDeployError,
    ModelLoadError,
    ModelNotFoundError,
    UntrustedPayloadError,
    VersionExistsError,
    VersionNotFoundError,
)
from ..interfaces import Predictor
from ..messages import Signature
from ..predictors import predictor
from . import formats
from .manifest import FileEntry, Manifest, check_hmac, compute_hmac, json_value

__all__ = ["KEY_ENV", "LATEST", "ModelStore"]

KEY_ENV: Final = "MODELDEPLOY_STORE_KEY"
"""The environment variable a :class:`ModelStore` without ``key=`` reads its key from."""

LATEST: Final = "latest"
"""The reference to a model's newest version."""

MANIFEST: Final = "manifest.json"
ALIASES: Final = "aliases.json"
_TEMP_PREFIX: Final = ".tmp-"
_MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024
_AUTO_ATTEMPTS: Final = 1000

# model, version and alias names: one path component, never hidden, no '@'
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_AUTO: Final = re.compile(r"v([1-9][0-9]{0,17})")
_FACTORY: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value) or value == LATEST:
        raise ValueError(
            f"{what} {value!r} is not valid: letters, digits and . _ + -, "
            f"not starting with a dot, at most 128 characters, not {LATEST!r}"
        )
    return value


def _natural(version: str) -> tuple[int, str]:
    match = _AUTO.fullmatch(version)
    return (int(match[1]), "") if match else (0, version)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def factory_path(factory: str | Callable[..., Any]) -> str:
    """
    Return the ``"module:attribute"`` that names *factory*, checking it can be imported.

    Raises:
        ValueError: *factory* is a lambda, a nested function or lives in ``__main__``:
            another process could not import it.
    """
    if isinstance(factory, str):
        path = factory
    else:
        module = getattr(factory, "__module__", None)
        qualname = getattr(factory, "__qualname__", None)
        path = f"{module}:{qualname}"
        if module == "__main__":
            raise ValueError(f"factory {qualname} lives in __main__: move it to a module")
    if not _FACTORY.fullmatch(path):
        raise ValueError(f"factory {path!r} is not importable as package.module:attribute")
    return path


def _import_factory(path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    try:
        found = functools.reduce(
            getattr, attribute.split("."), importlib.import_module(module_name)
        )
    except Exception as exc:
        raise ModelLoadError(f"the factory {path!r} cannot be imported") from exc
    if not callable(found):
        raise ModelLoadError(f"the factory {path!r} is not callable")
    return found


class ModelStore:
    """
    Versioned models on the file system, hash-checked and optionally signed.

    Each version is a directory ``<root>/<name>/<version>/`` holding the
    artifact file and ``manifest.json`` (format, SHA-256 and size of every
    file, creation time, signature, metadata, reference statistics),
    written deterministically so that Git diffs stay clean and DVC can
    track the artifacts. A version is saved atomically (built in a
    temporary directory beside it, then renamed) and never changes after.
    Aliases (``production``, ``staging``) live in ``<root>/<name>/aliases.json``
    and move atomically.

    Versions saved without ``version=`` are numbered ``v1``, ``v2``, ...
    (one more than the highest ``vN``); a given name is kept as it is.
    ``"latest"`` is the version saved last (by its manifest's ``created``).

    Args:
        root: The store's directory; created by the first save.
        key: The HMAC key (bytes, or text encoded as UTF-8). ``None`` reads
            the environment variable ``MODELDEPLOY_STORE_KEY``. With a key,
            saves sign their manifest, and only versions signed with this key
            load, verify or get an alias; pickled artifacts (joblib, a
            manifest's factory) then load without ``trusted=True``.

    Example:
        >>> import tempfile, modeldeploy as md
        >>> store = md.ModelStore(tempfile.mkdtemp())
        >>> store.save("table", {"a": 1}, format="json")
        'v1'
        >>> store.versions("table")
        ['v1']

    .. versionadded:: 0.1.0
    """

    def __init__(self, root: str | os.PathLike[str], *, key: str | bytes | None = None) -> None:
        self.root = Path(root)
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        self._key = key.encode() if isinstance(key, str) else key
        if self._key is not None and not self._key:
            raise ValueError("the store key is empty")

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r}, signed={self.is_signed})"

    @property
    def is_signed(self) -> bool:
        """Whether the store has a key: it signs what it saves and checks what it loads."""
        return self._key is not None

    # -- reading --------------------------------------------------------------------

    def models(self) -> list[str]:
        """Return the names of the models in the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if NAME.fullmatch(entry.name) and entry.is_dir()
        )

    def _model_dir(self, name: str) -> Path:
        directory = self.root / name
        if not (isinstance(name, str) and NAME.fullmatch(name) and directory.is_dir()):
            raise ModelNotFoundError(f"no model {name!r} in the store")
        return directory

    def versions(self, name: str) -> list[str]:
        """
        Return the versions of model *name*, oldest first (by creation time).

        A directory without ``manifest.json`` (a save in progress, or the
        leftover of a killed one) is not a version.

        Raises:
            ModelNotFoundError: The store has no model *name*.
        """
        directory = self._model_dir(name)
        found = [
            (self._created(entry), _natural(entry.name), entry.name)
            for entry in directory.iterdir()
            if NAME.fullmatch(entry.name) and (entry / MANIFEST).is_file()
        ]
        return [version for *_, version in sorted(found)]

    @staticmethod
    def _created(version_dir: Path) -> str:
        try:
            created = json.loads((version_dir / MANIFEST).read_bytes())["created"]
        except (OSError, ValueError, KeyError, TypeError):
            created = None
        # an unreadable manifest sorts last: "latest" then refuses it, loudly,
        # rather than silently serving an older version
        return created if isinstance(created, str) else "\uffff"

    def aliases(self, name: str) -> dict[str, str]:
        """
        Return the aliases of model *name*: alias to version.

        Raises:
            ModelNotFoundError: The store has no model *name*.
        """
        return self._read_aliases(self._model_dir(name))

    @staticmethod
    def _read_aliases(directory: Path) -> dict[str, str]:
        try:
            data = json.loads((directory / ALIASES).read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise IntegrityError(f"{directory.name}/{ALIASES} is not valid JSON") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise IntegrityError(f"{directory.name}/{ALIASES} is not an object of versions")
        return data

    def resolve(self, name: str, ref: str = LATEST) -> str:
        """
        Return the version *ref* names: a version, ``"latest"`` or an alias.

        Raises:
            ModelNotFoundError: The store has no model *name*.
            VersionNotFoundError: *ref* names no version of it.
        """
        directory = self._model_dir(name)
        if ref == LATEST:
            versions = self.versions(name)
            if not versions:
                raise VersionNotFoundError(f"model {name!r} has no version yet")
            return versions[-1]
        if isinstance(ref, str) and NAME.fullmatch(ref):
            if (directory / ref / MANIFEST).is_file():
                return ref
            version = self._read_aliases(directory).get(ref)
            if version is not None and NAME.fullmatch(version):
                if (directory / version / MANIFEST).is_file():
                    return version
                raise VersionNotFoundError(
                    f"alias {ref!r} of model {name!r} names {version!r}, which is not here"
                )
        raise VersionNotFoundError(f"model {name!r} has no version or alias {ref!r}")

    def manifest(self, name: str, ref: str = LATEST) -> Manifest:
        """
        Return the manifest of a version, its HMAC checked when the store has a key.

        The artifact files are not read: :meth:`verify` and :meth:`load` check them.
        To pair a manifest with a loaded model whatever an alias does meanwhile,
        load ``manifest.version``, not the alias.

        Raises:
            ModelNotFoundError: The store has no model *name*.
            VersionNotFoundError: *ref* names no version of it.
            IntegrityError: The manifest is malformed, unsigned or wrongly signed,
                or it describes another model or version.
        """
        version = self.resolve(name, ref)
        where = f"{name}/{version}"
        path = self.root / name / version / MANIFEST
        try:
            with open(path, "rb") as file:
                raw = file.read(_MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError as exc:
            raise VersionNotFoundError(f"model {name!r} has no version {version!r}") from exc
        if len(raw) > _MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{where}: manifest.json is too large")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise IntegrityError(f"{where}: manifest.json is not valid JSON") from exc
        if not isinstance(data, dict):
            raise IntegrityError(f"{where}: manifest.json is malformed")
        if self._key is not None:
            try:
                check_hmac(data, self._key, where)
            except (TypeError, ValueError) as exc:  # content that is not canonical JSON
                raise IntegrityError(f"{where}: manifest.json is malformed") from exc
        manifest = Manifest.from_json(data, where)
        if (manifest.name, manifest.version) != (name, version):
            raise IntegrityError(
                f"{where}: the manifest describes {manifest.name}/{manifest.version}"
            )
        return manifest

    def _read_files(self, name: str, manifest: Manifest) -> dict[str, bytes]:
        where = f"{name}/{manifest.version}"
        directory = self.root / name / manifest.version
        contents = {}
        for file_name, entry in manifest.files.items():
            path = directory / file_name
            try:
                # the bytes hashed are the bytes loaded: no window to swap the file
                with open(path, "rb") as file:
                    data = file.read(entry.size + 1)
            except FileNotFoundError as exc:
                raise IntegrityError(f"{where}: file {file_name!r} is missing") from exc
            except OSError as exc:
                raise IntegrityError(f"{where}: file {file_name!r} cannot be read") from exc
            if len(data) != entry.size:
                raise IntegrityError(f"{where}: file {file_name!r} has the wrong size")
            digest = hashlib.sha256(data).hexdigest()
            if not hmac.compare_digest(digest, entry.sha256):
                raise IntegrityError(f"{where}: file {file_name!r} does not match its sha256")
            contents[file_name] = data
        return contents

    def verify(self, name: str, ref: str = LATEST) -> Manifest:
        """
        Check a version without loading it: manifest, HMAC, every file's size and hash.

        Returns:
            Its manifest.

        Raises:
            ModelNotFoundError: The store has no model *name*.
            VersionNotFoundError: *ref* names no version of it.
            IntegrityError: Something does not match (see :meth:`load`).
        """
        manifest = self.manifest(name, ref)
        self._read_files(name, manifest)
        return manifest

    def load(
        self,
        name: str,
        ref: str = LATEST,
        *,
        trusted: bool = False,
        factory: Callable[[Any], Any] | None = None,
    ) -> Predictor:
        """
        Load a version as a :class:`~modeldeploy.Predictor`, after checking it.

        The manifest is read (and its HMAC checked when the store has a key),
        then every file it lists is read once, and its size and SHA-256 are
        compared with the manifest before the same bytes are deserialized.
        Nothing is started: the predictor's ``name`` is *name*, its
        ``version`` the resolved version, its ``signature`` the saved one.

        Args:
            name: The model's name.
            ref: A version, ``"latest"`` or an alias.
            trusted: Load a pickled artifact (joblib, a trusted pickle) or
                call the factory the manifest names even though the store
                has no key that vouches for them. Only for a store nobody
                else can write.
            factory: Builds the model from the loaded artifact, instead of the
                factory the manifest names; your code, so it needs no trust.

        Raises:
            ModelNotFoundError: The store has no model *name*.
            VersionNotFoundError: *ref* names no version of it.
            IntegrityError: The manifest is malformed, unsigned or wrongly
                signed (with a key), describes another version, or a file is
                missing or does not match its size or hash.
            UntrustedPayloadError: The artifact would run code (joblib,
                pickle globals, a factory named by the manifest) and the
                version is not trusted.
            ModelLoadError: The format is unknown, its framework is not
                installed (the message names the extra), or the artifact or
                factory fails.
        """
        manifest = self.manifest(name, ref)
        where = f"{name}/{manifest.version}"
        contents = self._read_files(name, manifest)
        model_format = formats.get(manifest.format)
        data = contents.get(model_format.filename)
        if data is None:
            raise IntegrityError(f"{where}: the manifest lists no {model_format.filename}")
        trust = trusted or self._key is not None
        try:
            value = model_format.load(data, trusted=trust)
            build_with = factory
            if build_with is None and manifest.factory is not None:
                if not trust:
                    raise UntrustedPayloadError(
                        f"{where} names the factory {manifest.factory!r}: calling it runs "
                        "code; sign the store with a key, pass trusted=True, or pass factory="
                    )
                build_with = _import_factory(manifest.factory)
            # a format that makes its own predictor (onnx, torch) gets what it needs
            make = getattr(model_format, "predictor", None)
            if make is not None:
                made: Predictor = make(
                    value,
                    factory=build_with,
                    signature=manifest.signature,
                    name=name,
                    version=manifest.version,
                )
                return made
            model = value if build_with is None else build_with(value)
        except ModelDeployError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{where} failed to load: {type(exc).__name__}") from exc
        try:
            return predictor(
                model, signature=manifest.signature, name=name, version=manifest.version
            )
        except TypeError as exc:
            raise ModelLoadError(
                f"{where} holds a {type(model).__name__}, not a model: "
                "save it with factory=, or pass factory= to load()"
            ) from exc

    # -- writing --------------------------------------------------------------------

    def save(
        self,
        name: str,
        model: Any,
        *,
        format: str,
        signature: Signature | None = None,
        metadata: Mapping[str, Any] | None = None,
        reference: Mapping[str, Any] | None = None,
        factory: str | Callable[..., Any] | None = None,
        version: str | None = None,
    ) -> str:
        """
        Save *model* as a new version of *name*; return the version.

        Args:
            name: The model's name (letters, digits, ``. _ + -``).
            model: What *format* writes: an estimator for joblib, a
                ``ModelProto`` for onnx, data for json...
            format: A registered format name (see :mod:`modeldeploy.store.formats`).
            signature: The model's inputs and outputs; the loaded predictor
                validates requests against it.
            metadata: JSON data kept in the manifest (metrics, a commit...).
            reference: Reference statistics for drift monitoring, JSON data
                kept in the manifest; :meth:`manifest` gives them back.
            factory: A callable (or ``"package.module:attribute"``) that turns
                the loaded artifact into the model: ``factory(value)`` for
                data formats, ``factory()`` building the module for torch
                (default: the module's class).
            version: The version's name; ``None`` numbers it ``vN``.

        Raises:
            VersionExistsError: *version* is already saved: versions never change.
            ValueError: A name is invalid, or metadata or reference is not JSON data.
            TypeError: *format* cannot write *model*.
            ModelLoadError: *format* is unknown or its framework is missing.
            EncodeError: A serializer format cannot encode *model*.
        """
        model_format = formats.get(format)
        if factory is None and model_format.name == "torch" and hasattr(model, "state_dict"):
            factory = type(model)  # a module: its class rebuilds it
        data = model_format.dump(model)
        return self._save_bytes(
            name,
            {model_format.filename: data},
            format=model_format.name,
            signature=signature,
            metadata=metadata,
            reference=reference,
            factory=factory,
            version=version,
        )

    def save_file(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        format: str,
        signature: Signature | None = None,
        metadata: Mapping[str, Any] | None = None,
        reference: Mapping[str, Any] | None = None,
        factory: str | Callable[..., Any] | None = None,
        version: str | None = None,
    ) -> str:
        """
        Save an artifact file that already exists (a ``model.onnx``...) as a new version.

        The file is copied under the format's file name; its bytes are not
        checked to load (:meth:`load` does). Arguments and errors are those
        of :meth:`save`; *path* is the file.
        """
        model_format = formats.get(format)
        data = Path(path).read_bytes()
        return self._save_bytes(
            name,
            {model_format.filename: data},
            format=model_format.name,
            signature=signature,
            metadata=metadata,
            reference=reference,
            factory=factory,
            version=version,
        )

    def _save_bytes(
        self,
        name: str,
        files: Mapping[str, bytes],
        *,
        format: str,
        signature: Signature | None,
        metadata: Mapping[str, Any] | None,
        reference: Mapping[str, Any] | None,
        factory: str | Callable[..., Any] | None,
        version: str | None,
    ) -> str:
        _check_name(name, "model name")
        if version is not None:
            _check_name(version, "version")
            if version == ALIASES:
                raise ValueError(f"{ALIASES!r} is the store's own file, not a version name")
        fields: dict[str, Any] = {
            "format": format,
            "files": {
                file_name: FileEntry(hashlib.sha256(data).hexdigest(), len(data))
                for file_name, data in files.items()
            },
            "signature": signature,
            "metadata": json_value(dict(metadata or {}), "metadata"),
            "reference": None if reference is None else json_value(dict(reference), "reference"),
            "factory": None if factory is None else factory_path(factory),
        }
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        if version is not None and version in self._read_aliases(directory):
            raise ValueError(f"{version!r} is an alias of model {name!r}; pick another version")
        temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=directory))
        try:
            os.chmod(temp, 0o755)  # noqa: S103 - a version is as readable as a checkout
            for file_name, data in files.items():
                _write(temp / file_name, data)
            candidates = [version] if version is not None else self._auto_versions(directory)
            for candidate in candidates:
                target = directory / candidate
                if target.exists():
                    if version is not None:
                        raise VersionExistsError(f"{name}/{version} exists; versions never change")
                    continue
                manifest = self._manifest(name, candidate, fields)
                with contextlib.suppress(FileNotFoundError):
                    (temp / MANIFEST).unlink()
                _write(temp / MANIFEST, manifest.dumps())
                _fsync(temp)
                try:
                    os.rename(temp, target)
                except OSError as exc:
                    # another save took the name between the check and the rename
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    if version is not None:
                        raise VersionExistsError(
                            f"{name}/{version} exists; versions never change"
                        ) from exc
                    continue
                _fsync(directory)
                return candidate
            raise VersionExistsError(f"no free version name for {name!r}")  # pragma: no cover
        finally:
            shutil.rmtree(temp, ignore_errors=True)  # gone already after a rename

    @staticmethod
    def _auto_versions(directory: Path) -> Iterator[str]:
        numbers = [
            int(match[1])
            for entry in directory.iterdir()
            if (match := _AUTO.fullmatch(entry.name)) is not None
        ]
        start = max(numbers, default=0) + 1
        return (f"v{n}" for n in range(start, start + _AUTO_ATTEMPTS))

    def _manifest(self, name: str, version: str, fields: Mapping[str, Any]) -> Manifest:
        created = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        manifest = Manifest(name=name, version=version, created=created, **fields)
        if self._key is None:
            return manifest
        signed = compute_hmac(manifest.to_json(), self._key)
        return Manifest(name=name, version=version, created=created, hmac=signed, **fields)

    def leftovers(self) -> list[Path]:
        """
        Return what unfinished saves left behind: ``.tmp-*`` entries in model directories.

        A save that is killed (or whose machine stops) leaves its temporary
        directory; it is never a version, but it takes space, and ``git add``
        of the store would pick it up. See :meth:`clean`.
        """
        return sorted(
            entry
            for name in self.models()
            for entry in (self.root / name).iterdir()
            if entry.name.startswith(_TEMP_PREFIX)
        )

    def clean(self, *, older_than: float = 3600.0) -> list[Path]:
        """
        Remove the :meth:`leftovers` not modified for *older_than* seconds; return them.

        A younger one may belong to a save still running, whose rename would
        then fail (it leaves no version either way).
        """
        deadline = time.time() - older_than
        removed = []
        for entry in self.leftovers():
            try:
                if entry.lstat().st_mtime > deadline:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue  # its save finished, or another clean took it
            removed.append(entry)
        return removed

    def alias(self, name: str, alias: str, version: str) -> None:
        """
        Point *alias* (``production``, ``staging``) at *version*, atomically.

        ``aliases.json`` is rewritten to a temporary file and renamed over
        the old one, so a reader sees the old or the new mapping, never a
        mix; writers take a lock so that two moves do not lose one.

        Raises:
            ModelNotFoundError: The store has no model *name*.
            VersionNotFoundError: *version* is not a version of it.
            IntegrityError: With a key: *version* is not signed with it.
            ValueError: *alias* is not a valid name, is ``latest``, looks like
                a numbered version (``v3``) or is a version's name.
        """
        _check_name(alias, "alias")
        directory = self._model_dir(name)
        if _AUTO.fullmatch(alias) or (directory / alias).exists():
            raise ValueError(f"alias {alias!r} would hide a version of the same name")
        if not (isinstance(version, str) and NAME.fullmatch(version)):
            raise VersionNotFoundError(f"model {name!r} has no version {version!r}")
        if not (directory / version / MANIFEST).is_file():
            raise VersionNotFoundError(f"model {name!r} has no version {version!r}")
        self.manifest(name, version)  # with a key, only a signed version gets an alias
        with self._locked(directory):
            aliases = self._read_aliases(directory)
            aliases[alias] = version
            text = json.dumps(aliases, sort_keys=True, indent=2) + "\n"
            fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(text.encode())
                    file.flush()
                    os.fsync(file.fileno())
                os.chmod(temp, 0o644)
                os.replace(temp, directory / ALIASES)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
            _fsync(directory)

    @staticmethod
    @contextlib.contextmanager
    def _locked(directory: Path) -> Iterator[None]:
        import fcntl  # POSIX; imported here so the module imports everywhere

        # the model's directory itself is the lock: no lock file for Git to see
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def parse_spec(spec: str) -> tuple[ModelStore, str, str] | None:
    """
    Read ``ROOT/name[@ref]`` as ``(store, name, ref)``; ``None`` when *spec* is not one.

    *spec* is a store reference when ``ROOT/name`` is a directory; *ref* is
    a version or an alias (``"latest"`` when left out). The store reads its
    key from ``MODELDEPLOY_STORE_KEY``.

    .. versionadded:: 0.1.0
    """
    path, ref = spec, LATEST
    head, at, tail = spec.rpartition("@")
    if at and "/" not in tail:
        path, ref = head, tail or LATEST
    model_dir = Path(path)
    if not (NAME.fullmatch(model_dir.name) and model_dir.is_dir()):
        return None
    return ModelStore(model_dir.parent), model_dir.name, ref


def load_spec(spec: str) -> Predictor | None:
    """
    Load ``ROOT/name[@ref]`` from a store, or return ``None`` when *spec* is not one.

    Read as :func:`parse_spec` reads it; pickled artifacts need the store's key.

    .. versionadded:: 0.1.0
    """
    parsed = parse_spec(spec)
    if parsed is None:
        return None
    store, name, ref = parsed
    return store.load(name, ref)
