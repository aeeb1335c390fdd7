"""modeldeploy.predictors.torch: PyTorch modules and exported programs as predictors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import modeldeploy as md
from modeldeploy.predictors.torch import torch_predictor


def test_without_torch_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'modeldeploy\[torch\]'"):
        torch_predictor("model.pt2")


@pytest.fixture
def torch():
    """torch, or a skip: PyTorch is tested where it is installed (not by the Makefile)."""
    return pytest.importorskip("torch")


@pytest.fixture
def module(torch):
    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)
            self.dropout = torch.nn.Dropout(0.9)

        def forward(self, x):
            hidden = self.dropout(self.linear(x))
            return hidden, hidden.sum(dim=1)

    torch.manual_seed(0)
    return TwoHeads()


def test_a_module_in_eval_mode_batch_by_batch(torch, module):
    predictor = torch_predictor(module)
    predictor.load()
    assert not module.training  # dropout off: answers are deterministic
    items = [np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0])]
    outputs = predictor.predict(items)
    assert predictor.name == "TwoHeads"
    expected = module.linear(torch.tensor(np.stack(items), dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(np.stack([o["output0"] for o in outputs]), expected, rtol=1e-6)
    assert [o["output1"] for o in outputs] == pytest.approx(expected.sum(axis=1).tolist())


def test_an_exported_program_from_a_file(torch, module, tmp_path):
    module.eval()
    program = torch.export.export(
        module, (torch.ones(2, 3),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path / "heads.pt2"
    torch.export.save(program, path)
    with md.Service(torch_predictor(path), max_batch_size=4, max_batch_delay=0.001) as service:
        answer = service.predict([1.0, 2.0, 3.0])
    assert set(answer) == {"output0", "output1"} and answer["output0"].dtype == np.float32


def test_a_broken_file_fails_to_load(torch, tmp_path):
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"nope")
    with pytest.raises(md.ModelLoadError):
        md.Service(torch_predictor(path)).start()


def test_refuses_other_objects(torch):
    with pytest.raises(TypeError, match=r"nn\.Module or a \.pt2 path"):
        torch_predictor(42)
