"""
The Git + DVC tutorial, run for real: its files written, its shell blocks run in order.

Real ``git`` and ``dvc`` (a local cache, no remote, no analytics) version the store;
checking out the first commit brings version 1 back, byte identical.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modeldeploy.store import KEY_ENV, ModelStore
from tests import docs
from tests.conftest import require_tool

PAGE = "tutorials/git-dvc.md"
BIN = Path(sys.executable).parent


def script(page: str) -> str:
    """The page's sh blocks as one bash script that stops at the first failure."""
    return "set -euo pipefail\n" + "\n".join(docs.blocks(page, "sh"))


@pytest.mark.integration
@pytest.mark.slow
def test_the_tutorial_goes_back_to_version_1_byte_for_byte(tmp_path: Path) -> None:
    require_tool("git")
    if not (BIN / "dvc").exists():
        require_tool("dvc")
    docs.write_files(PAGE, tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if k != KEY_ENV},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),  # no user's git or dvc configuration
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Tutorial",
        "GIT_AUTHOR_EMAIL": "tutorial@example.com",
        "GIT_COMMITTER_NAME": "Tutorial",
        "GIT_COMMITTER_EMAIL": "tutorial@example.com",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(
        ["bash", "-c", script(PAGE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    saved = dict(re.findall(r"^saved (v\d+) ([0-9a-f]{64})$", out, flags=re.M))
    assert list(saved) == ["v1", "v2"] and saved["v1"] != saved["v2"]
    loaded = re.findall(r"^production (v\d+) ([0-9a-f]{64})$", out, flags=re.M)
    # on the newest commit, on the first one, after dvc restored v1, and back on the newest
    assert [version for version, _ in loaded] == ["v2", "v1", "v1", "v2"]
    assert all(digest == saved[version] for version, digest in loaded)  # byte identical
    predictions = re.findall(r"^predicts (.*)$", out, flags=re.M)
    assert len(predictions) == 4 and predictions[1] == predictions[2]

    # the commit of version 2 moved the alias; both manifests are Git's, not DVC's
    assert "aliases.json" in out and "v2/manifest.json" in out
    assert re.search(r"^ok +iris/v1$", out, flags=re.M)
    tracked = subprocess.run(
        ["git", "ls-files", "models"], cwd=tmp_path, env=env, capture_output=True, text=True
    ).stdout.split()
    assert "models/iris/v1/manifest.json" in tracked
    assert "models/iris/v1/model.joblib.dvc" in tracked
    assert "models/iris/v1/model.joblib" not in tracked
    # the store ignores what DVC adds beside an artifact
    assert ModelStore(tmp_path / "models").versions("iris") == ["v1", "v2"]
