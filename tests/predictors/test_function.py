"""Tests for predictors made from plain callables."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.errors import PredictionError
from modeldeploy.interfaces import Predictor
from modeldeploy.messages import Signature, TensorSpec
from modeldeploy.predictors import predictor
from modeldeploy.predictors.function import _FunctionPredictor


def double(x):
    return 2 * x


class Recorder:
    """A callable that records what it was called with."""

    def __init__(self, fn=double):
        self.calls = []
        self.fn = fn

    def __call__(self, arg):
        self.calls.append(arg)
        return self.fn(arg)


class TestItemByItem:
    @given(st.lists(st.integers()))
    def test_calls_the_function_once_per_item(self, batch):
        fn = Recorder()
        p = predictor(fn)
        assert isinstance(p, _FunctionPredictor)
        assert p.batched is False
        assert list(p.predict(batch)) == [2 * x for x in batch]
        assert fn.calls == batch

    def test_model_exception_propagates_unchanged(self):
        error = KeyError("feature")

        def broken(x):
            raise error

        with pytest.raises(KeyError) as info:
            predictor(broken).predict([1])
        assert info.value is error

    def test_load_is_a_harmless_no_op(self):
        p = predictor(double)
        p.load()
        p.load()
        assert p.predict([3]) == [6]


class TestBatched:
    def test_calls_the_function_once_with_the_whole_batch(self):
        fn = Recorder(lambda batch: [2 * x for x in batch])
        p = predictor(fn, batched=True)
        assert p.batched is True
        assert p.predict([1, 2, 3]) == [2, 4, 6]
        assert fn.calls == [[1, 2, 3]]

    def test_numpy_result_is_split_into_rows(self):
        p = predictor(lambda batch: np.asarray(batch) @ np.eye(2), batched=True)
        rows = p.predict([[1.0, 2.0], [3.0, 4.0]])
        assert len(rows) == 2
        assert np.array_equal(rows[1], [3.0, 4.0])

    def test_mapping_result_becomes_one_mapping_per_item(self):
        p = predictor(lambda b: {"y": np.asarray(b) + 1, "id": list(b)}, batched=True)
        assert p.predict([1, 5]) == [{"y": 2, "id": 1}, {"y": 6, "id": 5}]

    @given(st.lists(st.integers(), max_size=6), st.integers(0, 6))
    def test_wrong_length_result_is_a_prediction_error(self, batch, returned):
        p = predictor(lambda b: list(range(returned)), batched=True, name="short")
        if returned == len(batch) or not batch:
            assert len(p.predict(batch)) == len(batch)
            return
        with pytest.raises(PredictionError) as info:
            p.predict(batch)
        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value.__cause__) == (
            f"short returned {returned} outputs for a batch of {len(batch)}"
        )

    def test_non_batch_result_is_a_prediction_error(self):
        with pytest.raises(PredictionError) as info:
            predictor(lambda b: None, batched=True).predict([1])
        assert isinstance(info.value.__cause__, TypeError)

    def test_model_exception_propagates_unchanged(self):
        def broken(batch):
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            predictor(broken, batched=True).predict([1, 2])

    def test_empty_batch_does_not_call_the_model(self):
        fn = Recorder()
        assert predictor(fn, batched=True).predict([]) == []
        assert fn.calls == []


class TestHooks:
    @pytest.mark.parametrize("batched", [False, True])
    def test_preprocess_and_postprocess_wrap_each_item(self, batched):
        seen = []

        def model(x):
            seen.append(x)
            return [v + 1 for v in x] if batched else x + 1

        p = predictor(model, batched=batched, preprocess=int, postprocess=str)
        assert p.predict(["1", "2"]) == ["2", "3"]
        assert seen == ([[1, 2]] if batched else [1, 2])

    def test_hook_exception_propagates_unchanged(self):
        with pytest.raises(ValueError, match="invalid literal"):
            predictor(double, preprocess=int).predict(["x"])


class TestAttributes:
    def test_defaults(self):
        p = predictor(double)
        assert isinstance(p, Predictor)
        assert (p.name, p.version, p.signature) == ("double", "1", None)

    def test_bound_method_names_its_class(self):
        class MLP:
            def predict(self, x):
                return x

        assert predictor(MLP().predict).name == "MLP.predict"

    def test_overrides(self):
        signature = Signature([TensorSpec("x", "float32", (2,))])
        p = predictor(double, name="doubler", version="7", signature=signature)
        assert (p.name, p.version, p.signature) == ("doubler", "7", signature)

    def test_deep_copy_copies_a_bound_model(self):
        class Counter:
            def __init__(self):
                self.calls = 0

            def __call__(self, x):
                self.calls += 1
                return x

        model = Counter()
        p = predictor(model)
        clone = copy.deepcopy(p)
        clone.predict([1, 2])
        assert model.calls == 0  # replicas do not share the model's state


class TestPerItem:
    """The inline hot path calls a plain function directly, and only a plain one."""

    def test_a_plain_function_is_its_own_per_item_callable(self):
        fn = Recorder()
        assert predictor(fn)._per_item() is fn

    @pytest.mark.parametrize(
        "kwargs",
        [{"batched": True}, {"preprocess": double}, {"postprocess": double}],
        ids=["batched", "preprocess", "postprocess"],
    )
    def test_batched_or_hooked_functions_go_through_predict(self, kwargs):
        assert predictor(Recorder(), **kwargs)._per_item() is None

    @pytest.mark.parametrize("workers", [0, 1])
    def test_the_service_answers_the_same_either_way(self, workers):
        import modeldeploy as md

        plain = Recorder()
        hooked = Recorder()
        with (
            md.Service(predictor(plain), workers=workers) as direct,
            md.Service(predictor(hooked, postprocess=lambda y: y), workers=workers) as batched,
        ):
            for x in (1, 2.5, [3]):
                assert direct.predict(x) == batched.predict(x) == double(x)
            assert direct.handle(md.Request(b"7")).body == batched.handle(md.Request(b"7")).body
        assert plain.calls == hooked.calls == [1, 2.5, [3], 7]

    def test_errors_from_the_direct_call_are_typed_and_chained(self):
        import modeldeploy as md

        def model(x):
            if x == "typed":
                raise md.ValidationError("model says no")
            raise KeyError(x)

        with md.Service(predictor(model), workers=0) as service:
            with pytest.raises(md.PredictionError) as info:
                service.predict("boom")
            assert isinstance(info.value.__cause__, KeyError)
            with pytest.raises(md.ValidationError, match="model says no"):
                service.predict("typed")
            assert service.handle(md.Request(b'"typed"')).status == 422
            assert service.handle(md.Request(b'"boom"')).status == 500
