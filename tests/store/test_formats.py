"""Store formats: each saves, loads with the saved signature, and answers like the original."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modeldeploy as md
from modeldeploy.store import ModelStore, formats

X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.2, 0.9], [0.8, 0.1]])
Y = np.array([0, 1, 1, 0, 0, 1])
ROWS = [[0.1, 0.9], [0.9, 0.2], [0.5, 0.5]]
SIGNATURE = md.Signature([md.TensorSpec("input", "float32", (2,))], [md.TensorSpec("output")])


class Linear:
    """A model made of data: weights and a bias."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.weights = np.asarray(params["weights"], dtype=float)
        self.bias = float(params["bias"])

    def predict(self, rows: Any) -> Any:
        return np.asarray(rows, dtype=float) @ self.weights + self.bias


PARAMS = {"weights": [2.0, -1.0], "bias": 0.5}
EXPECTED = (np.asarray(ROWS) @ np.array(PARAMS["weights"]) + PARAMS["bias"]).tolist()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path, key="k")


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


@pytest.mark.parametrize("name", ["json", "msgpack", "pickle", "protobuf", "xml"])
def test_serializer_formats_hold_data_for_a_factory(store: ModelStore, name: str) -> None:
    store.save("linear", PARAMS, format=name, factory=Linear, signature=SIGNATURE)
    version = store.versions("linear")[-1]
    assert (store.root / "linear" / version / formats.get(name).filename).is_file()
    loaded = store.load("linear")
    loaded.load()
    assert loaded.signature == SIGNATURE
    assert loaded.predict(ROWS) == pytest.approx(EXPECTED)


def test_joblib(store: ModelStore, estimator: LogisticRegression) -> None:
    store.save("clf", estimator, format="joblib", signature=SIGNATURE)
    loaded = store.load("clf")
    loaded.load()
    assert loaded.signature == SIGNATURE
    assert loaded.predict(ROWS) == estimator.predict(ROWS).tolist()


def test_onnx_from_skl2onnx(store: ModelStore, estimator: LogisticRegression) -> None:
    from skl2onnx import to_onnx

    onnx_model = to_onnx(estimator, X[:1].astype(np.float32), options={"zipmap": False})
    signature = md.Signature(
        [md.TensorSpec("X", "float32", (2,))],
        [md.TensorSpec("label", "int64", ()), md.TensorSpec("probabilities", "float32", (2,))],
    )
    store.save("clf", onnx_model, format="onnx", signature=signature)
    loaded = store.load("clf", "latest")  # data only: no trust needed even without the key
    loaded.load()
    assert loaded.signature == signature
    outputs = loaded.predict(ROWS)
    assert [o["label"] for o in outputs] == estimator.predict(ROWS).tolist()
    probabilities = np.stack([o["probabilities"] for o in outputs])
    assert probabilities == pytest.approx(estimator.predict_proba(ROWS), abs=1e-5)


def test_onnx_loads_without_a_key(tmp_path: Path, estimator: LogisticRegression) -> None:
    from skl2onnx import to_onnx

    store = ModelStore(tmp_path)
    store.save("clf", to_onnx(estimator, X[:1].astype(np.float32)), format="onnx")
    loaded = store.load("clf")
    loaded.load()
    assert loaded.signature is not None  # none was saved: read from the model
    assert [s.name for s in loaded.signature.outputs] == ["output_label", "output_probability"]
    assert loaded.predict(ROWS)[0]["output_label"] == estimator.predict(ROWS)[0]


def test_onnx_file_saved_as_it_is(tmp_path: Path, estimator: LogisticRegression) -> None:
    from skl2onnx import to_onnx

    path = tmp_path / "exported.onnx"
    path.write_bytes(to_onnx(estimator, X[:1].astype(np.float32)).SerializeToString())
    store = ModelStore(tmp_path / "store")
    store.save_file("clf", path, format="onnx")
    assert (store.root / "clf" / "v1" / "model.onnx").read_bytes() == path.read_bytes()
    loaded = store.load("clf")
    loaded.load()
    assert loaded.predict(ROWS[:1])[0]["output_label"] == estimator.predict(ROWS)[0]


def test_lightgbm(tmp_path: Path) -> None:
    import lightgbm

    rng = np.random.default_rng(0)
    features = rng.random((60, 3))
    labels = (features[:, 0] > 0.5).astype(int)
    model = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=2, verbose=-1)
    model.fit(features, labels)
    store = ModelStore(tmp_path)  # a text model: loads without trust
    store.save("gbm", model, format="lightgbm")
    loaded = store.load("gbm")
    expected = model.booster_.predict(features[:4])
    assert loaded.predict(features[:4].tolist()) == pytest.approx(expected.tolist())


def _tiny_net() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))


def test_torch_state_dict(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = _tiny_net()
    store = ModelStore(tmp_path)  # weights only: loads without trust
    store.save("net", net, format="torch", factory=_tiny_net, signature=SIGNATURE)
    assert store.manifest("net").factory == "tests.store.test_formats:_tiny_net"
    with torch.no_grad():
        net[0].weight.fill_(0.5)  # the factory's fresh weights differ from the saved ones
    store.save("net", net, format="torch", factory=_tiny_net)
    loaded = store.load("net", factory=_tiny_net)
    loaded.load()
    with torch.no_grad():
        expected = net(torch.tensor(ROWS, dtype=torch.float32)).numpy()
    outputs = np.stack(loaded.predict(ROWS))
    assert outputs == pytest.approx(expected)
    assert store.load("net", "v1", trusted=True).signature == SIGNATURE


def test_torch_without_a_factory_is_a_load_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    store = ModelStore(tmp_path)
    store.save("net", _tiny_net().state_dict(), format="torch")
    with pytest.raises(md.ModelLoadError, match="needs its module"):
        store.load("net", trusted=True)


def test_a_missing_framework_names_its_extra(
    store: ModelStore, estimator: LogisticRegression, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skl2onnx import to_onnx

    store.save("clf", to_onnx(estimator, X[:1].astype(np.float32)), format="onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(md.ModelLoadError, match=r"pip install 'modeldeploy\[onnx\]'"):
        store.load("clf")


def test_a_corrupt_artifact_with_a_valid_hash_is_a_load_error(store: ModelStore) -> None:
    store.save_file("clf", Path(__file__), format="onnx")  # not an ONNX file, but hashed
    loaded = store.load("clf")  # the session is made by load(), as the Service calls it
    with pytest.raises(md.ModelLoadError, match="cannot be loaded"):
        loaded.load()


class TestRegistry:
    def test_builtins_are_listed(self) -> None:
        assert {"json", "msgpack", "pickle", "protobuf", "xml", "joblib", "onnx", "torch"} <= set(
            formats.names()
        )

    def test_unknown(self) -> None:
        with pytest.raises(md.ModelLoadError, match="unknown model format 'nope'"):
            formats.get("nope")

    def test_register_a_format(self, store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
        class Lines:
            name = "lines"
            filename = "model.txt"
            pickled = False

            def dump(self, model: Any, /) -> bytes:
                return "\n".join(model).encode()

            def load(self, data: bytes, /, *, trusted: bool) -> Any:
                table = data.decode().split("\n")
                return lambda i: table[i]

        monkeypatch.setattr(formats, "_registered", dict(formats._registered))
        formats.register(Lines())
        assert "lines" in formats.names()
        store.save("lookup", ["a", "b"], format="lines")
        assert store.load("lookup").predict([1, 0]) == ["b", "a"]

    def test_register_refuses_what_is_not_a_format(self) -> None:
        with pytest.raises(TypeError, match="not a ModelFormat"):
            formats.register(object())  # type: ignore[arg-type]
