"""Synthetic shape scenes in the COCO instances layout: deterministic per seed, read back by the
real reader, and full of touching same-class instances (what MaskLab is meant to split)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from atrous.data import COCOInstances, build_dataset, instance_semantic, make_synthetic_instances
from atrous.data.instances import mask_boxes
from atrous.data.synthetic_instances import CLASSES, MIN_PIXELS, touching_pairs


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    return make_synthetic_instances(root, num_train=6, num_val=40, size=(96, 112), seed=2)


def test_synthetic_instances_read_back(shapes: Path):
    spec = json.loads((shapes / "annotations" / "instances_val2017.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in spec["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    data = build_dataset("coco_instances", shapes, "val")
    assert isinstance(data, COCOInstances) and len(data) == 40  # val keeps every image
    assert data.classes == ("background", *CLASSES) and data.category_ids == (1, 2, 3)
    assert len(COCOInstances(shapes, "train")) <= 6
    for index in range(len(data)):
        image, target = data[index]
        written = by_image.get(target["image_id"], [])
        masks = target["masks"]
        assert image.dtype == torch.uint8 and image.shape == (3, 96, 112)
        assert masks.shape == (len(written), 96, 112)
        assert masks.sum(0).max() <= 1  # visible parts: disjoint
        assert masks.flatten(1).sum(1).tolist() == [a["area"] for a in written]
        assert (masks.flatten(1).sum(1) >= MIN_PIXELS).all()
        assert target["labels"].tolist() == [a["category_id"] for a in written]
        assert torch.equal(target["boxes"], mask_boxes(masks))  # COCO bbox == pixel extent
        assert not target["iscrowd"].any()
        semantic = instance_semantic(target)
        assert torch.equal(semantic > 0, masks.any(0))


def test_scenes_have_touching_same_class_instances(shapes: Path):
    data = COCOInstances(shapes, "val")
    images_with_pair = objects = touching = 0
    for index in range(len(data)):
        _, target = data[index]
        pairs = touching_pairs(target["masks"], target["labels"])
        images_with_pair += bool(pairs)
        objects += len(target["labels"])
        touching += len({k for pair in pairs for k in pair})
    assert images_with_pair >= 0.5 * len(data)
    assert touching >= 0.35 * objects  # about half the objects lean on a same-class neighbour


def test_touching_pairs_by_hand():
    masks = np.zeros((4, 5, 7), dtype=bool)
    masks[0, 0:2, 0:2] = True
    masks[1, 2:4, 2:4] = True  # diagonal neighbour of 0: touches (8-connected)
    masks[2, 0:2, 5:7] = True  # same class as 0, one column of background between 1 and it
    masks[3, 3:5, 4:6] = True  # touches 1, but another class
    assert touching_pairs(masks, [1, 1, 1, 2]) == [(0, 1)]
    assert touching_pairs(torch.from_numpy(masks), torch.tensor([1, 1, 1, 1])) == [
        (0, 1),
        (1, 3),
    ]


def test_same_seed_writes_the_same_files(tmp_path: Path):
    a = make_synthetic_instances(tmp_path / "a", num_train=2, num_val=1, size=(48, 48), seed=5)
    b = make_synthetic_instances(tmp_path / "b", num_train=2, num_val=1, size=(48, 48), seed=5)
    c = make_synthetic_instances(tmp_path / "c", num_train=2, num_val=1, size=(48, 48), seed=6)
    for name in ("annotations/instances_train2017.json", "annotations/instances_val2017.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    image = "val2017/000000000003.png"
    assert (a / image).read_bytes() == (b / image).read_bytes()
    assert (a / image).read_bytes() != (c / image).read_bytes()
