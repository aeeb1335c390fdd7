"""``async def`` models: awaited to completion on whichever thread calls predict (trap 5)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import modeldeploy as md
from modeldeploy.http import HTTPApp
from modeldeploy.predictors import predictor


async def double(x):
    await asyncio.sleep(0)  # a real suspension point: the loop must be running it
    return 2 * x


class AsyncModel:
    name, version, signature = "async-model", "1", None

    def __init__(self) -> None:
        self.loaded = False

    async def load(self) -> None:
        await asyncio.sleep(0)
        self.loaded = True

    async def predict(self, batch):
        await asyncio.sleep(0)
        assert self.loaded
        return [x + 1 for x in batch]


class AsyncCallable:
    async def __call__(self, x):
        await asyncio.sleep(0)
        return -x


def test_async_function_predicts_values_not_coroutines() -> None:
    p = predictor(double)
    assert p.name == "double"
    assert p.predict([1, 2, 3]) == [2, 4, 6]


def test_async_callable_object() -> None:
    assert predictor(AsyncCallable()).predict([5]) == [-5]


def test_async_load_and_predict_of_a_model_class() -> None:
    model = AsyncModel()
    p = predictor(model)
    assert p is not model  # wrapped, though it has every attribute of a Predictor
    p.load()
    assert model.loaded
    assert p.predict([1, 2]) == [2, 3]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_service_path(workers: int) -> None:
    with md.Service(double, workers=workers) as service:
        assert service.predict(4) == 8
        assert service.submit(5).result(timeout=10) == 10
        assert asyncio.run(service.apredict(6)) == 12
        response = service.handle(md.Request(b"7", "application/json"))
        assert (response.status, response.body) == (200, b"14")


def test_called_on_a_thread_that_runs_an_event_loop() -> None:
    # asgi(..., inline=True) computes on the loop's thread, which cannot re-enter its loop
    app = HTTPApp(md.Service(double, workers=0))
    app.start_services()

    async def on_the_loop():
        return app("POST", "/predict", {"content-type": "application/json"}, b"21")

    response = asyncio.run(on_the_loop())
    assert (response.status, response.body) == (200, b"42")


def test_each_thread_keeps_its_own_loop() -> None:
    loops = []

    async def where(x):
        loops.append(asyncio.get_running_loop())
        return x

    p = predictor(where)
    p.predict([1, 2])
    thread = threading.Thread(target=p.predict, args=([3],))
    thread.start()
    thread.join()
    assert loops[0] is loops[1]  # the same loop for the next call on a thread
    assert loops[2] is not loops[0]  # another thread, another loop


def test_a_predictor_object_with_async_predict_given_to_service() -> None:
    class AsyncModel:
        signature = None
        name = "async_obj"
        version = "1"

        def load(self) -> None:
            pass

        async def predict(self, batch):
            return [x + 1 for x in batch]

    for workers in (0, 2):
        with md.Service(AsyncModel(), workers=workers) as service:
            assert service.predict(1) == 2
