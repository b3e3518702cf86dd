"""pt2 and dynamo-ONNX parity with eager mode at several sizes; int8 (ONNX Runtime static
QDQ, PT2E) of a trained tiny model within a stated tolerance of fp32."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from atrous import Predictor
from atrous.cli import main
from atrous.export import export_onnx, export_pt2, load_pt2
from atrous.models import deeplabv3plus
from tests.conftest import tiny_config

SIZES = [(65, 65), (97, 81), (50, 77)]  # the traced size and two others, odd ones included


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    for m in net.modules():  # non-trivial BN statistics so eval mode differs from identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_pt2_matches_eager_at_every_size(model: nn.Module, tmp_path: Path):
    path = export_pt2(model, tmp_path / "m.pt2", metadata={"classes": ["a"]}, height=65, width=65)
    program, meta = load_pt2(path)
    assert meta == {"classes": ["a"]}
    generator = torch.Generator().manual_seed(1)
    for height, width in [*SIZES, (33, 129)]:
        x = torch.randn(3, 3, height, width, generator=generator)  # batch 3: batch is dynamic
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), atol=1e-4, rtol=1e-4)


def test_dynamo_onnx_matches_eager_at_every_size(model: nn.Module, tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    path = export_onnx(model, tmp_path / "m.onnx", height=65, width=65, dynamic=True)
    assert onnx.load(str(path)).opset_import[0].version >= 18  # the dynamo exporter wrote it
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(2)
    for height, width in SIZES:
        x = torch.randn(2, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for 200 steps: confident enough that int8 rounding rarely flips a
    pixel's class (3-step checkpoints sit on near-ties)."""
    from atrous.training import train

    out = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(tiny_data, out, "train.steps=200", "train.lr=0.05")
    return train(cfg, progress=False)["checkpoint"]


def _eval(path: Path, data: Path, out: Path) -> dict:
    args = ["eval", "--checkpoint", str(path), "--data", str(data), "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


# int8 vs fp32 on the 3 held-out tiny scenes: mIoU within 2 points, 97 % of pixels agree.
MIOU_TOLERANCE, AGREEMENT = 0.02, 0.97


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_int8_evaluates_within_tolerance_of_fp32(
    fmt: str, trained: Path, tiny_data: Path, tmp_path: Path
):
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "torchao")
    out = tmp_path / f"int8.{fmt}"
    args = ["export", "--checkpoint", str(trained), "--format", fmt, "--int8", "--out", str(out)]
    args += ["--calibration", "train", "--data", str(tiny_data), "--height", "48", "--width", "48"]
    assert main(args) == 0
    fp32 = _eval(trained, tiny_data, tmp_path / "fp32.json")
    int8 = _eval(out, tiny_data, tmp_path / "int8.json")
    assert fp32["miou"] > 0.3  # trained: the comparison means something
    assert abs(int8["miou"] - fp32["miou"]) <= MIOU_TOLERANCE
    reference, quantized = Predictor.from_checkpoint(trained), Predictor.from_file(out)
    assert quantized.info.classes == reference.info.classes
    images = sorted((tiny_data / "images").glob("val_*.jpg"))
    agree = np.mean([(quantized(i) == reference(i)).float().mean().item() for i in images])
    assert agree >= AGREEMENT
    if fmt == "onnx":  # QDQ: quantize/dequantize pairs, and the calibration is recorded
        import onnx

        proto = onnx.load(str(out))
        ops = {node.op_type for node in proto.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        props = {p.key: json.loads(p.value) for p in proto.metadata_props}
        assert props["int8"]["calibration_images"] == 8 and "classes" in props


def test_calibration_sources_and_their_errors(tiny_checkpoint: Path, tiny_data: Path, capsys):
    from atrous.inference.calibration import calibration_inputs

    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    folder = list(calibration_inputs(tiny_data / "images", predictor, limit=4))
    assert len(folder) == 4 and all(x.dtype == torch.float32 and x.shape[0] == 3 for x in folder)
    first = sorted((tiny_data / "images").glob("*.jpg"))[0]
    torch.testing.assert_close(folder[0], predictor.normalize(first))  # the predictor's own
    split = list(calibration_inputs("val", predictor, data=tiny_data))
    assert len(split) == 3
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--int8", "--out", "x.onnx"]
    assert main([*args, "--calibration", "val"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(args) == 2
    assert "--int8 and --calibration" in capsys.readouterr().err
