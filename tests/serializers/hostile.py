"""Hostile-input checks the binary backends' own tests share, each over its own data model."""

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
