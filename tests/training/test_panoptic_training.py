"""Panoptic-DeepLab's targets by hand, its loss, and training on the panoptic demo scenes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from atrous.config import load_config
from atrous.data import build_dataset, make_synthetic_dataset
from atrous.loader import load
from atrous.models import PanopticDeepLab
from atrous.tasks.panoptic_targets import panoptic_loss, panoptic_targets
from atrous.training import train


def _masks() -> torch.Tensor:
    semantic = torch.zeros(1, 40, 40, dtype=torch.int64)  # stuff class 0
    instance = torch.zeros_like(semantic)
    semantic[0, 10:15, 10:21] = 1  # thing class 1, instance 1: 5 x 11 pixels
    instance[0, 10:15, 10:21] = 1
    semantic[0, 30:32, 30:32] = 2  # thing class 2 without an instance: crowd
    semantic[0, 0, :] = 255  # void row
    return torch.stack([semantic, instance], dim=1)


def test_targets_by_hand():
    t = panoptic_targets(_masks(), thing_classes=[1, 2], sigma=2.0)
    # centre of mass of rows 10-14, columns 10-20: (12, 15); the peak sits there
    assert t["center"].shape == (1, 1, 40, 40) and t["center"][0, 0, 12, 15] == 1.0
    assert t["center"][0, 0, 12, 17] == pytest.approx(math.exp(-4 / 8))  # 2 px away, sigma 2
    assert t["center"][0, 0, 12, 15 + 8] == 0  # beyond the window of 3 sigma + 1 = 7 pixels
    # offsets point from each instance pixel to the (float) centre
    assert t["offset"][0, :, 10, 10].tolist() == [2.0, 5.0]
    assert t["offset"][0, :, 14, 20].tolist() == [-2.0, -5.0]
    assert t["offset_weight"][0, 0].sum() == 55 and t["offset_weight"][0, 0, 30, 30] == 0
    # crowd and void are ignored by the centre loss, stuff is not
    assert t["center_weight"][0, 0, 30, 30] == 0 and t["center_weight"][0, 0, 0, 5] == 0
    assert t["center_weight"][0, 0, 20, 5] == 1
    # an instance under 4096 pixels weighs 3 in the semantic loss
    assert t["semantic_weight"][0, 12, 12] == 3 and t["semantic_weight"][0, 20, 5] == 1


def test_loss_is_zero_on_its_targets_and_weights_its_parts():
    t = panoptic_targets(_masks(), thing_classes=[1, 2])
    big = 30.0
    logits = torch.full((1, 3, 40, 40), -big)
    logits.scatter_(1, t["semantic"].clamp(max=2).unsqueeze(1), big)
    perfect = {"semantic": logits, "center": t["center"], "offset": t["offset"]}
    assert panoptic_loss(perfect, t).item() == pytest.approx(0.0, abs=1e-6)
    off = {**perfect, "offset": t["offset"] + 1.0}  # 1 px off on both axes: L1 2 per pixel
    assert panoptic_loss(off, t).item() == pytest.approx(0.01 * 2, rel=1e-5)
    centre = {**perfect, "center": t["center"] + 0.1}  # MSE 0.01 over unignored pixels
    assert panoptic_loss(centre, t).item() == pytest.approx(200 * 0.01, rel=1e-4)


def test_training_on_panoptic_scenes_lowers_the_loss_and_scores_pq(tmp_path: Path):
    data = make_synthetic_dataset(tmp_path / "data", num_train=8, num_val=3,
                                  size_range=(48, 72), seed=1, panoptic=True)  # fmt: skip
    dataset = build_dataset("panoptic_folder", data, "train")
    assert dataset.thing_classes == (1, 2, 3, 4) and dataset[0][1].shape[0] == 2
    cfg = load_config(None, [
        "data.dataset=panoptic_folder", f"data.root={data}", "data.crop_size=48",
        "data.num_workers=0", "model.name=panoptic_deeplab", "model.backbone=mobilenetv2",
        "model.width_mult=0.25", "train.optimizer=adam", "train.lr=0.001", "train.steps=40",
        "train.batch_size=2", f"train.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    result = train(cfg, progress=False)
    losses = result["losses"]
    assert sum(losses[-10:]) < sum(losses[:10])
    panoptic = result["metrics"]["panoptic"]
    assert 0 <= panoptic["pq"] <= 1 and 0 <= panoptic["pc"] <= 1 and "things" in panoptic
    model = load(result["checkpoint"]).model
    assert isinstance(model, PanopticDeepLab) and model.thing_classes == (1, 2, 3, 4)


def test_atrous_rates_reach_both_aspps():
    from atrous.models import panoptic_deeplab

    model = panoptic_deeplab(backbone="mobilenetv2", width_mult=0.25, num_classes=3,
                             thing_classes=[1], atrous_rates=(1, 2, 3))  # fmt: skip
    assert model.semantic_aspp.rates_at_os16 == (1, 2, 3)
    assert model.instance_aspp.rates_at_os16 == (1, 2, 3)
    assert panoptic_deeplab(
        backbone="mobilenetv2", width_mult=0.25
    ).semantic_aspp.rates_at_os16 == (6, 12, 18)
