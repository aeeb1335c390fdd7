"""
XML serializer: read with defusedxml, written by a small writer of our own.

Parsing goes through :class:`defusedxml.ElementTree.DefusedXMLParser` with DTDs,
entity declarations and external references forbidden, so billion-laughs and
XXE payloads are refused before anything expands. The parser feeds a builder
that turns elements into values as they arrive, with an explicit stack: no
element tree is kept and no recursion follows the input's depth. The element
schema is documented in :class:`XML` and on ``docs/serializers/xml.md``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterator
from typing import Any

from modeldeploy._extras import needs
from modeldeploy.errors import DecodeError, EncodeError

with needs("modeldeploy.XML"):
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import DefusedXMLParser, ParseError
from modeldeploy.negotiation import BUILTIN_MEDIA_TYPES

from ._base import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, check_size, numpy_or_none

__all__ = ["TENSOR_DTYPES", "XML"]

TENSOR_DTYPES = frozenset(
    [
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    ]
)  # fmt: skip
"""NumPy dtype names a ``<tensor>`` element carries (as raw little-endian bytes)."""

_MAX_DIMS = 32

# characters XML 1.0 cannot carry, not even as a character reference
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r]')
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
    re.IGNORECASE,
)
_SHAPE = re.compile(r"(?:[0-9]+(?: [0-9]+)*)?")
_XML_SPACE = " \t\r\n"

_LEAVES = frozenset(["none", "bool", "int", "float", "str", "bytes", "tensor"])
_CONTAINERS = frozenset(["list", "dict"])
_ATTRIBUTES = {"str": frozenset(["encoding"]), "tensor": frozenset(["dtype", "shape"])}
_NO_ATTRIBUTES: frozenset[str] = frozenset()
_KEY_ATTRIBUTES = frozenset(["key", "key-base64"])


def _text(value: str) -> str:
    return value.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL.search(value) else value


def _attr(value: str) -> str:
    return value.translate(_ATTR_ESCAPES) if _ATTR_SPECIAL.search(value) else value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Decode base64 strictly; whitespace (line breaks of a pretty printer) is ignored."""
    return base64.b64decode("".join(text.split()), validate=True)


def _keyed(mapping: dict[Any, Any]) -> Iterator[tuple[str, Any]]:
    """Yield each value of *mapping* with its rendered key attribute."""
    for name, value in mapping.items():
        if not isinstance(name, str):
            raise EncodeError("XML dict keys must be str")
        if _NOT_XML.search(name):
            yield f' key-base64="{_b64(_utf8(name))}"', value
        else:
            yield f' key="{_attr(str.__str__(name))}"', value


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError("a string holds a lone surrogate, which XML cannot carry") from exc


class XML:
    """
    XML documents of a small element schema, parsed safely with defusedxml.

    Each value is one element; the document is the element of the top value:

    ============================  ==========================================================
    Python value                  element
    ============================  ==========================================================
    ``None``                      ``<none/>``
    ``bool``                      ``<bool>true</bool>``, ``<bool>false</bool>``
    ``int`` (any size)            ``<int>-12</int>``
    ``float``                     ``<float>0.1</float>`` (``repr``: ``nan``, ``inf``, ``-inf``)
    ``str``                       ``<str>text</str>``, or ``<str encoding="base64">`` of its
                                  UTF-8 when it holds a character XML 1.0 cannot carry
    ``bytes``                     ``<bytes>base64</bytes>``
    ``list``                      ``<list>`` holding one element per item
    ``dict`` (``str`` keys)       ``<dict>`` holding one element per value, each with a
                                  ``key="..."`` attribute (``key-base64`` as for ``str``)
    NumPy array                   ``<tensor dtype="float32" shape="2 3">`` base64 of the
                                  raw little-endian bytes in C order ``</tensor>``
    ============================  ==========================================================

    Encoded as something else: a ``tuple`` as a list, a ``bytearray`` or
    ``memoryview`` as bytes, a NumPy scalar as the Python value of ``.item()``.
    Every ``str`` round-trips except one with a lone surrogate (EncodeError).
    Decoded arrays are writable, in native byte order.

    Args:
        max_size: Largest body ``loads`` accepts, in bytes.
        max_depth: Deepest nesting of ``<list>`` and ``<dict>`` elements, for
            ``loads`` and ``dumps`` alike. Neither recurses per level, so
            any positive value is safe.

    Raises:
        ValueError: *max_depth* is less than 1.

    .. versionadded:: 0.1.0
    """

    name = "xml"
    media_types: tuple[str, ...] = BUILTIN_MEDIA_TYPES["xml"]
    media_type = media_types[0]

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        self.max_size = max_size
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return f"XML(max_size={self.max_size}, max_depth={self.max_depth})"

    # -- encoding -----------------------------------------------------------------

    def dumps(self, obj: Any, /) -> bytes:
        """
        Encode *obj* as a UTF-8 XML document without an XML declaration.

        Raises:
            EncodeError: *obj* is outside the data model or nests deeper than
                ``max_depth``.
        """
        parts: list[str] = []
        # an explicit stack of open containers, so any max_depth is safe
        stack: list[tuple[Iterator[tuple[str, Any]], str]] = []
        children: Iterator[tuple[str, Any]] = iter((("", obj),))
        closing = ""
        while True:
            for key, value in children:
                opened = self._open(value, key, parts)
                if opened is not None:
                    if len(stack) >= self.max_depth:
                        raise EncodeError(f"value nests deeper than {self.max_depth} levels")
                    stack.append((children, closing))
                    children, closing = opened
                    break
            else:
                parts.append(closing)
                if not stack:
                    return "".join(parts).encode("utf-8")
                children, closing = stack.pop()

    def _open(
        self, obj: Any, key: str, parts: list[str]
    ) -> tuple[Iterator[tuple[str, Any]], str] | None:
        """
        Append the element of *obj*, or the start tag of a container.

        *key* is the rendered key attribute, or empty. Returns the children of
        a container, as ``(key attribute, value)`` pairs, and its end tag.
        """
        if obj is None:
            parts.append(f"<none{key}/>")
        elif obj is True or obj is False:
            parts.append(f"<bool{key}>{'true' if obj else 'false'}</bool>")
        elif isinstance(obj, str):
            if _NOT_XML.search(obj):
                parts.append(f'<str{key} encoding="base64">{_b64(_utf8(obj))}</str>')
            else:
                parts.append(f"<str{key}>{_text(str.__str__(obj))}</str>")
        elif isinstance(obj, int):
            try:
                parts.append(f"<int{key}>{int(obj)}</int>")
            except ValueError as exc:  # past sys.get_int_max_str_digits()
                raise EncodeError("int has too many digits to write") from exc
        elif isinstance(obj, float):
            parts.append(f"<float{key}>{float(obj)!r}</float>")
        elif isinstance(obj, (list, tuple)):
            parts.append(f"<list{key}>")
            return (("", item) for item in obj), "</list>"
        elif isinstance(obj, dict):
            parts.append(f"<dict{key}>")
            return _keyed(obj), "</dict>"
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            parts.append(f"<bytes{key}>{_b64(bytes(obj))}</bytes>")
        else:
            np = numpy_or_none()
            if np is not None and isinstance(obj, np.ndarray):
                parts.append(self._tensor(obj, key))
            elif np is not None and isinstance(obj, np.generic):
                return self._open(obj.item(), key, parts)
            else:
                raise EncodeError(f"{type(obj).__name__} is not in the XML data model")
        return None

    @staticmethod
    def _tensor(array: Any, key: str) -> str:
        name = array.dtype.name
        if name not in TENSOR_DTYPES:
            raise EncodeError(f"arrays of dtype {name} have no XML tensor form")
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        shape = " ".join(map(str, array.shape))
        return f'<tensor{key} dtype="{name}" shape="{shape}">{_b64(little.tobytes())}</tensor>'

    # -- decoding -----------------------------------------------------------------

    def loads(self, data: bytes | memoryview, /) -> Any:
        """
        Decode one XML document of the element schema.

        Raises:
            PayloadTooLargeError: *data* is over ``max_size`` bytes.
            DecodeError: *data* is not well-formed XML, holds a DTD, an entity
                declaration or an external reference, does not follow the
                schema, or nests deeper than ``max_depth``.
        """
        check_size(data, self.max_size, "XML")
        if isinstance(data, memoryview) and not data.c_contiguous:
            data = data.tobytes()
        builder = _Builder(self.max_depth)
        parser = DefusedXMLParser(
            target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        try:
            parser.feed(data)
            parser.close()
        except DecodeError:
            raise
        except DefusedXmlException as exc:
            raise DecodeError(
                "XML with a DTD, an entity declaration or an external reference is refused"
            ) from exc
        except ParseError as exc:
            raise DecodeError(f"body is not well-formed XML: {exc}") from exc
        except (ValueError, TypeError, OverflowError, LookupError, ArithmeticError) as exc:
            raise DecodeError("body does not follow the XML value schema") from exc
        return builder.result


class _Frame:
    """One open element: its tag, key, attributes, text, and children if a container."""

    __slots__ = ("attributes", "children", "key", "tag", "text")

    def __init__(self, tag: str, key: str | None, attributes: dict[str, str]) -> None:
        self.tag = tag
        self.key = key
        self.attributes = attributes
        self.text: list[str] = []
        self.children: list[Any] | dict[str, Any] | None = (
            [] if tag == "list" else {} if tag == "dict" else None
        )


_MISSING: Any = object()


class _Builder:
    """Parser target that builds the value as elements open and close."""

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth
        self._stack: list[_Frame] = []
        self._containers = 0
        self.result: Any = _MISSING

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        parent = self._stack[-1] if self._stack else None
        if parent is not None and parent.children is None:
            raise DecodeError(f"<{parent.tag}> cannot hold elements")
        if tag not in _LEAVES and tag not in _CONTAINERS:
            raise DecodeError(f"unknown XML element <{tag[:40]}>")
        key = None
        if parent is not None and parent.tag == "dict":
            key = self._key(attributes)
        if not attributes.keys() <= _ATTRIBUTES.get(tag, _NO_ATTRIBUTES):
            raise DecodeError(f"unexpected attribute on <{tag}>")
        if tag in _CONTAINERS:
            self._containers += 1
            if self._containers > self._max_depth:
                raise DecodeError(f"XML body nests deeper than {self._max_depth} levels")
        self._stack.append(_Frame(tag, key, attributes))

    @staticmethod
    def _key(attributes: dict[str, str]) -> str:
        present = _KEY_ATTRIBUTES & attributes.keys()
        if len(present) != 1:
            raise DecodeError("each element inside <dict> needs one key or key-base64 attribute")
        (name,) = present
        text = attributes.pop(name)
        if name == "key":
            return text
        try:
            return _unb64(text).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise DecodeError("key-base64 is not base64 of UTF-8 text") from exc

    def data(self, text: str) -> None:
        if not self._stack:
            return
        frame = self._stack[-1]
        if frame.children is not None:
            if text.strip(_XML_SPACE):
                raise DecodeError(f"<{frame.tag}> cannot hold text")
        else:
            frame.text.append(text)

    def end(self, tag: str) -> None:
        frame = self._stack.pop()
        if frame.children is not None:
            self._containers -= 1
            value = frame.children
        else:
            value = _leaf(frame)
        if not self._stack:
            self.result = value
            return
        siblings = self._stack[-1].children
        if isinstance(siblings, list):
            siblings.append(value)
        else:
            assert siblings is not None and frame.key is not None
            if frame.key in siblings:
                raise DecodeError("a <dict> holds the same key twice")
            siblings[frame.key] = value

    def close(self) -> Any:
        return self.result


def _leaf(frame: _Frame) -> Any:
    """Return the value of a closed leaf element."""
    text = "".join(frame.text)
    tag = frame.tag
    if tag == "str":
        encoding = frame.attributes.get("encoding")
        if encoding is None:
            return text
        if encoding != "base64":
            raise DecodeError('<str encoding> must be "base64"')
        try:
            return _unb64(text).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise DecodeError("<str encoding=base64> is not base64 of UTF-8 text") from exc
    stripped = text.strip(_XML_SPACE)
    if tag == "int":
        if not _INT.fullmatch(stripped):
            raise DecodeError("<int> does not hold an integer")
        return int(stripped)
    if tag == "float":
        if not _FLOAT.fullmatch(stripped):
            raise DecodeError("<float> does not hold a number")
        return float(stripped)
    if tag == "bool":
        if stripped not in ("true", "false"):
            raise DecodeError("<bool> holds neither true nor false")
        return stripped == "true"
    if tag == "none":
        if stripped:
            raise DecodeError("<none> cannot hold text")
        return None
    if tag == "bytes":
        try:
            return _unb64(text)
        except binascii.Error as exc:
            raise DecodeError("<bytes> does not hold base64") from exc
    return _array(frame.attributes, text)


def _array(attributes: dict[str, str], text: str) -> Any:
    """Return the array of a ``<tensor>`` element."""
    np = numpy_or_none()
    if np is None:  # pragma: no cover - the test venv has numpy
        raise DecodeError("<tensor> needs NumPy, which is not installed")
    name = attributes.get("dtype")
    if name not in TENSOR_DTYPES:
        raise DecodeError("<tensor dtype> is missing or not one XML tensors carry")
    shape_text = attributes.get("shape", "").strip(_XML_SPACE)
    if not _SHAPE.fullmatch(shape_text):
        raise DecodeError("<tensor shape> is not a space-separated list of sizes")
    shape = tuple(int(n) for n in shape_text.split())
    if len(shape) > _MAX_DIMS:
        raise DecodeError(f"<tensor> has more than {_MAX_DIMS} dimensions")
    try:
        raw = _unb64(text)
    except binascii.Error as exc:
        raise DecodeError("<tensor> does not hold base64") from exc
    dtype = np.dtype(name).newbyteorder("<")
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise DecodeError("<tensor> data do not match its dtype and shape")
    if name == "bool" and raw.translate(None, b"\x00\x01"):
        raise DecodeError("<tensor dtype=bool> holds bytes other than 0 and 1")
    # astype copies into native order: the array owns writable memory
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)
