"""
The tutorials run as a reader follows them: every block in order, in an empty directory.

Their ``sh`` blocks that serve a module run too: the module the page wrote is served
by a real ``modeldeploy serve`` from that directory.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from tests import docs
from tests.integration.servers import request, serve

# page -> the fewest python blocks it must keep
TUTORIALS = {"tutorials/flask-pickle.md": 7}


@pytest.mark.parametrize(("page", "minimum"), TUTORIALS.items())
def test_the_tutorial_runs_in_order(page, minimum, tmp_path):
    assert len(docs.blocks(page)) >= minimum
    docs.run_in_order(page, tmp_path)
    # then its test files pass, run by pytest where the reader saved them
    tests = sorted(name for name in docs.files(page) if name.startswith("test_"))
    if tests:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr


def serve_commands(page):
    """The ``modeldeploy serve`` command lines of *page*'s sh blocks, as argv lists."""
    return [
        shlex.split(line)
        for block in docs.blocks(page, "sh")
        for line in block.splitlines()
        if line.startswith("modeldeploy serve ")
    ]


@pytest.mark.integration
def test_flask_pickle_serves_its_module(tmp_path):
    page = "tutorials/flask-pickle.md"
    docs.write_files(page, tmp_path)
    with docs.in_directory(tmp_path):
        docs.run(docs.blocks(page)[0], page)  # the training script writes model.pkl
    (command,) = serve_commands(page)
    args = command[2:]
    assert args[args.index("--port") + 1] == "8000"
    del args[args.index("--port") : args.index("--port") + 2]  # a free port instead
    server = serve(*args, cwd=tmp_path)
    try:
        status, _, body = request(
            server.port,
            "POST",
            "/predict",
            b"[5.1, 3.5, 1.4, 0.2]",
            {"content-type": "application/json"},
        )
        assert (status, json.loads(body)) == (200, 0)
        assert request(server.port, "GET", "/v2/health/ready")[0] == 200
        assert server.terminate() == 0
    finally:
        server.kill()
