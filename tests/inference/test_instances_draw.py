"""Predicted instances as a picture and a JSON of COCO RLE masks; the instance AP table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from atrous.evaluation import instances_table
from atrous.inference import draw_instances, instances_json, save_instances

SIZE = (120, 160)
CLASSES = ("background", "cat", "dog")
GREY = 128


def _mask(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(SIZE, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _touching() -> dict:
    """Two instances side by side (sharing the edge at column 80), boxes round their masks."""
    masks = np.stack([_mask(40, 20, 100, 80), _mask(40, 80, 100, 140)])
    return {
        "boxes": torch.tensor([[20.0, 40.0, 80.0, 100.0], [80.0, 40.0, 140.0, 100.0]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.8]),
        "masks": torch.tensor(masks),
    }


def _image() -> np.ndarray:
    return np.full((*SIZE, 3), GREY, dtype=np.uint8)


def test_touching_instances_get_different_colours():
    image = _image()
    picture = draw_instances(image, _touching(), CLASSES)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    left, right = picture[70, 50].astype(int), picture[70, 110].astype(int)
    assert (left != GREY).any() and (right != GREY).any()  # each mask is tinted
    assert np.abs(left - right).sum() > 60  # ... in its own colour
    assert (picture[70, 30:70] == left).all()  # one colour across the mask's inside
    assert (picture[110:, :] == GREY).all()  # far from both: untouched
    assert (image == GREY).all()  # the input is not drawn on


def test_boxes_labels_and_min_score():
    instances = {
        "boxes": np.array([[30.0, 30.0, 91.0, 91.0]]),
        "labels": np.array([1]),
        "scores": np.array([0.7]),
        "masks": _mask(50, 50, 60, 60)[None].astype(np.float32) * 0.6,  # probabilities
    }
    picture = draw_instances(_image(), instances, CLASSES)
    assert (picture[55, 55] != GREY).any()  # 0.6 >= 0.5: inside the mask
    assert (picture[70, 30] != GREY).any() and (picture[70, 90] != GREY).any()  # box sides
    assert (picture[90, 60] != GREY).any()  # its bottom
    assert (picture[70, 40] == GREY).all() and (picture[70, 92] == GREY).all()  # in, out
    assert (picture[20:30, 30:50] != GREY).any()  # the "cat 0.70" tag above the box
    assert (draw_instances(_image(), instances, CLASSES, min_score=0.75) == GREY).all()


def test_instances_json_round_trips_the_masks():
    instances = _touching()
    found = instances_json(instances, CLASSES)
    assert [f["class"] for f in found] == ["cat", "dog"]
    assert [f["label"] for f in found] == [1, 2]
    assert [f["score"] for f in found] == pytest.approx([0.9, 0.8])
    assert found[1]["box"] == [80.0, 40.0, 140.0, 100.0]
    assert [f["area"] for f in found] == [3600, 3600]
    json.dumps(found)  # plain JSON types only
    for f, mask in zip(found, instances["masks"].numpy(), strict=True):
        assert isinstance(f["segmentation"]["counts"], str)
        rle = {"size": f["segmentation"]["size"], "counts": f["segmentation"]["counts"].encode()}
        assert (mask_utils.decode(rle).astype(bool) == mask).all()
    assert [f["class"] for f in instances_json(instances, CLASSES, min_score=0.85)] == ["cat"]
    empty = {"boxes": [], "labels": [], "scores": [], "masks": np.zeros((0, *SIZE), bool)}
    assert instances_json(empty, CLASSES) == []


def test_save_instances_writes_the_picture_and_the_json(tmp_path: Path):
    paths = save_instances(_image(), _touching(), tmp_path / "out", "img1", CLASSES, min_score=0.85)
    assert [p.name for p in paths] == ["img1_instances.jpg", "img1_instances.json"]
    with Image.open(paths[0]) as picture:
        assert picture.size == (SIZE[1], SIZE[0])
    body = json.loads(paths[1].read_text())
    assert (body["image"], body["height"], body["width"]) == ("img1", *SIZE)
    assert [f["class"] for f in body["instances"]] == ["cat", "dog"]  # every one, for AP


def test_bad_input():
    instances = _touching()
    with pytest.raises(ValueError, match="HxWx3"):
        draw_instances(np.zeros(SIZE, np.uint8), instances, CLASSES)
    with pytest.raises(ValueError, match=r"masks \[K, 60, 80\]"):
        draw_instances(np.zeros((60, 80, 3), np.uint8), instances, CLASSES)
    with pytest.raises(ValueError, match="go past the 2 classes"):
        instances_json(instances, CLASSES[:2])
    with pytest.raises(ValueError, match="non-finite"):
        instances_json({**instances, "scores": torch.tensor([0.5, float("nan")])}, CLASSES)
    with pytest.raises(KeyError, match="masks"):
        instances_json({k: v for k, v in instances.items() if k != "masks"}, CLASSES)


def test_instances_table_has_the_numbers_in_percent():
    metrics = {
        "mask_ap": 0.4123, "mask_ap50": 0.65, "mask_ap75": 0.4, "mask_aps": 0.1,
        "mask_apm": 0.5, "mask_apl": 0.75, "box_ap": 0.5, "box_ap50": 0.8, "box_ap75": 0.55,
    }  # fmt: skip
    table = instances_table(metrics)
    head, masks, boxes = table.splitlines()
    assert head.split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert masks.split() == ["masks", "41.23", "65.00", "40.00", "10.00", "50.00", "75.00"]
    assert boxes.split() == ["boxes", "50.00", "80.00", "55.00", "-", "-", "-"]
    assert len({len(line) for line in table.splitlines()}) == 1  # aligned
