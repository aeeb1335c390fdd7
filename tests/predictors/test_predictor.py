"""Tests for the predictor() factory: which kind of predictor each model gets."""

from __future__ import annotations

import pytest

from modeldeploy.predictors import predictor
from modeldeploy.predictors.function import _FunctionPredictor
from modeldeploy.predictors.object import _ObjectPredictor
from modeldeploy.predictors.sklearn import _SklearnPredictor


class Estimator:
    def predict(self, x):
        return [0] * len(x)


class LoadPredict:
    def load(self):
        pass

    def predict(self, batch):
        return batch


class CallableEstimator(Estimator):
    def __call__(self, x):
        return x


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        (len, _FunctionPredictor),
        (lambda x: x, _FunctionPredictor),
        (Estimator(), _SklearnPredictor),
        (CallableEstimator(), _SklearnPredictor),  # predict() wins over __call__
        (LoadPredict(), _ObjectPredictor),
    ],
)
def test_kind_follows_the_model(model, kind):
    assert type(predictor(model)) is kind


@pytest.mark.parametrize(
    ("model", "options", "match"),
    [
        (Estimator, {}, r"takes a model instance, got the class Estimator"),
        (42, {}, "cannot make a predictor from int"),
        (len, {"method": "predict"}, "builtin_function_or_method has no method 'predict'"),
        (Estimator(), {"method": "transform"}, "Estimator has no method 'transform'"),
        (LoadPredict(), {"method": "score"}, "LoadPredict has no method 'score'"),
        (len, {"preprocess": 1}, "preprocess must be callable, got int"),
        (len, {"postprocess": "str"}, "postprocess must be callable, got str"),
    ],
)
def test_misuse_is_a_type_error(model, options, match):
    with pytest.raises(TypeError, match=match):
        predictor(model, **options)
