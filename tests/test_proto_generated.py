"""The committed code in modeldeploy._proto matches the .proto files it came from."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
GENERATED = ROOT / "src" / "modeldeploy" / "_proto"

# .proto path under proto/ -> the generated modules `make proto` copies into _proto/
SOURCES = {"modeldeploy/v1/value.proto": ("value_pb2.py", "value_pb2.pyi")}


def grpc_tools_protoc() -> ModuleType:
    """Return grpc_tools.protoc; skip locally, fail in CI, when it is missing."""
    try:
        return importlib.import_module("grpc_tools.protoc")
    except ImportError:
        if IN_CI:
            pytest.fail("grpcio-tools is not installed; the dev extra must install it")
        pytest.skip("grpcio-tools is not installed")


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_committed_code_is_up_to_date(source: str, tmp_path: Path) -> None:
    protoc = grpc_tools_protoc()
    # the same invocation as `make proto`
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(PROTO_ROOT / source),
        ]
    )
    assert status == 0
    out_dir = (tmp_path / source).parent
    for name in SOURCES[source]:
        fresh = (out_dir / name).read_bytes()
        committed = (GENERATED / name).read_bytes()
        assert fresh == committed, f"{name} is stale: run `make proto` and commit the result"


def test_runtime_lower_bound_is_the_gencode_version() -> None:
    # the generated module refuses a protobuf runtime older than the protoc
    # that wrote it, so pyproject's lower bound must be at least that version
    generated = (GENERATED / "value_pb2.py").read_text(encoding="utf-8")
    check = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
        r"\s*(\d+),\s*(\d+),\s*(\d+),",
        generated,
    )
    assert check is not None
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    bound = re.search(r'"protobuf>=([\d.]+)"', pyproject)
    assert bound is not None
    assert bound.group(1) == ".".join(check.groups())


def test_generated_module_imports_with_the_installed_runtime() -> None:
    from modeldeploy._proto import value_pb2  # the import is the test

    message = value_pb2.Value(string_value="ok")
    assert value_pb2.Value.FromString(message.SerializeToString()).string_value == "ok"
