"""``modeldeploy nginx-config`` without nginx: what it writes for any valid options."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.cli import build_parser
from modeldeploy.cli.nginx import _duration, render
from tests import strategies

_NGINX_TIME = re.compile(r"(\d+)(ms|s)")


@given(st.floats(min_value=0.0005, max_value=86_400.0))
def test_durations_are_nginx_times_of_the_same_milliseconds(seconds: float) -> None:
    match = _NGINX_TIME.fullmatch(_duration(seconds))
    assert match is not None  # nginx takes no fractions
    value, unit = int(match[1]), match[2]
    assert value * (1000 if unit == "s" else 1) == max(1, round(seconds * 1000))


@given(st.lists(strategies.backend_addresses, min_size=1, max_size=5))
def test_every_backend_is_one_server_tried_once(backends: list[str]) -> None:
    argv = ["nginx-config", *(f"--backend={b}" for b in backends), "--snippet"]
    config = render(build_parser().parse_args(argv))
    servers = re.findall(r"^\s+server (\S+) max_fails=1 fail_timeout=5s;$", config, re.M)
    distinct = list(dict.fromkeys(backends))
    assert servers == distinct
    assert f"proxy_next_upstream_tries {len(distinct)};" in config
    # nothing a backend brings can end a directive or open a block
    assert config.count("{") == config.count("}")
