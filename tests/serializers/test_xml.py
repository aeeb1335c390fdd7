"""Tests of modeldeploy.serializers.xml: the element schema and hostile documents."""

from __future__ import annotations

import contextlib
import math
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest
from defusedxml import DefusedXmlException
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy import serializers
from modeldeploy.errors import DecodeError, EncodeError, ModelDeployError, PayloadTooLargeError
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES
from modeldeploy.serializers.xml import XML
from tests import docs, strategies


def nested(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


def levels(value: Any) -> int:
    """How many single-item lists wrap None (== would recurse past the limit)."""
    count = 0
    while value is not None:
        assert type(value) is list and len(value) == 1
        value, count = value[0], count + 1
    return count


def only_model_deploy_errors(serializer: XML, data: bytes) -> None:
    with contextlib.suppress(ModelDeployError):  # anything else fails the test
        serializer.loads(data)


class TestIdentity:
    def test_names_and_media_types(self) -> None:
        assert XML.name == "xml"
        assert XML.media_types == BUILTIN_MEDIA_TYPES["xml"]
        assert XML.media_type == "application/xml"

    def test_registry_builds_it_with_options(self) -> None:
        found = serializers.get("text/xml", max_depth=3)
        assert isinstance(found, XML)
        assert found.max_depth == 3

    def test_max_depth_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="max_depth"):
            XML(max_depth=0)


class TestRoundtrip:
    @given(value=strategies.xml_values)
    def test_data_model(self, value: Any) -> None:
        serializer = XML()
        data = serializer.dumps(value)
        assert strategies.nan_equal(serializer.loads(data), value)
        assert strategies.nan_equal(serializer.loads(memoryview(data)), value)
        # a standard parser reads our bytes as well-formed XML
        ET.fromstring(data)

    @given(text=st.text(alphabet=st.characters(max_codepoint=0x7F)) | strategies.text)
    def test_every_str(self, text: str) -> None:
        serializer = XML()
        assert serializer.loads(serializer.dumps({text: text})) == {text: text}

    @given(value=st.floats())
    def test_float_bits(self, value: float) -> None:
        decoded = XML().loads(XML().dumps(value))
        assert math.isnan(value) or (
            decoded == value and math.copysign(1, decoded) == math.copysign(1, value)
        )

    def test_element_schema(self) -> None:
        value = {
            "none": None,
            "flag": True,
            "n": -12,
            "x": 0.1,
            "s": "a<b & c>",
            "raw": b"\x00\xff",
            "items": [1, "two"],
            "t": np.arange(6, dtype="float32").reshape(2, 3),
        }
        assert XML().dumps(value) == (
            b'<dict><none key="none"/><bool key="flag">true</bool><int key="n">-12</int>'
            b'<float key="x">0.1</float><str key="s">a&lt;b &amp; c&gt;</str>'
            b'<bytes key="raw">AP8=</bytes>'
            b'<list key="items"><int>1</int><str>two</str></list>'
            b'<tensor key="t" dtype="float32" shape="2 3">'
            b"AAAAAAAAgD8AAABAAABAQAAAgEAAAKBA</tensor>"
            b"</dict>"
        )

    def test_converted_values(self) -> None:
        serializer = XML()
        value = (np.float32(0.5), np.int64(3), np.bool_(False), bytearray(b"a"), memoryview(b"b"))
        assert serializer.loads(serializer.dumps(value)) == [0.5, 3, False, b"a", b"b"]

    def test_characters_xml_cannot_carry_go_base64(self) -> None:
        data = XML().dumps({"k\x00": "\x01\ufffe"})
        assert b"key-base64=" in data
        assert b'encoding="base64"' in data
        assert XML().loads(data) == {"k\x00": "\x01\ufffe"}

    def test_whitespace_and_line_ends_survive(self) -> None:
        value = {" a\tb\r\nc ": " x\r\n\ty\r "}
        assert XML().loads(XML().dumps(value)) == value

    @given(array=strategies.arrays(strategies.xml_dtypes))
    def test_big_endian_arrays(self, array: np.ndarray) -> None:
        swapped = array.astype(array.dtype.newbyteorder(">"))
        decoded = XML().loads(XML().dumps(swapped))
        assert decoded.dtype == array.dtype
        assert decoded.dtype.isnative
        assert strategies.nan_equal(decoded, array)

    def test_decoded_arrays_are_writable(self) -> None:
        decoded = XML().loads(XML().dumps(np.arange(3)))
        decoded[0] = 7
        assert decoded.tolist() == [7, 1, 2]

    def test_pretty_printed_input(self) -> None:
        data = b"""<?xml version="1.0" encoding="UTF-8"?>
        <!-- a client's pretty printer -->
        <dict>
          <list key="xs">
            <int> 1 </int>
            <float>
              2.5
            </float>
            <bool>true</bool>
          </list>
          <tensor key="t" dtype="int8" shape=" 2 ">
            AQI=
          </tensor>
          <str key="s"><![CDATA[<kept>]]></str>
        </dict>
        """
        decoded = XML().loads(data)
        assert decoded["xs"] == [1, 2.5, True]
        assert decoded["t"].tolist() == [1, 2]
        assert decoded["s"] == "<kept>"

    def test_other_encodings(self) -> None:
        data = '<?xml version="1.0" encoding="UTF-16"?><str>é€</str>'.encode("utf-16")
        assert XML().loads(data) == "é€"


class TestRefused:
    @pytest.mark.parametrize(
        "value",
        [
            {1, 2},
            object(),
            1 + 2j,
            {1: "int key"},
            "lone \ud800 surrogate",
            {"key \udfff": 1},
            np.array(["a"]),
            np.array([None], dtype=object),
            10**5000,
        ],
        ids=lambda v: type(v).__name__,
    )
    def test_outside_the_data_model(self, value: Any) -> None:
        with pytest.raises(EncodeError):
            XML().dumps(value)

    def test_circular_reference(self) -> None:
        loop: list[Any] = []
        loop.append(loop)
        with pytest.raises(EncodeError, match="deeper"):
            XML().dumps(loop)

    BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<str>&lol9;</str>"""
    XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<str>&xxe;</str>"""
    EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE str SYSTEM "http://example.invalid/evil.dtd"><str>x</str>"""
    PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE str [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]><str>x</str>"""
    PLAIN_DTD = b"""<!DOCTYPE str [<!ELEMENT str (#PCDATA)>]><str>x</str>"""

    @pytest.mark.parametrize(
        "data",
        [BILLION_LAUGHS, XXE, EXTERNAL_DTD, PARAMETER_ENTITY, PLAIN_DTD],
        ids=["billion-laughs", "xxe", "external-dtd", "parameter-entity", "dtd"],
    )
    def test_dtds_entities_and_external_references(self, data: bytes) -> None:
        with pytest.raises(DecodeError, match="DTD") as info:
            XML().loads(data)
        assert isinstance(info.value.__cause__, DefusedXmlException)

    def test_undeclared_entity(self) -> None:
        with pytest.raises(DecodeError, match="well-formed"):
            XML().loads(b"<str>&lol;</str>")

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"<str>x",
            b"<str>x</int>",
            b"<str/><str/>",
            b"<unknown/>",
            b'<list xmlns="urn:x"/>',
            b"<list>text</list>",
            b"<dict>text</dict>",
            b"<int>1<int>2</int></int>",
            b"<none>x</none>",
            b"<bool>yes</bool>",
            b"<int>1_000</int>",
            b"<int>\xd9\xa3</int>",  # an Arabic-Indic digit: int() would take it
            b"<int>1.5</int>",
            b"<float>1_0.5</float>",
            b"<float>one</float>",
            b"<bytes>not base64!</bytes>",
            b"<bytes>AP8</bytes>",
            b'<str encoding="hex">00</str>',
            b'<str encoding="base64">/w==</str>',
            b'<str encoding="base64">??</str>',
            b'<int extra="1">1</int>',
            b"<dict><int>1</int></dict>",
            b'<dict><int key="a" key-base64="YQ==">1</int></dict>',
            b'<dict><int key-base64="/w==">1</int></dict>',
            b'<dict><int key="a">1</int><int key="a">2</int></dict>',
            b'<list><int key="a">1</int></list>',
            b'<tensor shape="1">AA==</tensor>',
            b'<tensor dtype="object" shape="1">AA==</tensor>',
            b'<tensor dtype="int8" shape="-1">AA==</tensor>',
            b'<tensor dtype="int8" shape="1,2">AAA=</tensor>',
            b'<tensor dtype="int8" shape="2">AA==</tensor>',
            b'<tensor dtype="int8" shape="1">A</tensor>',
            b'<tensor dtype="bool" shape="1">Ag==</tensor>',
            b'<tensor dtype="int8" shape="0 99999999999999999999">AA==</tensor>',
            b'<tensor dtype="int8" shape="0 99999999999999999999"></tensor>',
            b'<tensor dtype="int8" shape="' + b"1 " * 40 + b'">AA==</tensor>',
            b"<int>" + b"9" * 5000 + b"</int>",
        ],
        ids=repr,
    )
    def test_malformed_documents(self, data: bytes) -> None:
        with pytest.raises(DecodeError):
            XML().loads(data)

    @given(data=st.binary(max_size=256))
    def test_garbage(self, data: bytes) -> None:
        only_model_deploy_errors(XML(), data)

    @given(data=st.text(alphabet="<>/=\"' &;#x0123456789abcdeflistrnoubygk\n", max_size=80))
    def test_markup_shaped_garbage(self, data: str) -> None:
        only_model_deploy_errors(XML(), data.encode())

    @given(value=strategies.xml_values, data=st.data())
    def test_truncations_and_flips(self, value: Any, data: st.DataObject) -> None:
        encoded = bytearray(XML().dumps(value))
        cut = data.draw(st.integers(0, len(encoded) - 1))
        only_model_deploy_errors(XML(), bytes(encoded[:cut]))
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] ^= data.draw(st.integers(1, 255))
        only_model_deploy_errors(XML(), bytes(encoded))


class TestLimits:
    def test_max_size(self) -> None:
        data = XML().dumps({"values": list(range(100))})
        assert XML(max_size=len(data)).loads(data) == {"values": list(range(100))}
        for body in (data, memoryview(data)):
            with pytest.raises(PayloadTooLargeError):
                XML(max_size=len(data) - 1).loads(body)

    @pytest.mark.parametrize("container", ["list", "dict"])
    def test_depth_10000_is_a_decode_error(self, container: str) -> None:
        key = ' key="k"' if container == "dict" else ""
        opener = f"<{container}>".encode() + f"<{container}{key}>".encode() * 9_999
        data = opener + f"</{container}>".encode() * 10_000
        for serializer in (XML(), XML(max_depth=5_000)):
            with pytest.raises(DecodeError, match="deeper"):
                serializer.loads(data)

    def test_depth_10000_within_a_high_limit(self) -> None:
        # nothing recurses per level: a limit above the interpreter's recursion limit holds
        serializer = XML(max_depth=10_000)
        data = serializer.dumps(nested(10_000))
        assert levels(serializer.loads(data)) == 10_000
        with pytest.raises(EncodeError, match="deeper"):
            serializer.dumps(nested(10_001))

    def test_max_depth_is_exact(self) -> None:
        serializer = XML(max_depth=5)
        assert serializer.loads(serializer.dumps(nested(5))) == nested(5)
        with pytest.raises(EncodeError, match="deeper"):
            serializer.dumps(nested(6))
        with pytest.raises(DecodeError, match="deeper"):
            serializer.loads(XML().dumps(nested(6)))

    def test_leaves_and_tensors_do_not_count_toward_depth(self) -> None:
        serializer = XML(max_depth=1)
        value = [1, "a", np.zeros(2), None]
        assert strategies.nan_equal(serializer.loads(serializer.dumps(value)), value)

    def test_non_contiguous_memoryview(self) -> None:
        data = XML().dumps([1, "ab"])
        strided = memoryview(b"".join(bytes([c, 0]) for c in data))[::2]
        assert XML().loads(strided) == [1, "ab"]


class TestDocs(docs.PageExamples):
    page = "serializers/xml.md"
