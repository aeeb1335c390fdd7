"""The manifest: a deterministic, lossless JSON form, and an HMAC over its canonical bytes."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import IntegrityError
from modeldeploy.store import Manifest
from modeldeploy.store.manifest import canonical_bytes, check_hmac, compute_hmac
from tests import strategies


@given(strategies.store_manifests)
def test_roundtrip(manifest: Manifest) -> None:
    raw = manifest.dumps()
    assert Manifest.from_json(json.loads(raw), "test") == manifest
    assert Manifest.from_json(json.loads(raw), "test").dumps() == raw


@given(strategies.store_manifests)
def test_written_sorted_with_lf_and_a_trailing_newline(manifest: Manifest) -> None:
    raw = manifest.dumps()
    assert raw.endswith(b"\n") and not raw.endswith(b"\n\n") and b"\r\n" not in raw
    data = json.loads(raw)
    assert list(data) == sorted(data)


@given(strategies.store_manifests, st.binary(min_size=1, max_size=32))
def test_hmac_survives_the_file_and_ignores_its_own_field(manifest: Manifest, key: bytes) -> None:
    signed = attrs.evolve(manifest, hmac=compute_hmac(manifest.to_json(), key))
    parsed = json.loads(signed.dumps())
    check_hmac(parsed, key, "test")  # what load() sees: the file, parsed
    assert canonical_bytes(parsed) == canonical_bytes(manifest.to_json())


@given(strategies.store_manifests, st.binary(min_size=1, max_size=32), strategies.store_names)
def test_any_change_breaks_the_hmac(manifest: Manifest, key: bytes, other: str) -> None:
    data = manifest.to_json()
    data["hmac"] = compute_hmac(data, key)
    for field in ("name", "version", "format"):
        changed = {**data, field: data[field] + other}
        with pytest.raises(IntegrityError, match="does not match"):
            check_hmac(changed, key, "test")
    with pytest.raises(IntegrityError, match="does not match"):
        check_hmac({**data, "metadata": {**data["metadata"], "x" + other: 1}}, key, "test")
