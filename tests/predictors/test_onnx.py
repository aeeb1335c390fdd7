"""modeldeploy.predictors.onnx: ONNX Runtime sessions as predictors."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression

import modeldeploy as md
from modeldeploy.predictors.onnx import onnx_predictor

X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
LABELS = (X[:, 0] > 0).astype(np.int64)


@pytest.fixture(scope="module")
def classifier():
    model = LogisticRegression().fit(X, LABELS)
    return model, to_onnx(model, X[:1], options={"zipmap": False}).SerializeToString()


def test_reads_the_signature_and_predicts_like_sklearn(classifier):
    model, onx = classifier
    predictor = onnx_predictor(onx, name="clf")
    predictor.load()
    assert predictor.signature == md.Signature(
        [md.TensorSpec("X", "float32", (3,))],
        [md.TensorSpec("label", "int64", ()), md.TensorSpec("probabilities", "float32", (2,))],
    )
    outputs = predictor.predict(list(X[:5]))
    assert [o["label"] for o in outputs] == model.predict(X[:5]).tolist()
    np.testing.assert_allclose(
        np.stack([o["probabilities"] for o in outputs]), model.predict_proba(X[:5]), rtol=1e-5
    )


def test_selected_outputs(classifier, tmp_path):
    _, onx = classifier
    path = tmp_path / "clf.onnx"
    path.write_bytes(onx)
    predictor = onnx_predictor(path, outputs=["label"])
    predictor.load()
    assert [s.name for s in predictor.signature.outputs] == ["label"]
    assert predictor.predict([X[0], X[1]]) == LABELS[:2].tolist()
    with pytest.raises(md.ModelLoadError, match="no output 'proba'"):
        onnx_predictor(path, outputs=["proba"]).load()


def test_a_regressor_with_a_batch_axis_behind_the_service():
    model = LinearRegression().fit(X, X.sum(axis=1))
    predictor = onnx_predictor(to_onnx(model, X[:1]).SerializeToString(), name="sum")
    with md.Service(predictor, replicas=2, max_batch_size=8, max_batch_delay=0.001) as service:
        futures = [service.submit(row) for row in X[:8]]
        got = np.array([f.result(timeout=10) for f in futures]).reshape(-1)
    np.testing.assert_allclose(got, X[:8].sum(axis=1), rtol=1e-4, atol=1e-5)


def test_replicas_get_their_own_session(classifier):
    predictor = onnx_predictor(classifier[1])
    predictor.load()
    replica = copy.deepcopy(predictor)
    assert replica._session is None  # created by the replica's own load()
    replica.load()
    assert replica.predict([X[0]])[0]["label"] == predictor.predict([X[0]])[0]["label"]


def test_a_file_that_is_not_onnx_fails_to_load(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    service = md.Service(onnx_predictor(path))
    with pytest.raises(md.ModelLoadError):
        service.start()


def test_without_onnxruntime_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'modeldeploy\[onnx\]'"):
        onnx_predictor(b"")


def test_several_inputs_take_a_mapping_per_item():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # read by every onnxruntime this project supports
    predictor = onnx_predictor(model.SerializeToString(), name="add")
    with md.Service(predictor, workers=0) as service:
        assert [spec.name for spec in service.signature.inputs] == ["a", "b"]
        answer = service.predict({"a": [1.0, 2.0], "b": [10.0, 20.0]})
        assert answer.tolist() == [11.0, 22.0]
        with pytest.raises(md.ValidationError):
            service.predict({"a": [1.0, 2.0]})
