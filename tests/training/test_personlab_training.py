"""PersonLab trained end to end on synthetic people: the loss falls, the run is scored by
keypoint and mask AP, and the checkpoint loads back as the same model."""

from __future__ import annotations

import json
from pathlib import Path

from atrous.cli import main
from atrous.config import load_config
from atrous.data import make_synthetic_people
from atrous.loader import load
from atrous.models import PersonLab
from atrous.training import train


def test_training_on_synthetic_people_lowers_the_loss_and_scores_ap(tmp_path: Path, capsys):
    data = make_synthetic_people(tmp_path / "data", num_train=8, num_val=3, size=(64, 64),
                                 seed=1)  # fmt: skip
    cfg = load_config(None, [
        "task=personlab", "data.dataset=coco_keypoints", f"data.root={data}",
        "data.crop_size=64", "data.num_workers=0", "data.hflip=true", "model.name=personlab",
        "model.backbone=mobilenetv2", "model.width_mult=0.25", "model.channels=32",
        "model.radius=6.0", "model.atrous_rates=[1, 2, 3]", "model.refine_stride=4",
        "train.optimizer=adam", "train.lr=0.002", "train.steps=40", "train.batch_size=2",
        f"train.out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    result = train(cfg, progress=False)
    losses = result["losses"]
    assert sum(losses[-10:]) < sum(losses[:10])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("keypoint_ap", "mask_ap", "miou"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["images"] == 3
    model = load(result["checkpoint"]).model
    assert isinstance(model, PersonLab) and model.radius == 6.0 and model.refine_stride == 4
    # atrous eval scores the checkpoint with its task: the same numbers, and the AP table
    args = ["eval", "--checkpoint", str(result["checkpoint"]), "--data", str(data),
            "--dataset", "coco_keypoints", "--split", "val", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "keypoints" in printed and "masks" in printed and "AP50" in printed
    scored = json.loads((tmp_path / "run" / "eval_val.json").read_text())
    assert scored["keypoint_ap"] == saved["keypoint_ap"] and scored["mask_ap"] == saved["mask_ap"]
