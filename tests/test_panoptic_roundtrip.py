"""Panoptic-DeepLab's codec round trip (CONVENTIONS 17): the ground truth's own centre heatmap and
offsets, with one-hot semantic logits, through the post-processing give back the ground truth
(PQ exactly 1 on things and stuff) on the demo's synthetic scenes (shapes of 3 pixels to most of
the image, occluding each other, rings whose centre lies in their hole), with the library's
(Cityscapes) settings and with the panoptic demo's; and the recipe's ``panoptic:`` section
reaches the task's targets, losses and evaluator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from atrous.config import load_config, task_of
from atrous.data import build_dataset, make_synthetic_dataset
from atrous.demo import PANOPTIC_OVERRIDES
from atrous.metrics import PanopticQuality
from atrous.tasks.panoptic import POSTPROCESS_KEYS, PanopticTask, panoptic_ids
from atrous.tasks.panoptic_decode import panoptic_from_outputs
from atrous.tasks.panoptic_targets import panoptic_targets

PAPER = load_config(None, ["task=panoptic", "model.name=panoptic_deeplab",
                           "data.dataset=panoptic_folder"]).panoptic  # fmt: skip
DEMO = load_config(None, list(PANOPTIC_OVERRIDES)).panoptic


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 held-out demo scenes (96-160 px) with instance maps."""
    root = tmp_path_factory.mktemp("panoptic_scenes")
    return make_synthetic_dataset(root, num_train=0, num_val=40, seed=3, panoptic=True)


@pytest.mark.parametrize("settings", [PAPER, DEMO], ids=["library", "demo"])
def test_ground_truth_centres_and_offsets_give_pq_1(scenes: Path, settings):
    data = build_dataset("panoptic_folder", scenes, "val")
    things = data.thing_classes
    options = {key: getattr(settings, key) for key in POSTPROCESS_KEYS}
    pq = PanopticQuality(data.num_classes, thing_classes=things)
    instances = 0
    for index in range(len(data)):
        _, mask = data[index]
        masks = mask.as_subclass(torch.Tensor).unsqueeze(0)
        targets = panoptic_targets(
            masks, things, sigma=settings.sigma, small_area=settings.small_area
        )
        semantic = targets["semantic"].masked_fill(targets["semantic"] == 255, 0)
        logits = F.one_hot(semantic, data.num_classes).permute(0, 3, 1, 2).float()
        pan = panoptic_from_outputs(logits, targets["center"], targets["offset"], things, **options)
        gt = panoptic_ids(masks[0])
        instances += int(((torch.unique(gt) % 1000) > 0).sum())
        pq.update(pan[0], gt)
    result = pq.compute()
    assert instances > 100  # the scenes hold many instances, small ones among them
    assert result["things"]["pq"] == 1.0
    assert result["stuff"]["pq"] == 1.0
    assert int(pq.fp.sum()) == 0 and int(pq.fn.sum()) == 0


def test_the_library_defaults_are_the_papers():
    """Sigma 8, centre MSE x200, offset L1 x0.01, x3 under 64x64 pixels; threshold 0.1, NMS 7,
    top 200 centres, stuff under 2048 pixels void (Panoptic-DeepLab on Cityscapes)."""
    assert dataclasses.asdict(PAPER) == {
        "sigma": 8.0, "small_area": 4096, "small_weight": 3.0,
        "center_weight": 200.0, "offset_weight": 0.01,
        "threshold": 0.1, "nms_kernel": 7, "top_k": 200, "stuff_area": 2048,
    }  # fmt: skip
    task = PanopticTask()
    assert task.targets == {"sigma": 8.0, "small_area": 4096, "small_weight": 3.0}
    assert task.weights == {"center_weight": 200.0, "offset_weight": 0.01}


def test_the_recipe_section_reaches_the_task(monkeypatch: pytest.MonkeyPatch):
    cfg = load_config(None, [*PANOPTIC_OVERRIDES, "panoptic.sigma=3",
                             "panoptic.offset_weight=0.5", "panoptic.nms_kernel=5"])  # fmt: skip
    task = task_of(cfg)
    assert isinstance(task, PanopticTask)
    assert task.targets["sigma"] == 3.0 and task.weights["offset_weight"] == 0.5
    assert task.postprocess["nms_kernel"] == 5
    seen = {}

    def spy(masks, thing_classes, **options):
        seen.update(options)
        return panoptic_targets(masks, thing_classes, **options)

    monkeypatch.setattr("atrous.tasks.panoptic.panoptic_targets", spy)
    task.thing_classes = (1,)
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.long)
    masks[0, 0, 2:5, 2:5], masks[0, 1, 2:5, 2:5] = 1, 1
    outputs = {"semantic": torch.zeros(1, 2, 8, 8), "center": torch.zeros(1, 1, 8, 8),
               "offset": torch.zeros(1, 2, 8, 8)}  # fmt: skip
    task.loss(outputs, masks)
    assert seen["sigma"] == 3.0
    model = SimpleNamespace(label_divisor=1000, thing_classes=(1,))
    evaluator = task.evaluator(SimpleNamespace(model=model), 2)
    assert evaluator.panoptic.options["nms_kernel"] == 5


def test_metrics_json_keeps_things_pq(tmp_path: Path):
    """The panoptic demo's metrics.json (written by the training loop) holds
    panoptic.things.pq beside mIoU, with the demo's post-processing."""
    from atrous.training import train

    data = make_synthetic_dataset(tmp_path / "data", num_train=4, num_val=2,
                                  size_range=(48, 64), seed=1, panoptic=True)  # fmt: skip
    cfg = load_config(None, [*PANOPTIC_OVERRIDES, f"data.root={data}", "data.crop_size=48",
                             "model.width_mult=0.25", "train.steps=2", "train.batch_size=2",
                             f"train.out_dir={tmp_path / 'run'}"])  # fmt: skip
    train(cfg, progress=False)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= written["panoptic"]["things"]["pq"] <= 1 and "miou" in written
