"""Request and Response values; the hot path's Response constructor."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modeldeploy as md
from modeldeploy.messages import make_response

headers = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)


@given(st.integers(100, 599), headers, st.binary(max_size=64))
def test_make_response_builds_the_same_value_as_the_class(status, headers, body):
    fast = make_response(status, headers, body)
    built = md.Response(status, headers, body)
    assert type(fast) is md.Response
    assert fast == built
    assert attrs.asdict(fast) == attrs.asdict(built)
    assert repr(fast) == repr(built)


def test_a_fast_response_is_frozen_too():
    response = make_response(200, {}, b"")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        response.status = 500  # type: ignore[misc]
