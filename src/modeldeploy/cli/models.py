"""
``modeldeploy models``: list, inspect, save, alias, verify and clean a model store.

.. code-block:: console

    $ modeldeploy models save models iris model.onnx --format onnx --alias staging
    v1
    $ modeldeploy models list models iris
    $ modeldeploy models alias models iris production v1
    $ modeldeploy models verify models
    $ modeldeploy serve models/iris@production

``ROOT`` is the store's directory (see :class:`~modeldeploy.ModelStore`). The
store's key comes from ``MODELDEPLOY_STORE_KEY``, never from the command line,
where other users of the machine could read it. Exit status: 0, 1 when a
version fails its check or the store refuses an operation, 2 for a usage error.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from ..errors import ModelDeployError
from ..store import KEY_ENV, LATEST, ModelStore
from ..store.manifest import Manifest, signature_from_json
from ._args import Commands, UsageError

__all__ = ["add_parser"]

_FAILED: Final = 1


def add_parser(commands: Commands) -> None:
    """Add the ``models`` subcommand and its own subcommands to the ``modeldeploy`` parser."""
    models = commands.add_parser(
        "models",
        help="list, inspect, save, alias and verify the versions of a model store",
        description=(
            "Work with a model store: ROOT/NAME/VERSION directories holding an artifact and "
            "its manifest.json. The store's HMAC key, if any, is read from "
            f"{KEY_ENV}."
        ),
    )
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="the models of the store, or the versions of one model"
    )
    listing.add_argument("root", metavar="ROOT", help="the store's directory")
    listing.add_argument("name", metavar="NAME", nargs="?", help="list this model's versions")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", help="print the manifest of a version")
    show.add_argument("root", metavar="ROOT", help="the store's directory")
    show.add_argument("ref", metavar="NAME[@REF]", help="a model, and a version or alias")
    show.set_defaults(run=_show)

    save = actions.add_parser("save", help="save an artifact file as a new version")
    save.add_argument("root", metavar="ROOT", help="the store's directory")
    save.add_argument("name", metavar="NAME", help="the model's name")
    save.add_argument("file", metavar="FILE", type=Path, help="the artifact (model.onnx...)")
    save.add_argument(
        "--format", required=True, help="the artifact's format: onnx, joblib, lightgbm..."
    )
    save.add_argument("--version", help="the version's name (default: the next vN)")
    save.add_argument(
        "--signature",
        type=Path,
        metavar="JSON_FILE",
        help='inputs and outputs: {"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}',
    )
    save.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="kept in the manifest; VALUE is read as JSON when it parses, else as text",
    )
    save.add_argument(
        "--reference", type=Path, metavar="JSON_FILE", help="reference statistics for drift"
    )
    save.add_argument(
        "--factory", metavar="MODULE:ATTR", help="builds the model from the loaded artifact"
    )
    save.add_argument("--alias", action="append", default=[], help="then point ALIAS at it")
    save.set_defaults(run=_save)

    alias = actions.add_parser("alias", help="point an alias at a version, atomically")
    alias.add_argument("root", metavar="ROOT", help="the store's directory")
    alias.add_argument("name", metavar="NAME", help="the model's name")
    alias.add_argument("alias", metavar="ALIAS", help="production, staging...")
    alias.add_argument("version", metavar="VERSION", help="the version it names")
    alias.set_defaults(run=_alias)

    verify = actions.add_parser(
        "verify", help="check manifests, signatures and file hashes without loading"
    )
    verify.add_argument("root", metavar="ROOT", help="the store's directory")
    verify.add_argument(
        "ref", metavar="NAME[@REF]", nargs="?", help="check one model or version (default: all)"
    )
    verify.set_defaults(run=_verify)

    clean = actions.add_parser(
        "clean", help="remove what killed saves left behind (.tmp-* in model directories)"
    )
    clean.add_argument("root", metavar="ROOT", help="the store's directory")
    clean.add_argument(
        "--older-than",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="leave younger ones, which may be saves in progress (default: %(default)s)",
    )
    clean.set_defaults(run=_clean)


def _store(options: argparse.Namespace) -> ModelStore:
    root = Path(options.root)
    if not root.is_dir() and options.action != "save":
        raise UsageError(f"{options.root!r} is not a directory")
    return ModelStore(root)


def _split(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, version or LATEST


def _fail(options: argparse.Namespace, error: Exception) -> int:
    message = error.message if isinstance(error, ModelDeployError) else str(error)
    print(f"modeldeploy models {options.action}: error: {message}", file=sys.stderr)
    return _FAILED


def _list(options: argparse.Namespace) -> int:
    store = _store(options)
    try:
        rows = _version_rows(store, options.name) if options.name else _model_rows(store)
    except ModelDeployError as exc:
        return _fail(options, exc)
    if options.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    elif rows:
        _print_table(rows)
    return 0


def _model_rows(store: ModelStore) -> list[dict[str, Any]]:
    rows = []
    for name in store.models():
        versions = store.versions(name)
        aliases = store.aliases(name)
        rows.append(
            {
                "model": name,
                "versions": len(versions),
                "latest": versions[-1] if versions else "",
                "aliases": " ".join(f"{a}={v}" for a, v in sorted(aliases.items())),
            }
        )
    return rows


def _version_rows(store: ModelStore, name: str) -> list[dict[str, Any]]:
    aliases = store.aliases(name)
    rows = []
    for version in store.versions(name):
        try:
            manifest: Manifest | None = store.manifest(name, version)
        except ModelDeployError:
            manifest = None  # `verify` says why
        rows.append(
            {
                "version": version,
                "created": manifest.created[:19] if manifest else "?",
                "format": manifest.format if manifest else "?",
                "bytes": sum(f.size for f in manifest.files.values()) if manifest else 0,
                "signed": "yes" if manifest and manifest.hmac else "no",
                "aliases": " ".join(sorted(a for a, v in aliases.items() if v == version)),
            }
        )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())


def _show(options: argparse.Namespace) -> int:
    store = _store(options)
    name, ref = _split(options.ref)
    try:
        manifest = store.manifest(name, ref)
    except ModelDeployError as exc:
        return _fail(options, exc)
    print(manifest.dumps().decode(), end="")
    return 0


def _read_json(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{what} {str(path)!r} cannot be read as JSON: {exc}") from exc


def _metadata(pairs: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"--metadata {pair!r} is not KEY=VALUE")
        try:
            metadata[key] = json.loads(value)
        except ValueError:
            metadata[key] = value
    return metadata


def _save(options: argparse.Namespace) -> int:
    if not options.file.is_file():
        raise UsageError(f"{str(options.file)!r} is not a file")
    signature_data = _read_json(options.signature, "--signature")
    try:
        signature = signature_from_json(signature_data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"--signature is not a signature: {exc!r}") from exc
    store = _store(options)
    try:
        version = store.save_file(
            options.name,
            options.file,
            format=options.format,
            signature=signature,
            metadata=_metadata(options.metadata),
            reference=_read_json(options.reference, "--reference"),
            factory=options.factory,
            version=options.version,
        )
        for alias in options.alias:
            store.alias(options.name, alias, version)
    except (ModelDeployError, ValueError, TypeError) as exc:
        return _fail(options, exc)
    print(version)
    return 0


def _alias(options: argparse.Namespace) -> int:
    store = _store(options)
    try:
        store.alias(options.name, options.alias, options.version)
    except (ModelDeployError, ValueError) as exc:
        return _fail(options, exc)
    return 0


def _verify(options: argparse.Namespace) -> int:
    store = _store(options)
    try:
        if options.ref is None:
            targets = [(name, v) for name in store.models() for v in store.versions(name)]
        else:
            name, ref = _split(options.ref)
            targets = (
                [(name, v) for v in store.versions(name)]
                if "@" not in options.ref
                else [(name, store.resolve(name, ref))]
            )
    except ModelDeployError as exc:
        return _fail(options, exc)
    failed = sum(not _check(store, name, version) for name, version in targets)
    for leftover in store.leftovers() if options.ref is None else []:
        relative = leftover.relative_to(store.root)
        print(f"left    {relative}: an unfinished save, not a version (see 'models clean')")
    signed = "signature and " if store.is_signed else ""
    print(f"{len(targets) - failed} of {len(targets)} versions passed ({signed}hash checks)")
    return _FAILED if failed else 0


def _check(store: ModelStore, name: str, version: str) -> bool:
    try:
        store.verify(name, version)
    except ModelDeployError as exc:
        print(f"FAILED  {name}/{version}: {exc.message}")
        return False
    print(f"ok      {name}/{version}")
    return True


def _clean(options: argparse.Namespace) -> int:
    store = _store(options)
    for removed in store.clean(older_than=options.older_than):
        print(f"removed {removed.relative_to(store.root)}")
    return 0
