"""Panoptic data sets: the folder layout, Cityscapes instanceIds and COCO panoptic, each read
into ([3,H,W] image, [2,H,W] semantic + instance) items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.data import build_dataset
from atrous.errors import DataError


def test_cityscapes_instance_ids(tmp_path: Path):
    city = "aachen"
    (tmp_path / "leftImg8bit" / "val" / city).mkdir(parents=True)
    (tmp_path / "gtFine" / "val" / city).mkdir(parents=True)
    stem = f"{city}_000000_000019"
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(
        tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
    )
    ids = np.full((4, 6), 7, np.int32)  # road (train id 0)
    ids[0, :2] = 26 * 1000 + 3  # car instance 3 (train id 13)
    ids[1, :2] = 26 * 1000 + 5  # another car
    ids[2, :2] = 26  # car pixels without an instance: crowd
    ids[3, 0] = 0  # unlabeled: ignore
    # Cityscapes' instance files are 16-bit PNGs (ids up to 33999)
    png = tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_instanceIds.png"
    Image.fromarray(ids.astype(np.uint16)).save(png)
    Image.fromarray(np.full((4, 6), 7, np.uint8)).save(
        tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
    )
    data = build_dataset("cityscapes_panoptic", tmp_path, "val")
    _, mask = data[0]
    assert mask.shape == (2, 4, 6) and data.thing_classes == tuple(range(11, 19))
    assert mask[:, 0, 0].tolist() == [13, 3] and mask[:, 1, 0].tolist() == [13, 5]
    assert mask[:, 2, 0].tolist() == [13, 0]  # crowd
    assert mask[:, 3, 0].tolist() == [255, 0] and mask[:, 3, 5].tolist() == [0, 0]


def test_coco_panoptic(tmp_path: Path):
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations" / "panoptic_val2017").mkdir(parents=True)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "val2017" / "1.jpg")
    ids = np.zeros((3, 4), np.int64)
    ids[0] = 5  # a person
    ids[1] = 300  # another person (R=44, G=1)
    ids[2, :2] = 7  # sky (stuff)
    ids[2, 2:] = 9  # a crowd of persons
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "annotations" / "panoptic_val2017" / "1.png")
    spec = {
        "images": [{"id": 1, "file_name": "1.jpg"}],
        "categories": [
            {"id": 1, "name": "person", "isthing": 1},
            {"id": 187, "name": "sky", "isthing": 0},
        ],
        "annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [
            {"id": 5, "category_id": 1, "iscrowd": 0}, {"id": 300, "category_id": 1, "iscrowd": 0},
            {"id": 7, "category_id": 187, "iscrowd": 0}, {"id": 9, "category_id": 1, "iscrowd": 1},
        ]}],
    }  # fmt: skip
    (tmp_path / "annotations" / "panoptic_val2017.json").write_text(json.dumps(spec))
    data = build_dataset("coco_panoptic", tmp_path, "val")
    assert data.classes == ("person", "sky") and data.thing_classes == (0,)
    _, mask = data[0]
    assert torch.equal(mask[0], torch.tensor([[0] * 4, [0] * 4, [1, 1, 0, 0]]))
    assert torch.equal(mask[1], torch.tensor([[1] * 4, [2] * 4, [0, 0, 0, 0]]))  # crowd: 0
    (tmp_path / "annotations" / "panoptic_val2017" / "1.png").unlink()
    with pytest.raises(DataError, match="not found"):
        build_dataset("coco_panoptic", tmp_path, "val")


def test_data_check_counts_panoptic_instances(tmp_path: Path, capsys):
    from atrous.cli import main
    from atrous.data import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "p", num_train=3, num_val=1, size_range=(40, 48),
                                  seed=2, panoptic=True)  # fmt: skip
    assert main(["data", "check", "--dataset", "panoptic_folder", "--root", str(root),
                 "--split", "train"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    data = build_dataset("panoptic_folder", root, "train")
    expected = 0
    for k in range(len(data)):
        mask = data[k][1]
        member = (mask[1] > 0) & (mask[0] != 255)
        expected += len(set((mask[0][member] * 1000 + mask[1][member]).tolist()))
    assert f"{expected} thing instances (panoptic)" in out and expected > 0
