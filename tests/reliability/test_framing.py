"""The gunicorn worker's framing: it hands a request over exactly when gunicorn can parse it.

:class:`modeldeploy.servers.gunicorn.ThreadWorker` reads requests on its poller and gives a
thread only whole ones; the check here is against gunicorn's own parser, fed the bytes the
framing said were enough and nothing more (no socket behind them).
"""

from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import LimitRequestHeaders
from gunicorn.http.parser import RequestParser
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.servers.gunicorn import _framing
from tests.strategies import wire_requests

LIMIT = 1 << 20


def parse(data: bytes, *more: bytes) -> tuple[bytes, bytes]:
    """gunicorn's parse of one request from *data* (then *more*): (its body, the rest)."""
    parser = RequestParser(Config(), iter([data, *more]), ("127.0.0.1", 1))
    request = next(parser)
    body = request.body.read()
    return body, parser.unreader.take_buffered()


@given(wire_requests(), st.binary(max_size=40), st.lists(st.integers(1, 400), max_size=30))
def test_a_request_is_in_exactly_when_gunicorn_can_parse_it(request, after, steps):
    wire, body = request
    data = wire + after  # a pipelined request, or any bytes, after it
    framing = _framing(Config(), LIMIT)
    buf = bytearray()
    for size in [*steps, len(data)]:
        buf += data[len(buf) : len(buf) + size]
        done = framing.scan(buf)
        assert done == (len(buf) >= len(wire)), (bytes(buf), wire)
        if done:
            break
    assert framing.whole
    assert parse(bytes(buf)) == (body, bytes(buf[len(wire) :]))


@given(wire_requests())
def test_the_framing_resumes_where_it_stopped(request):
    # one byte at a time: each scan resumes, none reads past what is there
    wire, _ = request
    framing = _framing(Config(), LIMIT)
    buf = bytearray()
    for byte in wire[:-1]:
        buf.append(byte)
        assert not framing.scan(buf)
    buf.append(wire[-1])
    assert framing.scan(buf) and framing.whole


HEAD = b"POST / HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    "head",
    [
        HEAD + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1),  # over the limit: the app's 413
        HEAD + b"Content-Length: 1x\r\n\r\n",
        HEAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\n",
        HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (LIMIT + 1),
        HEAD + b"\n\n",  # bare line feeds
    ],
    ids=[
        "length over the limit", "bad length", "two lengths", "length and chunked",
        "gzip alone", "chunked twice", "bad chunk size", "chunk over the limit", "bare LF",
    ],
)  # fmt: skip
def test_what_the_framing_cannot_take_goes_over_at_once(head):
    # handed to a thread as it is, not whole: gunicorn or the app answers it
    framing = _framing(Config(), LIMIT)
    assert framing.scan(bytearray(head))
    assert not framing.whole


def test_a_head_past_gunicorns_limits_goes_over_for_its_431():
    framing = _framing(Config(), LIMIT)
    buf = bytearray(HEAD + b"X-Long: " + b"a" * 1_000_000)
    assert framing.scan(buf)
    assert not framing.whole
    # gunicorn refuses it on its next read (the thread's, under the header deadline)
    with pytest.raises(LimitRequestHeaders):
        parse(bytes(buf), b"a" * 8192)
