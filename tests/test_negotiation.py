"""Tests for modeldeploy.negotiation: Accept parsing, the registry, the Negotiator."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import serializers
from modeldeploy.errors import NotAcceptableError, UnsupportedMediaTypeError
from modeldeploy.interfaces import Serializer
from modeldeploy.negotiation import (
    BUILTIN_MEDIA_TYPES,
    ENTRY_POINT_GROUP,
    Negotiator,
    SerializerRegistry,
    media_type_of,
    parse_accept,
)


class Fake:
    """A serializer that only has a name and media types."""

    def __init__(self, name: str, *media_types: str, **options: Any) -> None:
        self.name = name
        self.media_types = media_types
        self.media_type = media_types[0]
        self.options = options

    def __repr__(self) -> str:
        return f"Fake({self.name!r})"

    def dumps(self, obj: Any, /) -> bytes:
        return repr(obj).encode()

    def loads(self, data: bytes | memoryview, /) -> Any:
        return bytes(data)


JSON = Fake("json", "application/json", "text/json")
MSGPACK = Fake("msgpack", "application/msgpack", "application/x-msgpack")
CSV = Fake("csv", "text/csv")


class TestMediaTypeOf:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("application/json", "application/json"),
            ("Application/JSON; charset=utf-8", "application/json"),
            ("  text/csv ;header=present", "text/csv"),
            ("", ""),
        ],
    )
    def test_examples(self, header: str, expected: str) -> None:
        assert media_type_of(header) == expected


class TestParseAccept:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("", (("*/*", 1.0),)),
            ("application/json", (("application/json", 1.0),)),
            (
                "text/html;q=0.5, application/msgpack",
                (("text/html", 0.5), ("application/msgpack", 1.0)),
            ),
            ("*", (("*/*", 1.0),)),
            ("text", (("text/*", 1.0),)),
            ("Application/JSON;Q=0.3", (("application/json", 0.3),)),
            ("a/b ; level=1 ; q = 0.25", (("a/b", 0.25),)),
            ("a/b;q=2", (("a/b", 1.0),)),
            ("a/b;q=-1", (("a/b", 0.0),)),
            ("a/b;q=high", (("a/b", 0.0),)),
            ("a/b;q=", (("a/b", 0.0),)),
            ("a/b;q=nan", (("a/b", 0.0),)),
            ("a/b;q=inf", (("a/b", 0.0),)),
            (" , ;q=1,", (("*/*", 1.0),)),
        ],
    )
    def test_examples(self, header: str, expected: tuple[tuple[str, float], ...]) -> None:
        assert parse_accept(header) == expected

    @given(st.text())
    def test_never_raises(self, header: str) -> None:
        ranges = parse_accept(header)
        assert ranges
        for media_range, q in ranges:
            assert "/" in media_range
            assert media_range == media_range.lower()
            assert 0.0 <= q <= 1.0  # NaN fails this too

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["application/json", "text/*", "*/*", "application/msgpack"]),
                st.integers(0, 1000).map(lambda n: n / 1000),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_reads_what_a_client_writes(self, ranges: list[tuple[str, float]]) -> None:
        header = ", ".join(f"{media_range};q={q}" for media_range, q in ranges)
        assert parse_accept(header) == tuple(ranges)


class TestNegotiatorDecoder:
    negotiator = Negotiator([JSON, MSGPACK])

    @pytest.mark.parametrize(
        ("content_type", "expected"),
        [
            ("application/json", JSON),
            ("text/json; charset=utf-8", JSON),
            ("APPLICATION/X-MSGPACK", MSGPACK),
            ("application/msgpack", MSGPACK),
        ],
    )
    def test_any_media_type_of_a_candidate(self, content_type: str, expected: Fake) -> None:
        assert self.negotiator.decoder(content_type) is expected
        assert self.negotiator.decoder(content_type) is expected  # cached answer agrees

    @pytest.mark.parametrize("content_type", ["", "text/csv", "application/*", "*/*", "json"])
    def test_unsupported(self, content_type: str) -> None:
        with pytest.raises(UnsupportedMediaTypeError) as caught:
            self.negotiator.decoder(content_type)
        assert "application/json" in caught.value.message  # tells the client what works
        assert caught.value.http_status == 415

    def test_earlier_candidate_wins_a_shared_media_type(self) -> None:
        other = Fake("other", "application/json")
        assert Negotiator([JSON, other]).decoder("application/json") is JSON
        assert Negotiator([other, JSON]).decoder("application/json") is other


class TestNegotiatorEncoder:
    negotiator = Negotiator([JSON, MSGPACK, CSV])

    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            ("", JSON),
            ("*/*", JSON),
            ("application/msgpack", MSGPACK),
            ("application/x-msgpack", MSGPACK),
            ("text/*", JSON),  # text/json is one of json's media types
            ("text/csv, application/json", JSON),  # equal q: our order decides
            ("text/csv, application/json;q=0.9", CSV),
            ("application/json;q=0.1, */*;q=0.5", MSGPACK),
            ("application/*;q=0.2, application/msgpack;q=0.5", MSGPACK),
            ("application/json;q=0, */*", MSGPACK),
            ("application/json;q=0, application/msgpack;q=0, */*", CSV),
            ("text/*;q=0, */*;q=0.1", MSGPACK),  # text/json;q=0 excludes json
            ("*/*;q=0.1, text/csv;q=0.2", CSV),
        ],
    )
    def test_choice(self, accept: str, expected: Fake) -> None:
        assert self.negotiator.encoder(accept) is expected
        assert self.negotiator.encoder(accept) is expected  # cached answer agrees

    def test_most_specific_range_decides(self) -> None:
        # */* accepts csv, but the more specific text/csv;q=0 refuses it
        with pytest.raises(NotAcceptableError):
            Negotiator([CSV]).encoder("*/*, text/csv;q=0")
        assert Negotiator([CSV]).encoder("text/csv;q=0.1, */*;q=0") is CSV

    @pytest.mark.parametrize("accept", ["*/*", "", "application/*", "text/csv, */*;q=1"])
    def test_preferred_wins_ties(self, accept: str) -> None:
        assert self.negotiator.encoder(accept, preferred=MSGPACK) is MSGPACK

    def test_preferred_does_not_beat_a_higher_q(self) -> None:
        chosen = self.negotiator.encoder("application/json, */*;q=0.5", preferred=MSGPACK)
        assert chosen is JSON

    def test_preferred_outside_the_candidates_is_ignored(self) -> None:
        stranger = Fake("stranger", "application/x-stranger")
        assert self.negotiator.encoder("*/*", preferred=stranger) is JSON

    def test_cache_keeps_preferred_apart(self) -> None:
        negotiator = Negotiator([JSON, MSGPACK])
        assert negotiator.encoder("*/*", preferred=MSGPACK) is MSGPACK
        assert negotiator.encoder("*/*") is JSON
        assert negotiator.encoder("*/*", preferred=JSON) is JSON

    @pytest.mark.parametrize(
        "accept", ["text/html", "image/*", "*/*;q=0", "application/json;q=0, text/*;q=0"]
    )
    def test_not_acceptable(self, accept: str) -> None:
        with pytest.raises(NotAcceptableError) as caught:
            Negotiator([JSON, MSGPACK]).encoder(accept)
        assert caught.value.http_status == 406
        assert "application/msgpack" in caught.value.message

    @given(st.text())
    def test_any_header_gives_a_choice_or_not_acceptable(self, accept: str) -> None:
        try:
            chosen = self.negotiator.encoder(accept)
        except NotAcceptableError:
            return
        assert chosen in (JSON, MSGPACK, CSV)

    def test_cache_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(Negotiator, "_CACHE_LIMIT", 3)
        negotiator = Negotiator([JSON])
        for i in range(10):
            assert negotiator.encoder(f"application/json;level={i}") is JSON
            assert negotiator.decoder(f"application/json;v={i}") is JSON
        assert len(negotiator._encoders) == 3
        assert len(negotiator._decoders) == 3

    def test_needs_a_serializer(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            Negotiator([])

    def test_media_types_in_preference_order(self) -> None:
        assert self.negotiator.media_types == [
            "application/json",
            "application/msgpack",
            "text/csv",
        ]


class TestRegistry:
    def test_builtin_names(self) -> None:
        assert {"json", "msgpack", "pickle", "protobuf", "xml"} <= set(serializers.names())
        assert serializers.names() == sorted(serializers.names())

    def test_builtin_media_types_are_distinct(self) -> None:
        seen = [mt for media_types in BUILTIN_MEDIA_TYPES.values() for mt in media_types]
        assert len(seen) == len(set(seen))
        assert all(mt == media_type_of(mt) for mt in seen)

    def test_register_by_name_and_media_type(self) -> None:
        registry = SerializerRegistry()
        registry.register(
            "csv", lambda **options: Fake("csv", "text/csv", **options), ["Text/CSV"]
        )
        assert "csv" in registry.names()
        assert registry.get("csv").name == "csv"
        assert registry.get("text/csv; header=present").name == "csv"
        assert registry.get("csv", delimiter=";").options == {"delimiter": ";"}  # type: ignore[attr-defined]

    def test_register_replaces_a_builtin(self) -> None:
        registry = SerializerRegistry()
        registry.register("json", lambda: JSON, ["application/json"])
        assert registry.get("json") is JSON
        assert registry.get("application/json") is JSON
        assert registry.get("text/json") is JSON  # the builtin's aliases follow the name

    def test_unknown_key(self) -> None:
        registry = SerializerRegistry()
        for key in ("yaml", "application/yaml", "", "*/*"):
            with pytest.raises(UnsupportedMediaTypeError):
                registry.get(key)

    def test_builtin_is_imported_lazily(self) -> None:
        registry = SerializerRegistry()
        factory = registry.factory("application/x-protobuf")
        assert factory.__module__ == "modeldeploy.serializers.protobuf"
        assert registry.factory("protobuf") is factory
        assert isinstance(registry.get("protobuf"), Serializer)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install a third-party serializer as a real distribution on sys.path."""
    (tmp_path / "mdfakeplugin.py").write_text(
        textwrap.dedent(
            """
            class Yaml:
                name = "yaml"
                media_types = ("application/yaml", "application/x-yaml")
                media_type = media_types[0]

                def __init__(self, **options):
                    self.options = options

                def dumps(self, obj, /):
                    return repr(obj).encode()

                def loads(self, data, /):
                    return bytes(data).decode()
            """
        )
    )
    dist_info = tmp_path / "mdfakeplugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mdfakeplugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nyaml = mdfakeplugin:Yaml\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mdfakeplugin", raising=False)
    yield tmp_path
    sys.modules.pop("mdfakeplugin", None)


class TestEntryPoints:
    def test_names_include_entry_points(self, plugin: Path) -> None:
        registry = SerializerRegistry()
        assert "yaml" in registry.names()
        assert "json" in registry.names()

    def test_lookup_by_media_type_loads_entry_points(self, plugin: Path) -> None:
        registry = SerializerRegistry()
        found = registry.get("application/x-yaml", indent=2)
        assert found.name == "yaml"
        assert found.options == {"indent": 2}  # type: ignore[attr-defined]
        assert isinstance(found, Serializer)
        assert registry.get("yaml").media_type == "application/yaml"

    def test_unknown_key_after_entry_points(self, plugin: Path) -> None:
        registry = SerializerRegistry()
        with pytest.raises(UnsupportedMediaTypeError):
            registry.get("application/toml")
        assert "yaml" in registry.names()

    def test_without_the_plugin(self) -> None:
        assert "yaml" not in SerializerRegistry().names()
