"""
Hostile input the serializer tests share.

Checks each binary backend runs over its own data model, and protobuf bodies
written by hand, so no encoder's own limits are in the way.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import strategies as st

from modeldeploy.errors import ModelDeployError
from modeldeploy.interfaces import Serializer


def check_truncation(codec: Serializer, value: Any, data: st.DataObject) -> None:
    """A strict prefix of *value*'s body raises a ModelDeployError."""
    body = codec.dumps(value)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ModelDeployError):
        codec.loads(body[:cut])


def check_corruption(codec: Serializer, value: Any, data: st.DataObject) -> None:
    """With one to four of its bytes overwritten, *value*'s body raises only ModelDeployErrors."""
    body = bytearray(codec.dumps(value))
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ModelDeployError):
        codec.loads(bytes(body))


def varint(number: int) -> bytes:
    """*number* as a protobuf base-128 varint."""
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def wire_nested_lists(depth: int) -> bytes:
    """A protobuf ``Value`` of *depth* nested lists around a null."""
    value = b"\x08\x00"  # null_value = NULL_VALUE
    for _ in range(depth):
        value = field(8, field(1, value))  # Value.list_value(ListValue.values(value))
    return value
