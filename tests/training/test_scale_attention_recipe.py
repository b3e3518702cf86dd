"""Attention to scale where users meet it: a recipe trains it, the checkpoint rebuilds it,
evaluation runs it, ``atrous predict --save-attention`` draws its weights, ONNX exports it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atrous.cli import main
from atrous.inference import Predictor
from atrous.loader import load
from atrous.models import ScaleAttentionDeepLab
from atrous.training import train
from tests.conftest import tiny_config


def test_a_recipe_trains_attention_to_scale_and_the_tools_take_it(
    tiny_data: Path, tmp_path: Path, capsys
) -> None:
    cfg = tiny_config(
        tiny_data,
        tmp_path / "run",
        "train.steps=30",
        "model.scale_attention={scales: [1.0, 0.5], merge: attention, attention_channels: 8}",
    )
    result = train(cfg, progress=False)
    losses = result["losses"]
    assert sum(losses[-8:]) < sum(losses[:8])  # the merged + per-scale loss went down
    assert result["metrics"] is not None and 0 <= result["metrics"]["miou"] <= 1
    loaded = load(result["checkpoint"])
    assert isinstance(loaded.model, ScaleAttentionDeepLab) and loaded.model.scales == (1.0, 0.5)
    # predict --save-attention writes one heatmap per scale beside the prediction
    out = tmp_path / "pred"
    image = tiny_data / "images" / "val_0000.jpg"
    assert main(["predict", "--checkpoint", str(result["checkpoint"]), str(image),
                 "--out", str(out), "--save-attention", "--device", "cpu"]) == 0  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "atrous_predictions.json",  # the writer's list of what it wrote
        "val_0000.png",
        "val_0000_attention_0.50.png",
        "val_0000_attention_1.00.png",
        "val_0000_overlay.jpg",
    ]
    with Image.open(out / "val_0000_attention_1.00.png") as heat, Image.open(image) as src:
        assert heat.size == src.size and heat.mode == "RGB"
    # ONNX with dynamic sizes reproduces the wrapped model
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(result["checkpoint"]), "--dynamic",
                 "--height", "65", "--width", "65", "--out", str(onnx)]) == 0  # fmt: skip
    exported = Predictor.from_loaded(load(onnx))
    array = np.random.default_rng(0).integers(0, 256, (50, 61, 3), dtype=np.uint8)
    torch.testing.assert_close(
        exported.logits(array), Predictor.from_loaded(loaded).logits(array), atol=1e-3, rtol=1e-3
    )


def test_save_attention_needs_an_attention_model(tiny_checkpoint: Path, tmp_path: Path, capsys):
    image = next((tiny_checkpoint.parent / "data" / "images").glob("*.jpg"), None)
    if image is None:  # the fixture's data lives elsewhere: any image will do
        image = tmp_path / "x.png"
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    code = main(["predict", "--checkpoint", str(tiny_checkpoint), str(image),
                 "--out", str(tmp_path / "o"), "--save-attention", "--device", "cpu"])  # fmt: skip
    assert code == 2
    assert "not trained with model.scale_attention" in capsys.readouterr().err
