"""Tests for scikit-learn-style predictors, on real scikit-learn models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy.errors import ModelLoadError, ValidationError
from modeldeploy.interfaces import Predictor
from modeldeploy.messages import TensorSpec
from modeldeploy.predictors import predictor, signature_from_sklearn
from modeldeploy.predictors.sklearn import _SklearnPredictor
from modeldeploy.validation import compile_validator


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(120, 4))
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5])  # three classes
    return x, y


@pytest.fixture(scope="module")
def classifier(data):
    x, y = data
    return LogisticRegression(max_iter=500).fit(x, y)


class TestPredict:
    def test_matches_the_models_own_predict(self, classifier, data):
        x, _ = data
        p = predictor(classifier)
        assert isinstance(p, _SklearnPredictor)
        assert isinstance(p, Predictor)
        p.load()
        labels = p.predict(list(x[:10]))
        assert labels == classifier.predict(x[:10]).tolist()
        assert all(type(label) is int for label in labels)  # serializer-friendly

    def test_items_may_be_lists_or_arrays(self, classifier, data):
        x, _ = data
        p = predictor(classifier)
        assert p.predict([x[0].tolist(), x[1]]) == classifier.predict(x[:2]).tolist()

    def test_predict_proba_gives_one_row_per_item(self, classifier, data):
        x, _ = data
        p = predictor(classifier, method="predict_proba")
        rows = p.predict(list(x[:5]))
        assert len(rows) == 5
        np.testing.assert_allclose(np.stack(rows), classifier.predict_proba(x[:5]))
        assert all(row.shape == (3,) for row in rows)

    def test_item_by_item_agrees_with_batched(self, classifier, data):
        x, _ = data
        batched = predictor(classifier, method="predict_proba")
        single = predictor(classifier, method="predict_proba", batched=False)
        np.testing.assert_allclose(
            np.stack(single.predict(list(x[:4]))), np.stack(batched.predict(list(x[:4])))
        )

    def test_regressor_gives_floats(self, data):
        x, _ = data
        model = LinearRegression().fit(x, x @ [1.0, 2.0, 0.0, -1.0])
        p = predictor(model)
        np.testing.assert_allclose(p.predict(list(x[:3])), model.predict(x[:3]))

    def test_pipeline(self, data):
        x, y = data
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
        p = predictor(model, postprocess=lambda label: {"label": label})
        p.load()
        assert p.name == "Pipeline"
        assert p.predict([x[0]]) == [{"label": int(model.predict(x[:1])[0])}]

    def test_model_errors_propagate_unchanged(self, classifier):
        with pytest.raises(ValueError, match="features"):
            predictor(classifier).predict([[1.0, 2.0]])

    def test_deep_copy_predicts_the_same(self, classifier, data):
        x, _ = data
        p = predictor(classifier)
        clone = copy.deepcopy(p)
        assert clone.predict(list(x[:5])) == p.predict(list(x[:5]))


class TestConstruction:
    def test_defaults(self, classifier):
        p = predictor(classifier)
        assert (p.name, p.version, p.signature, p.batched) == (
            "LogisticRegression",
            "1",
            None,
            True,
        )

    def test_missing_method_is_refused_early(self, data):
        x, _ = data
        model = LinearRegression().fit(x, x[:, 0])
        with pytest.raises(TypeError, match="LinearRegression has no method 'predict_proba'"):
            predictor(model, method="predict_proba")

    def test_unfitted_model_fails_to_load(self):
        p = predictor(LogisticRegression())
        with pytest.raises(ModelLoadError) as info:
            p.load()
        assert info.value.message == "model is not fitted"
        assert type(info.value.__cause__).__name__ == "NotFittedError"

    def test_sklearn_style_object_from_another_library(self):
        class Booster:
            def predict_proba(self, x):
                return np.column_stack([1 - x[:, 0], x[:, 0]])

        p = predictor(Booster())
        p.load()  # not a scikit-learn estimator: nothing to check
        rows = p.predict([[0.25], [1.0]])
        assert [row.tolist() for row in rows] == [[0.75, 0.25], [0.0, 1.0]]


class TestSignatureFromSklearn:
    def test_classifier(self, classifier):
        signature = signature_from_sklearn(classifier)
        assert signature.inputs == (TensorSpec("input", "float64", (4,)),)
        assert signature.outputs == (TensorSpec("output", "int64", ()),)

    def test_predict_proba(self, classifier):
        signature = signature_from_sklearn(classifier, method="predict_proba")
        assert signature.outputs == (TensorSpec("output", "float64", (3,)),)

    def test_string_labels_and_options(self, data):
        x, y = data
        model = LogisticRegression().fit(x, np.array(["a", "b", "c"])[y])
        signature = signature_from_sklearn(
            model, dtype="float32", input_name="features", output_name="label"
        )
        assert signature.inputs == (TensorSpec("features", "float32", (4,)),)
        assert signature.outputs == (TensorSpec("label", "str", ()),)

    def test_regressor_output_is_open(self, data):
        x, _ = data
        model = LinearRegression().fit(x, x[:, 0])
        assert signature_from_sklearn(model).outputs == (TensorSpec("output"),)

    def test_unfitted_model_is_refused(self):
        with pytest.raises(ValueError, match="LogisticRegression has no n_features_in_"):
            signature_from_sklearn(LogisticRegression())

    def test_validates_requests_before_the_model(self, classifier, data):
        x, _ = data
        p = predictor(classifier, signature=signature_from_sklearn(classifier))
        check = compile_validator(p.signature)
        item = check(x[0].astype(np.float32).tolist())
        assert item.dtype == np.float64
        assert p.predict([item]) == classifier.predict(x[:1]).tolist()
        with pytest.raises(ValidationError, match=r"input 'input': expected shape \(4,\)"):
            check([1.0, 2.0])


# -- several rows per item, records and DataFrame-fitted models (issue #11, trap 4) ----

FEATURES = ["sepal_length", "sepal_width", "petal_length", "site"]


@pytest.fixture(scope="module")
def frame_pipeline(data):
    """A pipeline fitted on a DataFrame that selects its columns by name."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    x, y = data
    frame = pd.DataFrame(x[:, :3], columns=FEATURES[:3])
    frame["site"] = np.array(["north", "south"])[np.arange(len(frame)) % 2]
    columns = make_column_transformer(
        (StandardScaler(), FEATURES[:3]), (OneHotEncoder(), ["site"])
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=500)).fit(frame, y)
    return model, frame


class TestRows:
    def test_a_matrix_item_gets_one_output_per_row(self, classifier, data):
        x, _ = data
        p = predictor(classifier)
        one, three = p.predict([x[:1], x[1:4]])  # tritonclient's [1, 4], then [3, 4]
        np.testing.assert_array_equal(one, classifier.predict(x[:1]))
        np.testing.assert_array_equal(three, classifier.predict(x[1:4]))

    def test_items_of_every_form_in_one_batch(self, classifier, data):
        x, _ = data
        p = predictor(classifier, method="predict_proba")
        vector, rows = p.predict([x[0], x[1:3].tolist()])
        np.testing.assert_allclose(vector, classifier.predict_proba(x[:1])[0])
        np.testing.assert_allclose(rows, classifier.predict_proba(x[1:3]))

    def test_a_record_needs_feature_names(self, classifier):
        with pytest.raises(ValidationError, match="not fitted with feature names"):
            predictor(classifier).predict([{"a": 1.0}])


class TestFeatureNames:
    def test_records_vectors_and_columns(self, frame_pipeline):
        model, frame = frame_pipeline
        expected = model.predict(frame.iloc[:3]).tolist()
        records = frame.iloc[:3].to_dict("records")
        p = predictor(model)
        p.load()
        assert p.predict(records) == expected  # one record per item
        assert p.predict([list(r.values()) for r in records]) == expected  # vectors, in order
        (several,) = p.predict([records])  # a list of records: one item
        assert several.tolist() == expected
        columns = {name: frame[name].to_numpy()[:3] for name in FEATURES}  # V2, one per feature
        (by_column,) = p.predict([columns])
        assert by_column.tolist() == expected

    @pytest.mark.parametrize(
        ("record", "message"),
        [
            ({"sepal_length": 1.0}, "record is missing feature 'sepal_width'"),
            (
                {**dict.fromkeys(FEATURES[:3], 1.0), "site": "north", "colour": "red"},
                "record has unknown feature 'colour'",
            ),
        ],
    )
    def test_a_wrong_record_is_a_validation_error(self, frame_pipeline, record, message):
        p = predictor(frame_pipeline[0])
        p.load()
        with pytest.raises(ValidationError, match=message):
            p.predict([record])

    def test_served_behind_a_service(self, frame_pipeline):
        import modeldeploy as md

        model, frame = frame_pipeline
        record = frame.iloc[0].to_dict()
        with md.Service(model, workers=0) as service:
            response = service.handle(md.Request(md.JSON().dumps(record), "application/json"))
        assert response.status == 200, response.body
        assert md.JSON().loads(response.body) == model.predict(frame.iloc[:1]).tolist()[0]


class TestBatchAxis:
    def test_signature_declares_a_free_first_axis(self, classifier):
        signature = signature_from_sklearn(classifier, method="predict_proba", batch_axis=True)
        assert signature.inputs == (TensorSpec("input", "float64", (-1, 4)),)
        assert signature.outputs == (TensorSpec("output", "float64", (-1, 3)),)

    def test_a_one_row_matrix_passes_the_validator(self, classifier, data):
        x, _ = data
        p = predictor(classifier, signature=signature_from_sklearn(classifier, batch_axis=True))
        item = compile_validator(p.signature)(x[:1].tolist())
        (labels,) = p.predict([item])
        np.testing.assert_array_equal(labels, classifier.predict(x[:1]))
