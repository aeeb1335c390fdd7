"""Tests for the machinery the built-in predictors share."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeldeploy.errors import PredictionError
from modeldeploy.predictors._base import (
    DEFAULT_VERSION,
    PredictorBase,
    default_name,
    split_outputs,
)
from tests import strategies


class TestSplitOutputs:
    @given(st.lists(st.integers()) | st.lists(st.text()).map(tuple))
    def test_lists_and_tuples_pass_as_they_are(self, result):
        assert split_outputs(result, len(result), "m") is result

    @given(hnp.arrays(strategies.numeric_dtypes, hnp.array_shapes(min_dims=1, max_dims=3)))
    def test_arrays_split_along_the_first_axis(self, result):
        outputs = split_outputs(result, len(result), "m")
        assert len(outputs) == len(result)
        if result.ndim == 1:
            # Python scalars, which every serializer carries
            assert not any(isinstance(output, np.generic) for output in outputs)
            assert strategies.nan_equal(np.array(outputs, dtype=result.dtype), result)
        else:
            for row, output in zip(result, outputs, strict=True):
                assert strategies.nan_equal(output, row)

    def test_a_mapping_of_batches_becomes_one_mapping_per_item(self):
        result = {"label": np.array([1, 0]), "proba": np.array([[0.1, 0.9], [0.8, 0.2]])}
        outputs = split_outputs(result, 2, "m")
        assert [o["label"] for o in outputs] == [1, 0]
        assert np.array_equal(outputs[1]["proba"], [0.8, 0.2])

    def test_generators_are_listed(self):
        assert split_outputs((x for x in "ab"), 2, "m") == ["a", "b"]

    @given(st.lists(st.integers(), max_size=5), st.integers(0, 5))
    def test_wrong_length_is_a_prediction_error(self, result, expected):
        if len(result) == expected:
            assert split_outputs(result, expected, "m") is result
            return
        with pytest.raises(PredictionError) as info:
            split_outputs(result, expected, "mymodel")
        assert info.value.message == "model returned the wrong number of outputs"
        cause = info.value.__cause__
        assert isinstance(cause, ValueError)
        assert str(cause) == f"mymodel returned {len(result)} outputs for a batch of {expected}"

    def test_wrong_length_in_one_column_is_a_prediction_error(self):
        with pytest.raises(PredictionError):
            split_outputs({"a": [1, 2], "b": [1]}, 2, "m")

    @pytest.mark.parametrize("result", [None, 3, 2.5, "ab", b"ab", np.float32(1), np.array(1)])
    def test_a_non_batch_is_a_prediction_error(self, result):
        with pytest.raises(PredictionError) as info:
            split_outputs(result, 2, "m")
        assert info.value.message == "model returned a value that is not a batch"
        assert isinstance(info.value.__cause__, TypeError)


def score(x):
    return x


class Model:
    def predict(self, x):
        return x


LAMBDAS = [lambda x: x]  # at module level, where a lambda's qualname is bare


def make_nested():
    def inner(x):
        return x

    return inner


class TestDefaultName:
    @pytest.mark.parametrize(
        ("obj", "name"),
        [
            (score, "score"),
            (Model().predict, "Model.predict"),
            (make_nested(), "inner"),
            (LAMBDAS[0], "<lambda>"),
            (Model(), "Model"),
            (len, "len"),
        ],
    )
    def test_names(self, obj, name):
        assert default_name(obj) == name


class Counting(PredictorBase):
    def __init__(self, release: threading.Event | None = None) -> None:
        super().__init__(
            None,
            name="c",
            version=None,
            signature=None,
            batched=True,
            preprocess=None,
            postprocess=None,
        )
        self.loads = 0
        self.entered = threading.Event()
        self.release = release

    def _load(self) -> None:
        self.loads += 1
        self.entered.set()
        if self.release is not None:
            self.release.wait()
        if self.loads == 1 and self.release is None:
            raise OSError("disk hiccup")

    def _predict_batch(self, batch):
        return list(batch)


class TestPredictorBase:
    def test_version_defaults_to_1(self):
        assert Counting().version == DEFAULT_VERSION == "1"

    def test_concurrent_loads_load_once(self):
        release = threading.Event()
        predictor = Counting(release)
        threads = [threading.Thread(target=predictor.load) for _ in range(8)]
        for thread in threads:
            thread.start()
        assert predictor.entered.wait(10)
        release.set()
        for thread in threads:
            thread.join()
        predictor.load()
        assert predictor.loads == 1

    def test_failed_load_propagates_and_is_retried(self):
        predictor = Counting()
        with pytest.raises(OSError, match="disk hiccup"):
            predictor.load()
        predictor.load()
        predictor.load()
        assert predictor.loads == 2

    def test_deep_copy_gets_its_own_lock(self):
        class Echo(PredictorBase):
            def _predict_batch(self, batch):
                return list(batch)

        predictor = Echo(
            None,
            name="e",
            version="2",
            signature=None,
            batched=True,
            preprocess=None,
            postprocess=None,
        )
        clone = copy.deepcopy(predictor)
        assert clone._load_lock is not predictor._load_lock
        clone.load()
        assert clone.predict([1, 2]) == [1, 2]
        assert (clone.name, clone.version) == ("e", "2")

    def test_empty_batch_skips_the_model(self):
        class Exploding(Counting):
            def _predict_batch(self, batch):
                raise AssertionError("called")

        assert Exploding().predict([]) == []

    def test_repr_names_the_model(self):
        assert repr(Counting()) == "<Counting 'c' version='1' batched=True>"
