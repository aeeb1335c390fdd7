"""Tests for predictors made from an object with load() and predict()."""

from __future__ import annotations

import threading

import pytest

from modeldeploy.errors import PredictionError
from modeldeploy.interfaces import Predictor
from modeldeploy.messages import Signature, TensorSpec
from modeldeploy.predictors import predictor
from modeldeploy.predictors.object import _ObjectPredictor

SIGNATURE = Signature([TensorSpec("x", "float64", (2,))])


class Model:
    """A user's model class: heavy work in load(), batched predict()."""

    def __init__(self):
        self.loads = 0
        self.weights = None

    def load(self):
        self.loads += 1
        self.weights = [10.0, 1.0]

    def predict(self, batch):
        assert self.weights is not None, "predict before load"
        return [sum(w * v for w, v in zip(self.weights, x, strict=True)) for x in batch]

    def score(self, batch):
        return ["scored"] * len(batch)


class CompleteModel(Model):
    """Already a full Predictor: signature, name and version."""

    signature = SIGNATURE
    name = "complete"
    version = "3"


class TestWrapping:
    def test_load_calls_the_models_load_once(self):
        model = Model()
        p = predictor(model)
        assert isinstance(p, _ObjectPredictor)
        p.load()
        p.load()
        assert model.loads == 1
        assert p.predict([[1.0, 2.0], [0.0, 1.0]]) == [12.0, 1.0]

    def test_concurrent_loads_call_the_models_load_once(self):
        entered, release = threading.Event(), threading.Event()

        class Slow(Model):
            def load(self):
                entered.set()
                assert release.wait(10)
                super().load()

        model = Slow()
        p = predictor(model)
        threads = [threading.Thread(target=p.load) for _ in range(6)]
        for thread in threads:
            thread.start()
        assert entered.wait(10)
        release.set()
        for thread in threads:
            thread.join()
        assert model.loads == 1

    def test_defaults_come_from_the_class(self):
        p = predictor(Model())
        assert (p.name, p.version, p.signature) == ("Model", "1", None)
        assert isinstance(p, Predictor)

    def test_complete_predictor_is_returned_as_is(self):
        model = CompleteModel()
        assert predictor(model) is model

    def test_options_wrap_a_complete_predictor_keeping_its_attributes(self):
        model = CompleteModel()
        p = predictor(model, postprocess=round)
        assert p is not model
        assert (p.name, p.version, p.signature) == ("complete", "3", SIGNATURE)
        p.load()
        assert p.predict([[0.25, 0.5]]) == [3]

    def test_options_override_the_objects_attributes(self):
        p = predictor(CompleteModel(), name="other", version="9", signature=None)
        assert (p.name, p.version) == ("other", "9")

    def test_a_signature_of_another_kind_is_ignored(self):
        model = Model()
        model.signature = "(x) -> y"
        assert predictor(model).signature is None

    def test_method_selects_another_method(self):
        p = predictor(Model(), method="score")
        assert p.predict([1, 2]) == ["scored", "scored"]

    def test_item_by_item(self):
        class PerItem:
            def load(self):
                pass

            def predict(self, x):
                return -x

        p = predictor(PerItem(), batched=False)
        assert p.batched is False
        assert p.predict([1, 2]) == [-1, -2]

    def test_failed_load_propagates_and_is_retried(self):
        class Flaky(Model):
            def load(self):
                super().load()
                if self.loads == 1:
                    raise ConnectionError("artifact store down")

        model = Flaky()
        p = predictor(model)
        with pytest.raises(ConnectionError):
            p.load()
        p.load()
        assert model.loads == 2

    def test_wrong_length_is_a_prediction_error(self):
        class Lossy(Model):
            def predict(self, batch):
                return [0]

        with pytest.raises(PredictionError):
            predictor(Lossy()).predict([1, 2])

    def test_model_exception_propagates_unchanged(self):
        with pytest.raises(AssertionError, match="predict before load"):
            predictor(Model()).predict([[1.0, 2.0]])
