"""modeldeploy.adapters._body: the body reader the WSGI, Flask and decorator adapters share."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modeldeploy as md
from modeldeploy.adapters._body import content_length, read_body, read_wsgi_input


class Trickle(io.RawIOBase):
    """A stream that hands out at most *step* bytes a read, as a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, self._step))


@given(body=st.binary(max_size=300), limit=st.integers(0, 300), step=st.integers(1, 64))
def test_chunked_body_is_read_up_to_the_limit(body: bytes, limit: int, step: int) -> None:
    stream = Trickle(body, step)
    if len(body) > limit:
        with pytest.raises(md.PayloadTooLargeError, match=f"over the limit of {limit} bytes"):
            read_body(stream, None, limit)
    else:
        assert read_body(stream, None, limit) == body


@given(body=st.binary(max_size=300), limit=st.integers(0, 300))
def test_body_with_a_length(body: bytes, limit: int) -> None:
    if len(body) > limit:
        with pytest.raises(md.PayloadTooLargeError, match=f"body of {len(body)} bytes"):
            read_body(io.BytesIO(body), len(body), limit)
    else:
        assert read_body(io.BytesIO(body + b"more"), len(body), limit) == body


def test_short_body() -> None:
    with pytest.raises(md.DecodeError, match="shorter than its Content-Length"):
        read_body(io.BytesIO(b"ab"), 3, 10)


@pytest.mark.parametrize("value", ["", "x", "-1", "1.0", " 1"])
def test_content_length_must_be_digits(value: str) -> None:
    with pytest.raises(md.DecodeError, match="not a number"):
        content_length(value)


def test_wsgi_input_without_a_length_is_empty_unless_terminated() -> None:
    environ = {"wsgi.input": io.BytesIO(b"[1]")}
    assert read_wsgi_input(environ, None, 10) == b""
    assert read_wsgi_input({**environ, "wsgi.input_terminated": True}, None, 10) == b"[1]"
