"""The public API: `__all__` is complete and sorted; importing configures nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import modeldeploy
from modeldeploy import errors, events, messages

OPTIONAL = ["numpy", "orjson", "defusedxml", "google.protobuf", "grpc", "flask", "uvicorn"]


def test_all_is_sorted_and_unique():
    assert len(set(modeldeploy.__all__)) == len(modeldeploy.__all__)


@pytest.mark.parametrize("name", modeldeploy.__all__)
def test_every_name_in_all_resolves(name):
    assert getattr(modeldeploy, name) is not None


@pytest.mark.parametrize("module", [errors, messages])
def test_public_names_of_core_modules_are_exported(module):
    assert set(module.__all__) <= set(modeldeploy.__all__)


def test_events_live_in_their_module():
    assert {"RequestStarted", "RequestFinished", "BatchExecuted", "ModelLoaded"} <= set(
        events.__all__
    )


@pytest.mark.parametrize(
    ("name", "module"),
    [("MsgPack", "serializers.msgpack"), ("XML", "serializers.xml"), ("HTTPApp", "http")],
)
def test_backends_are_the_same_object_at_every_path(name, module):
    top = getattr(modeldeploy, name)
    assert top.__module__ == f"modeldeploy.{module}"
    if module.startswith("serializers"):
        assert getattr(modeldeploy.serializers, name) is top


def test_import_loads_no_optional_dependency_and_configures_no_logging():
    code = (
        "import logging, sys; before = list(logging.root.handlers); import modeldeploy; "
        f"print([m for m in {OPTIONAL!r} if m in sys.modules]); "
        "print(logging.root.handlers == before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"
