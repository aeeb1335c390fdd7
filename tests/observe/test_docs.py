"""docs/monitoring.md: its python examples run, its commands parse, its YAML is YAML."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest
import structlog
import yaml

from modeldeploy import cli
from tests import docs

PAGE = "monitoring.md"

pytest.importorskip("grafana_foundation_sdk")
pytest.importorskip("opentelemetry.sdk")


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class TestDocs(docs.PageExamples):
    page = PAGE
    minimum = 5


def commands() -> list[list[str]]:
    lines = [
        line[2:]
        for block in docs.blocks(PAGE, "console")
        for line in block.splitlines()
        if line.startswith("$ modeldeploy ")
    ]
    return [shlex.split(line.split(">")[0])[1:] for line in lines]


@pytest.mark.parametrize("argv", commands(), ids=" ".join)
def test_commands_parse(argv: list[str]) -> None:
    options = cli.build_parser().parse_args(argv)
    assert callable(options.run)


def test_the_page_shows_both_commands() -> None:
    assert {argv[0] for argv in commands()} >= {"serve", "dashboard", "alert-rules"}


def test_yaml_blocks_load() -> None:
    (config,) = docs.blocks(PAGE, "yaml")
    loaded = yaml.safe_load(config)
    assert loaded["scrape_configs"][0]["job_name"] == "modeldeploy"
    assert loaded["rule_files"] == ["modeldeploy-rules.yml"]
