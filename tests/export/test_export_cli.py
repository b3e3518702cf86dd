"""`atrous export` on a trained checkpoint, run back through Predictor.from_file."""

from pathlib import Path

import numpy as np
import pytest
import torch

from atrous import Predictor
from atrous.cli import main
from atrous.errors import CheckpointError

IMAGE = np.random.default_rng(0).integers(0, 256, (41, 57, 3), dtype=np.uint8)


def test_onnx_export_runs_like_the_checkpoint(tiny_checkpoint: Path, tmp_path: Path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tiny_checkpoint),
                "--format",
                "onnx",
                "--dynamic",
                "--height",
                "64",
                "--width",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    reference = Predictor.from_checkpoint(tiny_checkpoint)
    exported = Predictor.from_file(out)
    assert exported.info.classes == reference.info.classes
    assert exported.mean == reference.mean and exported.std == reference.std
    torch.testing.assert_close(
        exported.logits(IMAGE), reference.logits(IMAGE), atol=1e-3, rtol=1e-3
    )
    # Multi-scale + flip through ONNX Runtime at sizes other than the traced one.
    ms = {"scales": (0.75, 1.25), "flip": True}
    torch.testing.assert_close(
        Predictor.from_file(out, **ms).predict_proba(IMAGE),
        Predictor.from_checkpoint(tiny_checkpoint, **ms).predict_proba(IMAGE),
        atol=1e-4,
        rtol=1e-3,
    )


def test_argmax_export_is_refused_by_the_predictor(tiny_checkpoint: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "labels.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tiny_checkpoint),
                "--with-argmax",
                "--height",
                "48",
                "--width",
                "48",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with pytest.raises(CheckpointError, match="needs logits"):
        Predictor.from_file(out)


def test_torchscript_export_and_checkpoint_through_from_file(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "model.pt"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tiny_checkpoint),
                "--format",
                "torchscript",
                "--height",
                "48",
                "--width",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    reference = Predictor.from_checkpoint(tiny_checkpoint)
    scripted = Predictor.from_file(out)
    assert scripted.info.classes == reference.info.classes
    torch.testing.assert_close(
        scripted.logits(IMAGE), reference.logits(IMAGE), atol=1e-4, rtol=1e-4
    )
    plain = Predictor.from_file(tiny_checkpoint)  # a checkpoint goes through from_checkpoint
    np.testing.assert_array_equal(plain.predict(IMAGE), reference.predict(IMAGE))


def test_damaged_exports_are_one_clear_error(tiny_checkpoint: Path, tmp_path: Path):
    from atrous.errors import ConfigError
    from atrous.export import export_onnx, export_torchscript
    from atrous.loader import load_model

    pytest.importorskip("onnxruntime")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.onnx: not a readable ONNX file"):
        Predictor.from_file(corrupt)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError):
        Predictor.from_file(broken)
    # An export never replaces a file it did not write: the checkpoint, a folder, a file's child.
    model, state = load_model(tiny_checkpoint)
    before = tiny_checkpoint.read_bytes()
    with pytest.raises(ConfigError, match="is not an atrous export"):
        export_torchscript(model, tiny_checkpoint)
    with pytest.raises(ConfigError, match="is not an atrous export"):
        export_onnx(model, tiny_checkpoint, height=48, width=48)
    assert tiny_checkpoint.read_bytes() == before
    with pytest.raises(ConfigError, match="is a folder"):
        export_onnx(model, tmp_path, height=48, width=48)
    with pytest.raises(ConfigError, match="is a file"):
        export_onnx(model, tiny_checkpoint / "model.onnx", height=48, width=48)
    # ... but replaces its own earlier export.
    out = tmp_path / "model.onnx"
    for _ in range(2):
        export_onnx(model, out, height=48, width=48, metadata={"classes": state["classes"]})
    ts = tmp_path / "model.ts"
    for _ in range(2):
        export_torchscript(model, ts, metadata={"classes": state["classes"]})
