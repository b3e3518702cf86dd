"""Export details: metadata, the argmax graph, TorchScript's archive. Parity with eager PyTorch for
every builder in MODELS is in tests/models/test_battery.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from atrous.export import export_onnx, export_torchscript, load_torchscript
from atrous.models import deeplabv1, deeplabv3plus

METADATA = {
    "classes": ["background", "cat", "dog", "person"],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
SIZE, OTHER = (65, 65), (97, 81)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    # non-trivial BN statistics so eval mode differs from identity
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def _session(path: Path):  # noqa: ANN202
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_dynamic_matches_eager(model: nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = export_onnx(
        model, tmp_path / "m.onnx", height=SIZE[0], width=SIZE[1], dynamic=True, metadata=METADATA
    )
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for batch, size in ((1, SIZE), (2, OTHER)):
        x = torch.randn(batch, 3, *size)
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == (batch, 4, *size)
        assert np.abs(got - _eager(model, x)).max() < 1e-3
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props == {"atrous_export": "1", **{k: json.dumps(v) for k, v in METADATA.items()}}
    assert model.training is False


def test_onnx_static_argmax(model: nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "m.onnx", height=SIZE[0], width=SIZE[1], with_argmax=True)
    session = _session(path)
    assert [o.name for o in session.get_outputs()] == ["labels"]
    x = torch.randn(1, 3, *SIZE)
    (labels,) = session.run(None, {"image": x.numpy()})
    assert labels.dtype == np.int64 and labels.shape == (1, *SIZE)
    logits = _eager(model, x)
    expected = logits.argmax(1)
    # ties within float noise may flip; demand agreement wherever the margin is clear
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3
    assert (labels[clear] == expected[clear]).all()


def test_torchscript_matches_eager(model: nn.Module, tmp_path: Path) -> None:
    path = export_torchscript(model, tmp_path / "m.pt", metadata=METADATA)
    loaded, meta = load_torchscript(path)
    assert meta == METADATA
    for size in (SIZE, OTHER):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            got = loaded(x).numpy()
        assert np.abs(got - _eager(model, x)).max() < 1e-3


def test_onnx_metadata_rejects_non_json(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    net = deeplabv1(num_classes=4)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        export_onnx(net, tmp_path / "m.onnx", height=33, width=33, metadata={"bad": object()})
