"""Following a store alias: a running service deploys what the alias names, in every process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import modeldeploy as md
from modeldeploy.store import KEY_ENV, AliasFollower, ModelStore
from tests.integration import servers
from tests.integration.servers import request, serve
from tests.store.test_store import scaler

KEY = "follow-key"
ROOT = Path(__file__).parents[2]


def save(store: ModelStore, factor: float) -> str:
    return store.save("scale", {"factor": factor}, format="json", factory=scaler)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models", key=KEY)
    for factor in (2.0, 3.0):
        save(store, factor)
    store.alias("scale", "production", "v1")
    return store


class TestInProcess:
    def test_deploys_rolls_back_and_skips_what_cannot_load(
        self, store: ModelStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        with md.Service(store.load("scale", "production"), workers=0) as service:
            follower = AliasFollower(store, "scale", "production", service)
            assert follower.check() is None  # the alias has not moved
            store.alias("scale", "production", "v2")
            assert follower.check() == "v2"
            assert (service.version, service.predict(1.0)) == ("v2", 3.0)
            store.alias("scale", "production", "v1")
            assert follower.check() == "v1"  # the previous version: a rollback, no load
            assert service.model_info()["previous"] == "v2"
            # a tampered version is refused by its hash, and the live one keeps serving
            bad = save(store, 4.0)
            artifact = next(
                p for p in (store.root / "scale" / bad).iterdir() if p.name != "manifest.json"
            )
            artifact.write_bytes(artifact.read_bytes().replace(b"4.0", b"9.0"))
            store.alias("scale", "production", bad)
            with caplog.at_level(logging.ERROR, "modeldeploy"):
                assert follower.check() is None
                assert follower.check() is None  # not retried in a loop
            assert (service.version, service.predict(1.0)) == ("v1", 2.0)
            assert caplog.text.count("cannot be deployed") == 1
            assert "sha256" in caplog.text or "integrity" in caplog.text.lower()

    def test_waits_for_the_service_to_be_ready(self, store: ModelStore) -> None:
        service = md.Service(store.load("scale", "production"), workers=0)
        follower = AliasFollower(store, "scale", "production", service)
        store.alias("scale", "production", "v2")
        assert follower.check() is None  # not started: nothing to deploy to
        with service:
            assert follower.check() == "v2"

    def test_a_canary_alias_runs_a_canary_and_a_move_promotes_it(self, store: ModelStore) -> None:
        with md.Service(store.load("scale", "production"), workers=0) as service:
            follower = AliasFollower(
                store, "scale", "production", service, canary_alias="canary", canary_weight=1.0
            )
            assert follower.check() is None  # no canary alias yet
            store.alias("scale", "canary", "v2")
            assert follower.check() == "v2"
            assert service.model_info()["canary"]["version"] == "v2"
            assert service.predict(1.0) == 3.0  # weight 1: every call goes to the canary
            store.alias("scale", "production", "v2")
            assert follower.check() == "v2"  # promoted, not loaded again
            assert (service.version, service.model_info()["canary"]) == ("v2", None)
            store.alias("scale", "canary", "v1")
            assert follower.check() == "v1"
            store.alias("scale", "canary", "v2")  # the live version: the canary ends
            assert follower.check() is None
            assert service.model_info()["canary"] is None

    def test_the_thread_follows_and_stops(self, store: ModelStore) -> None:
        with md.Service(store.load("scale", "production"), workers=0) as service:
            follower = AliasFollower(store, "scale", "production", service, interval=0.01)
            follower.start()
            store.alias("scale", "production", "v2")
            deadline = time.monotonic() + 10
            while service.version != "v2" and time.monotonic() < deadline:
                time.sleep(0.01)  # polling interval of a bounded wait for the thread
            follower.stop()
            assert service.version == "v2"


@pytest.mark.integration
@pytest.mark.slow
def test_every_worker_process_follows_the_alias_with_no_failed_request(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uvicorn worker processes under load; the aliases moved by the real command."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("MODELDEPLOY_FOLLOW_INTERVAL", "0.2")
    # two spawned processes each import numpy and load the model: slow on a busy machine
    monkeypatch.setattr(servers, "READY_WITHIN", 90.0)
    server = serve(f"{store.root}/scale@production", "--workers", "2", "--canary-alias", "canary")
    stop = threading.Event()
    answers: Counter[tuple[int, str, float | str]] = Counter()
    lock = threading.Lock()
    recent: list[str] = []

    def load() -> None:
        while not stop.is_set():
            try:
                status, headers, body = request(
                    server.port, "POST", "/predict", b"1.0", {"content-type": "application/json"}
                )
                value = json.loads(body) if status == 200 else body.decode(errors="replace")
                answer = (status, headers.get("x-model-version", ""), value)
            except OSError as exc:
                answer = (0, type(exc).__name__, 0.0)
            with lock:
                answers[answer] += 1
                recent.append(answer[1])

    def move(alias: str, version: str) -> None:
        moved = subprocess.run(
            [sys.executable, "-m", "modeldeploy", "models", "alias", str(store.root), "scale",
             alias, version],
            cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        with lock:
            recent.clear()

    def settle(done: Callable[[list[str]], bool]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if done(recent):
                    return
            stop.wait(0.02)  # a bounded poll while the processes pick the alias up
        raise AssertionError(f"the processes did not settle; last answers {recent[-10:]}")

    threads = [threading.Thread(target=load) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        # ten deploys and ten rollbacks, each reaching both processes, then a canary
        for version in ("v2", "v1") * 10:
            move("production", version)
            settle(lambda seen, v=version: len(seen) > 50 and set(seen[-50:]) == {v})
        move("canary", "v2")  # 5% of the requests, in every process
        settle(lambda seen: len(seen) > 400 and "v2" in seen[-400:])
        move("production", "v2")  # promoted
        settle(lambda seen: len(seen) > 50 and set(seen[-50:]) == {"v2"})
        stop.set()
        for thread in threads:
            thread.join(30)
        assert server.terminate() == 0
    finally:
        stop.set()
        server.kill()
    # every answer is a 200 computed by the version it names: v1 doubles, v2 triples
    assert set(answers) <= {(200, "v1", 2.0), (200, "v2", 3.0)}, answers
    assert answers[200, "v2", 3.0] > 100 and answers[200, "v1", 2.0] > 100


@pytest.mark.parametrize("weight", ["1.5", "-0.1", "lots"])
def test_a_canary_weight_outside_0_to_1_is_a_usage_error(weight: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "serve", "x/y@z", "--canary-weight", weight],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "is not a weight between 0 and 1" in done.stderr


def test_a_canary_alias_needs_an_alias_spec(store: ModelStore) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "serve", f"{store.root}/scale@v1",
         "--canary-alias", "canary", "--server", "wsgiref"],
        cwd=ROOT, env={**os.environ, KEY_ENV: KEY}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--canary-alias needs SPEC to name an alias" in done.stderr
