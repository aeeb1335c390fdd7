"""ModelStore: versions, aliases, atomic saves, integrity checks and trust."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import modeldeploy as md
from modeldeploy.store import KEY_ENV, ModelStore, _store
from tests import strategies

KEY = "test-key"


class Scaler:
    """A model built from data: what a data format's factory returns."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: float) -> float:
        return self.factor * x


def scaler(params: dict) -> Scaler:
    return Scaler(params["factor"])


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
def signed(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models", key=KEY)


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), [0, 1, 1])


def save_scaler(store: ModelStore, factor: float = 2.0, **options: object) -> str:
    return store.save("scale", {"factor": factor}, format="json", factory=scaler, **options)  # type: ignore[arg-type]


# -- versions ---------------------------------------------------------------------------


class TestVersions:
    def test_auto_versions_count_up_and_latest_is_the_last(self, store: ModelStore) -> None:
        assert [save_scaler(store, f) for f in (1.0, 2.0, 3.0)] == ["v1", "v2", "v3"]
        assert store.versions("scale") == ["v1", "v2", "v3"]
        assert store.resolve("scale") == "v3"
        assert store.load("scale", trusted=True).predict([1.0]) == [3.0]
        assert store.load("scale", "v1", trusted=True).predict([1.0]) == [1.0]
        assert store.models() == ["scale"]

    def test_a_given_version_name_is_kept(self, store: ModelStore) -> None:
        assert save_scaler(store, version="2026-06-01") == "2026-06-01"
        assert save_scaler(store) == "v1"  # numbering ignores names of other forms
        assert store.versions("scale") == ["2026-06-01", "v1"]

    def test_numbering_follows_the_highest_number(self, store: ModelStore) -> None:
        save_scaler(store, version="v7")
        assert save_scaler(store) == "v8"

    def test_a_version_is_immutable(self, store: ModelStore) -> None:
        save_scaler(store, 1.0, version="gold")
        with pytest.raises(md.VersionExistsError) as caught:
            save_scaler(store, 5.0, version="gold")
        assert caught.value.http_status == 409
        assert store.load("scale", "gold", trusted=True).predict([1.0]) == [1.0]
        assert sorted(p.name for p in (store.root / "scale").iterdir()) == ["gold"]

    @pytest.mark.parametrize("name", ["", "latest", ".hidden", "a/b", "a@b", "x" * 129, "é"])
    def test_invalid_names_are_refused(self, store: ModelStore, name: str) -> None:
        with pytest.raises(ValueError, match="not valid"):
            store.save(name, [1], format="json")
        with pytest.raises(ValueError, match="not valid"):
            store.save("ok", [1], format="json", version=name)

    def test_the_aliases_file_name_is_reserved(self, store: ModelStore) -> None:
        with pytest.raises(ValueError, match="not a version name"):
            save_scaler(store, version="aliases.json")

    def test_unknown_names_are_typed_errors(self, store: ModelStore) -> None:
        with pytest.raises(md.ModelNotFoundError):
            store.load("nothing")
        save_scaler(store)
        for ref in ("v9", "production", "../scale", ""):
            with pytest.raises(md.VersionNotFoundError):
                store.load("scale", ref)
        assert store.models() == ["scale"]
        assert ModelStore(store.root / "absent").models() == []

    def test_unknown_format_is_refused_before_anything_is_written(self, store: ModelStore) -> None:
        with pytest.raises(md.ModelLoadError, match="unknown model format 'nope'"):
            store.save("m", [1], format="nope")
        assert not store.root.exists()

    def test_concurrent_saves_get_distinct_versions(self, store: ModelStore) -> None:
        results: list[str] = []

        def save_some() -> None:
            results.extend(save_scaler(store, float(i)) for i in range(5))

        threads = [threading.Thread(target=save_some) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == sorted(f"v{i}" for i in range(1, 16))
        assert len(store.versions("scale")) == 15


# -- manifest ---------------------------------------------------------------------------


class TestManifest:
    def test_written_deterministically(self, store: ModelStore) -> None:
        signature = md.Signature([md.TensorSpec("x", "float64", ())], [md.TensorSpec("y")])
        version = save_scaler(
            store, signature=signature, metadata={"z": 1, "a": [1.5, "é"]}, reference={"m": 0}
        )
        raw = (store.root / "scale" / version / "manifest.json").read_bytes()
        assert raw.endswith(b"}\n") and b"\r" not in raw
        data = json.loads(raw)
        assert list(data) == sorted(data)
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
        assert raw == (text + "\n").encode()
        assert "é" in raw.decode()  # readable in a diff, not \u escapes
        artifact = (store.root / "scale" / version / "model.json").read_bytes()
        assert data["files"] == {
            "model.json": {"sha256": _sha256(artifact), "size": len(artifact)}
        }
        assert data["factory"] == "tests.store.test_store:scaler"
        assert data["format"] == "json"

    def test_signature_metadata_and_reference_come_back(self, store: ModelStore) -> None:
        signature = md.Signature([md.TensorSpec("x", "float64", (2, -1))], [md.TensorSpec("y")])
        reference = {"features": {"x": {"mean": 0.5, "histogram": [1, 2, 3]}}}
        save_scaler(store, signature=signature, metadata={"auc": 0.9}, reference=reference)
        manifest = store.manifest("scale")
        assert manifest.signature == signature
        assert dict(manifest.metadata) == {"auc": 0.9}
        assert manifest.reference == reference
        assert manifest.hmac is None
        loaded = store.load("scale", trusted=True)
        assert loaded.signature == signature
        assert (loaded.name, loaded.version) == ("scale", "v1")  # type: ignore[attr-defined]

    @pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}])
    def test_metadata_must_be_json(self, store: ModelStore, bad: dict) -> None:
        with pytest.raises((TypeError, ValueError), match="JSON"):
            save_scaler(store, metadata=bad)
        with pytest.raises((TypeError, ValueError), match="JSON"):
            save_scaler(store, reference=bad)

    def test_factory_must_be_importable(self, store: ModelStore) -> None:
        with pytest.raises(ValueError, match="importable"):
            store.save("m", [1], format="json", factory=lambda v: v)


# -- aliases ----------------------------------------------------------------------------


class TestAliases:
    def test_alias_moves(self, store: ModelStore) -> None:
        save_scaler(store, 1.0)
        save_scaler(store, 2.0)
        store.alias("scale", "production", "v1")
        store.alias("scale", "staging", "v2")
        assert store.load("scale", "production", trusted=True).predict([1.0]) == [1.0]
        store.alias("scale", "production", "v2")
        assert store.aliases("scale") == {"production": "v2", "staging": "v2"}
        assert store.load("scale", "production", trusted=True).version == "v2"  # type: ignore[attr-defined]
        raw = (store.root / "scale" / "aliases.json").read_text()
        assert raw == '{\n  "production": "v2",\n  "staging": "v2"\n}\n'
        assert sorted(p.name for p in (store.root / "scale").iterdir()) == [
            "aliases.json",
            "v1",
            "v2",
        ]  # no lock or temporary file left for Git to see

    @pytest.mark.parametrize("alias", ["latest", "v3", "v1", "a/b"])
    def test_alias_names_that_would_confuse_are_refused(
        self, store: ModelStore, alias: str
    ) -> None:
        save_scaler(store)
        with pytest.raises(ValueError, match=r"not valid|hide"):
            store.alias("scale", alias, "v1")

    def test_alias_to_a_missing_version(self, store: ModelStore) -> None:
        save_scaler(store)
        with pytest.raises(md.VersionNotFoundError):
            store.alias("scale", "production", "v2")
        with pytest.raises(md.ModelNotFoundError):
            store.alias("other", "production", "v1")

    def test_a_version_cannot_take_an_alias_name(self, store: ModelStore) -> None:
        save_scaler(store)
        store.alias("scale", "production", "v1")
        with pytest.raises(ValueError, match="alias"):
            save_scaler(store, version="production")

    def test_readers_never_see_a_half_written_alias(self, store: ModelStore) -> None:
        save_scaler(store, 1.0)
        save_scaler(store, 2.0)
        store.alias("scale", "production", "v1")
        stop = threading.Event()
        seen: set[str] = set()
        failures: list[BaseException] = []

        def read() -> None:
            while not stop.is_set():
                try:
                    seen.add(store.resolve("scale", "production"))
                except BaseException as exc:  # any failure fails the test
                    failures.append(exc)
                    return

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(200):
                store.alias("scale", "production", f"v{1 + i % 2}")
        finally:
            stop.set()
            reader.join()
        assert failures == []
        assert seen <= {"v1", "v2"} and seen


# -- atomic saves -----------------------------------------------------------------------


class TestAtomicSave:
    def test_a_failed_save_leaves_nothing(
        self, store: ModelStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        save_scaler(store, 1.0)
        real_write = _store._write

        def write_then_fail(path: Path, data: bytes) -> None:
            if path.name == "manifest.json":
                real_write(path, data[: len(data) // 2])
                raise OSError(28, "No space left on device")
            real_write(path, data)

        monkeypatch.setattr(_store, "_write", write_then_fail)
        with pytest.raises(OSError, match="No space"):
            save_scaler(store, 2.0)
        assert [p.name for p in (store.root / "scale").iterdir()] == ["v1"]
        assert store.versions("scale") == ["v1"]

    def test_a_killed_save_leaves_no_version(self, store: ModelStore, tmp_path: Path) -> None:
        save_scaler(store, 1.0)
        ready = tmp_path / "ready"
        script = textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from modeldeploy.store import ModelStore, _store

            real_write = _store._write

            def write_and_hang(path, data):
                real_write(path, data[: len(data) // 2])  # half the artifact
                Path({str(ready)!r}).touch()
                time.sleep(60)

            _store._write = write_and_hang
            ModelStore({str(store.root)!r}).save("scale", {{"factor": 9.0}}, format="json")
            """
        )
        child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                assert child.poll() is None, "the saving process died before writing"
                assert time.monotonic() < deadline, "the saving process never wrote"
                time.sleep(0.02)  # polling interval of a bounded wait
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=10)
        leftovers = [p.name for p in (store.root / "scale").iterdir() if p.name != "v1"]
        assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")  # the killed save
        assert store.versions("scale") == ["v1"]
        assert store.load("scale", trusted=True).predict([1.0]) == [1.0]
        with pytest.raises(md.VersionNotFoundError):
            store.load("scale", leftovers[0])
        assert save_scaler(store, 3.0) == "v2"
        assert store.load("scale", trusted=True).predict([1.0]) == [3.0]
        # what the killed save left is found, kept while young, then removed
        assert store.leftovers() == [store.root / "scale" / leftovers[0]]
        assert store.clean() == []
        assert store.clean(older_than=0) == [store.root / "scale" / leftovers[0]]
        assert store.leftovers() == []
        assert store.versions("scale") == ["v1", "v2"]


# -- integrity --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _edit_manifest(path: Path, change: object) -> None:
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class TestIntegrity:
    def test_tampered_artifact_same_size(self, store: ModelStore) -> None:
        version = save_scaler(store, 2.0)
        artifact = store.root / "scale" / version / "model.json"
        artifact.write_bytes(artifact.read_bytes().replace(b"2.0", b"9.0"))
        with pytest.raises(md.IntegrityError, match="does not match its sha256") as caught:
            store.load("scale")
        assert (caught.value.code, caught.value.grpc_status) == ("integrity_error", "DATA_LOSS")
        with pytest.raises(md.IntegrityError):
            store.verify("scale")

    def test_tampered_artifact_other_size(self, store: ModelStore) -> None:
        version = save_scaler(store)
        artifact = store.root / "scale" / version / "model.json"
        artifact.write_bytes(artifact.read_bytes() + b" ")
        with pytest.raises(md.IntegrityError, match="wrong size"):
            store.load("scale")

    def test_missing_file(self, store: ModelStore) -> None:
        version = save_scaler(store)
        (store.root / "scale" / version / "model.json").unlink()
        with pytest.raises(md.IntegrityError, match="missing"):
            store.load("scale")

    def test_tampered_manifest_with_a_key(self, signed: ModelStore) -> None:
        version = save_scaler(signed)
        manifest = signed.root / "scale" / version / "manifest.json"
        _edit_manifest(manifest, lambda d: d["metadata"].update(approved=True))
        with pytest.raises(md.IntegrityError, match="signature does not match"):
            signed.load("scale")

    def test_tampered_manifest_and_artifact_without_a_key(self, store: ModelStore) -> None:
        # rewriting both the file and its hash defeats a hash alone: that is what keys are for
        version = save_scaler(store)
        manifest = store.root / "scale" / version / "manifest.json"
        _edit_manifest(manifest, lambda d: d["files"]["model.json"].update(size=1))
        with pytest.raises(md.IntegrityError, match="wrong size"):
            store.load("scale")

    def test_wrong_key(self, signed: ModelStore) -> None:
        save_scaler(signed)
        with pytest.raises(md.IntegrityError, match="signature does not match"):
            ModelStore(signed.root, key="another key").load("scale")

    def test_unsigned_version_in_a_signed_store(self, store: ModelStore) -> None:
        save_scaler(store)
        signed = ModelStore(store.root, key=KEY)
        with pytest.raises(md.IntegrityError, match="not signed"):
            signed.load("scale")
        with pytest.raises(md.IntegrityError, match="not signed"):
            signed.alias("scale", "production", "v1")

    def test_signed_version_loads_without_the_key(self, signed: ModelStore) -> None:
        save_scaler(signed)
        # its factory is named by the manifest, which nothing vouches for without the key
        with pytest.raises(md.UntrustedPayloadError, match="factory"):
            ModelStore(signed.root).load("scale")
        assert ModelStore(signed.root).load("scale", factory=scaler).predict([1.0]) == [2.0]

    def test_a_signed_manifest_copied_to_another_version(self, signed: ModelStore) -> None:
        save_scaler(signed, 1.0)
        save_scaler(signed, 2.0)
        model = signed.root / "scale"
        for name in ("manifest.json", "model.json"):
            (model / "v2" / name).write_bytes((model / "v1" / name).read_bytes())
        with pytest.raises(md.IntegrityError, match="describes scale/v1"):
            signed.load("scale", "v2")

    def test_half_written_version(self, store: ModelStore) -> None:
        version = save_scaler(store)
        manifest = store.root / "scale" / version / "manifest.json"
        manifest.write_bytes(manifest.read_bytes()[:100])
        with pytest.raises(md.IntegrityError, match="not valid JSON"):
            store.load("scale")
        # a directory copied without its manifest is no version at all
        manifest.unlink()
        assert store.versions("scale") == []
        with pytest.raises(md.VersionNotFoundError):
            store.load("scale", version)

    @pytest.mark.parametrize(
        "change",
        [
            lambda d: d["files"].update({"../../etc/passwd": d["files"]["model.json"]}),
            lambda d: d["files"]["model.json"].update(sha256="XYZ"),
            lambda d: d.pop("format"),
            lambda d: d.update(schema=99),
            lambda d: d.update(metadata=[1]),
        ],
        ids=["path", "sha", "no-format", "schema", "metadata-type"],
    )
    def test_malformed_manifest(self, store: ModelStore, change: object) -> None:
        version = save_scaler(store)
        _edit_manifest(store.root / "scale" / version / "manifest.json", change)
        with pytest.raises(md.IntegrityError, match="malformed"):
            store.load("scale")

    def test_key_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(KEY_ENV, KEY)
        from_env = ModelStore(tmp_path)
        assert from_env.is_signed
        save_scaler(from_env)
        assert ModelStore(tmp_path, key=KEY).verify("scale").hmac is not None
        monkeypatch.delenv(KEY_ENV)
        assert not ModelStore(tmp_path).is_signed


# -- trust ------------------------------------------------------------------------------


class TestTrust:
    def test_joblib_needs_trust(self, store: ModelStore, estimator: LogisticRegression) -> None:
        store.save("clf", estimator, format="joblib")
        with pytest.raises(md.UntrustedPayloadError, match="joblib"):
            store.load("clf")
        rows = [[0.0, 1.0], [1.0, 1.0]]
        assert store.load("clf", trusted=True).predict(rows) == estimator.predict(rows).tolist()

    def test_a_key_vouches_for_joblib(
        self, signed: ModelStore, estimator: LogisticRegression
    ) -> None:
        signed.save("clf", estimator, format="joblib")
        assert signed.load("clf").predict([[0.0, 1.0]]) == estimator.predict([[0.0, 1.0]]).tolist()

    def test_pickle_untrusted_loads_data_only(
        self, store: ModelStore, estimator: LogisticRegression
    ) -> None:
        store.save("clf", estimator, format="pickle")
        with pytest.raises(md.UntrustedPayloadError, match="not allowed"):
            store.load("clf")
        assert store.load("clf", trusted=True).predict([[1.0, 1.0]]) == [1]
        weights = np.arange(3.0)
        store.save("dot", weights, format="pickle")
        loaded = store.load("dot", factory=lambda w: lambda x: float(np.dot(w, x)))
        assert loaded.predict([[1.0, 1.0, 1.0]]) == [3.0]

    def test_a_manifest_factory_needs_trust(self, store: ModelStore) -> None:
        save_scaler(store)
        with pytest.raises(md.UntrustedPayloadError, match="factory"):
            store.load("scale")
        assert store.load("scale", trusted=True).predict([2.0]) == [4.0]

    def test_data_without_a_factory_is_not_a_model(self, store: ModelStore) -> None:
        store.save("table", {"a": 1}, format="json")
        with pytest.raises(md.ModelLoadError, match="not a model"):
            store.load("table")


def test_importing_the_store_imports_no_framework() -> None:
    code = (
        "import sys, modeldeploy.store, modeldeploy.store.formats; "
        "print(sorted(m for m in ('joblib', 'onnxruntime', 'torch', 'lightgbm', 'sklearn') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@settings(max_examples=25)
@given(value=strategies.json_values, format_name=st.sampled_from(["json", "msgpack"]))
def test_data_round_trips_through_a_version(value: object, format_name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = ModelStore(directory)
        version = store.save("data", value, format=format_name, metadata={"value": value})
        loaded = store.load("data", version, factory=lambda v: lambda _: v)
        assert loaded.predict([None]) == [value]
        assert store.manifest("data", version).metadata["value"] == value
