"""Versions in a running Service: deploy, rollback, canary, shadow, with zero failed requests."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest

import modeldeploy as md
from modeldeploy.testing import RecordingMonitor


class Scaled:
    """A model whose version shows in its answer: x * factor."""

    signature = None

    def __init__(self, factor: int, *, fail_load: bool = False, fail_warmup: bool = False):
        self.factor = factor
        self.version = f"v{factor}"
        self.fail_load = fail_load
        self.fail_warmup = fail_warmup
        self.loaded = False

    def load(self) -> None:
        if self.fail_load:
            raise OSError("weights missing")
        self.loaded = True

    def predict(self, batch: Any) -> list[Any]:
        if self.fail_warmup and batch == ["warm"]:
            raise RuntimeError("warm-up failed")
        return [x * self.factor for x in batch]


def answer(service: md.Service, x: int, **headers: str) -> tuple[int, str, int]:
    """One /predict request through handle: (status, version header, value)."""
    response = service.handle(md.Request(json.dumps(x).encode(), headers=headers))
    return response.status, response.headers.get("x-model-version", ""), json.loads(response.body)


class Load:
    """Threads calling handle() until stopped; every answer is checked against its version."""

    def __init__(self, service: md.Service, threads: int = 16) -> None:
        self.service = service
        self.stop = threading.Event()
        self.failures: list[Any] = []
        self.by_version: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, seed: int) -> None:
        x = seed + 1
        while not self.stop.is_set():
            status, version, value = answer(self.service, x, **{"x-user": str(x)})
            ok = status == 200 and version.startswith("v") and value == x * int(version[1:])
            with self._lock:
                if ok:
                    self.by_version[version] += 1
                else:
                    self.failures.append((status, version, value))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_for(self, count: int) -> None:
        """Until *count* more answers were checked (bounded)."""
        with self._lock:
            target = sum(self.by_version.values()) + count
        for _ in range(10_000):
            with self._lock:
                if sum(self.by_version.values()) >= target or self.failures:
                    return
            self.stop.wait(0.001)  # a bounded poll of a counter other threads raise


@pytest.fixture(params=[0, 2], ids=["inline", "workers"])
def service(request: pytest.FixtureRequest) -> Any:
    with md.Service(Scaled(1), workers=request.param, max_queue=4096) as service:
        yield service


class TestDeploy:
    def test_twenty_deploys_and_rollbacks_under_load_fail_nothing(
        self, service: md.Service
    ) -> None:
        with Load(service) as load:
            for factor in range(2, 12):  # 10 x (deploy, rollback): 20 switches
                load.wait_for(20)
                assert service.deploy(Scaled(factor)) == f"v{factor}"
                load.wait_for(20)
                assert service.rollback() == "v1"
        assert load.failures == []
        assert service.version == "v1"
        assert service.model_info()["previous"] == "v11"
        assert len(load.by_version) > 5  # answers came from many versions, each correct

    def test_every_response_names_its_version(self, service: md.Service) -> None:
        assert answer(service, 3) == (200, "v1", 3)
        service.deploy(Scaled(7))
        assert answer(service, 3) == (200, "v7", 21)
        assert service.model_info()["live"] == "v7"
        assert service.model_info()["previous"] == "v1"

    def test_a_failed_load_leaves_the_live_version_serving(self, service: md.Service) -> None:
        with pytest.raises(md.ModelLoadError, match="version 'v5' failed to load: OSError"):
            service.deploy(Scaled(5, fail_load=True))
        with pytest.raises(md.ModelLoadError, match="failed to load: RuntimeError"):
            service.deploy(Scaled(6, fail_warmup=True), warmup="warm")
        assert answer(service, 2) == (200, "v1", 2)
        assert service.versions == ("v1",)

    def test_a_version_must_be_new_and_named(self, service: md.Service) -> None:
        with pytest.raises(ValueError, match="already has version 'v1'"):
            service.deploy(Scaled(1))
        unnamed = Scaled(4)
        unnamed.version = None  # type: ignore[assignment]
        with pytest.raises(ValueError, match="name the new version"):
            service.deploy(unnamed)
        assert service.deploy(unnamed, version="v4") == "v4"

    def test_plain_functions_take_a_version_argument(self) -> None:
        with md.Service(lambda x: x, workers=0) as service:  # version "1"
            with pytest.raises(ValueError, match="already has version '1'"):
                service.deploy(lambda x: x * 2)
            service.deploy(lambda x: x * 2, version="2")
            assert service.predict(4) == 8

    def test_rollback_needs_a_previous_version(self, service: md.Service) -> None:
        with pytest.raises(md.NotReadyError, match="no previous version"):
            service.rollback()

    def test_only_two_versions_stay_loaded(self, service: md.Service) -> None:
        for factor in (2, 3, 4):
            service.deploy(Scaled(factor))
        assert service.versions == ("v4", "v3")

    def test_metrics_and_events_carry_the_version(self) -> None:
        recorder = RecordingMonitor()
        with md.Service(Scaled(1), workers=0, monitors=[recorder]) as service:
            answer(service, 1)
            service.deploy(Scaled(2))
            answer(service, 1)
        assert [e.version for e in recorder.finished] == ["v1", "v2"]
        assert [e.version for e in recorder.loaded] == ["v1", "v2"]

    def test_a_request_may_name_a_loaded_version(self, service: md.Service) -> None:
        service.deploy(Scaled(3))
        old = service.handle(md.Request(b"2", version="v1"))
        assert (old.status, old.headers["x-model-version"], old.body) == (200, "v1", b"2")
        missing = service.handle(md.Request(b"2", version="v9"))
        assert missing.status == 404
        assert json.loads(missing.body)["error"]["code"] == "version_not_found"


class TestCanary:
    def test_five_percent_then_promoted_under_load_fail_nothing(self, service: md.Service) -> None:
        with Load(service) as load:
            load.wait_for(50)
            service.canary(Scaled(3), weight=0.05)
            load.wait_for(2000)
            shares = dict(load.by_version)
            service.promote()
            load.wait_for(100)
        assert load.failures == []
        assert shares.get("v3", 0) > 0
        assert shares["v3"] < shares["v1"]
        assert service.version == "v3" and service.model_info()["canary"] is None

    def test_a_key_keeps_each_client_on_one_side(self, service: md.Service) -> None:
        service.canary(Scaled(3), weight=0.5, key="x-user")
        for user in range(50):
            seen = {answer(service, 1, **{"x-user": str(user)})[1] for _ in range(5)}
            assert len(seen) == 1
        sides = Counter(answer(service, 1, **{"x-user": str(u)})[1] for u in range(400))
        assert 120 < sides["v3"] < 280  # about half, by crc32 of the key

    def test_end_canary_sends_everything_back(self, service: md.Service) -> None:
        service.canary(Scaled(3), weight=1.0)
        assert answer(service, 1)[1] == "v3"
        service.end_canary()
        assert {answer(service, 1)[1] for _ in range(20)} == {"v1"}
        assert service.versions == ("v1",)

    def test_weight_is_checked(self, service: md.Service) -> None:
        with pytest.raises(ValueError, match="weight"):
            service.canary(Scaled(3), weight=1.5)


class TestShadow:
    def test_answers_are_compared_never_returned(self) -> None:
        with md.Service(Scaled(2), workers=0) as service:
            service.shadow(Scaled(2), version="v2-candidate")
            answers = {answer(service, x)[1:] for x in range(50)}
            stats = service.end_shadow()
        assert answers == {("v2", 2 * x) for x in range(50)}
        assert stats["offered"] == 50
        assert stats["matched"] + stats["dropped"] == 50 and stats["mismatched"] == 0

    def test_differences_and_failures_are_counted_not_seen(self) -> None:
        class Broken(Scaled):
            def predict(self, batch: Any) -> list[Any]:
                if batch[0] % 2:
                    raise RuntimeError("shadow bug")
                return [x * 3 for x in batch]

        with md.Service(Scaled(2), workers=2) as service:
            service.shadow(Broken(3))
            results = [answer(service, x) for x in range(40)]
            stats = service.end_shadow()
        assert all(status == 200 and version == "v2" for status, version, _ in results)
        assert stats["failed"] + stats["mismatched"] + stats["dropped"] >= 40 - 1
        assert stats["matched"] <= 1  # only x = 0 agrees: 0 * 2 == 0 * 3


class TestServedVersions:
    """V2 routes answer for every loaded version, by name, over HTTP and gRPC."""

    def test_http_and_grpc_routes_take_a_loaded_version(self) -> None:
        import numpy as np
        import tritonclient.grpc as tgrpc

        from modeldeploy.adapters import grpc as md_grpc
        from modeldeploy.http import HTTPApp

        with md.Service(Scaled(1), name="m", workers=0) as service:
            service.deploy(Scaled(5))
            app = HTTPApp(service)
            body = b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [2]}]}'
            for version, want in (("v1", 2), ("v5", 10)):
                response = app("POST", f"/v2/models/m/versions/{version}/infer", {}, body)
                assert response.status == 200
                assert json.loads(response.body)["model_version"] == version
                assert json.loads(response.body)["outputs"][0]["data"] == [want]
            live = json.loads(app("POST", "/v2/models/m/infer", {}, body).body)
            assert (live["model_version"], live["outputs"][0]["data"]) == ("v5", [10])
            assert json.loads(app("GET", "/v2/models/m", {}, b"").body)["versions"] == [
                "v5", "v1"
            ]  # fmt: skip
            missing = app("POST", "/v2/models/m/versions/v9/infer", {}, body)
            assert missing.status == 404

            server, port = md_grpc.server(service)
            server.start()
            client = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
            try:
                x = tgrpc.InferInput("x", [1], "INT64")
                x.set_data_from_numpy(np.array([3], dtype=np.int64))
                old = client.infer("m", [x], model_version="v1")
                assert old.as_numpy("output0").tolist() == [3]
                assert old.get_response().model_version == "v1"
                assert client.infer("m", [x]).as_numpy("output0").tolist() == [15]
            finally:
                client.close()
                server.stop(grace=None).wait()


def test_the_previous_version_can_be_a_canary_without_a_load() -> None:
    with md.Service(Scaled(1), workers=0) as service:
        service.deploy(Scaled(2))
        assert service.canary(None, version="v1", weight=1.0) == "v1"
        assert answer(service, 5) == (200, "v1", 5)
        service.end_canary()
        assert service.rollback() == "v1"  # still loaded, still the previous version
        with pytest.raises(ValueError, match="needs a model"):
            service.canary(None, version="v9")
