"""COCO instances: a hand-written file (polygon, RLE, compressed RLE, crowd) read back exactly,
every bad input a DataError naming the file, the semantic map of instances by hand, and the
training augmentation (boxes from masks, emptied instances dropped, flips)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from atrous.data import (
    DATASETS,
    COCOInstances,
    InstanceTrainTransforms,
    build_dataset,
    instance_hflip,
    instance_semantic,
)
from atrous.data.instances import mask_boxes
from atrous.errors import DataError

H, W = 6, 8


def _tiny_spec() -> dict:
    """Image 1 (6x8): a polygon cat, an RLE dog, a compressed-RLE cat and a crowd of dogs;
    image 2: nothing. Category ids are out of order and not contiguous."""
    compressed = np.zeros((H, W), np.uint8)
    compressed[4:6, 0:2] = 1
    rle = coco_mask.encode(np.asfortranarray(compressed))
    ann = {"iscrowd": 0, "image_id": 1}
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": H, "width": W},
            {"id": 2, "file_name": "b.png", "height": H, "width": W},
        ],
        "categories": [{"id": 17, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {  # columns 2-4, rows 1-2
                **ann,
                "id": 10,
                "category_id": 17,
                "area": 6.0,
                "bbox": [2, 1, 3, 2],
                "segmentation": [[2, 1, 5, 1, 5, 3, 2, 3]],
            },
            {  # column 0, rows 0-2 (column-major runs)
                **ann,
                "id": 11,
                "category_id": 3,
                "area": 3,
                "bbox": [0, 0, 1, 3],
                "segmentation": {"size": [H, W], "counts": [0, 3, 45]},
            },
            {
                **ann,
                "id": 12,
                "category_id": 17,
                "area": 4,
                "bbox": [0, 4, 2, 2],
                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
            },
            {  # columns 6-7
                **ann,
                "id": 13,
                "category_id": 3,
                "iscrowd": 1,
                "area": 12,
                "bbox": [6, 0, 2, 6],
                "segmentation": {"size": [H, W], "counts": [36, 12]},
            },
        ],
    }


def _write(root: Path, spec: dict, split: str = "val") -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / f"{split}2017").mkdir(exist_ok=True)
    for number, image in enumerate(spec["images"], 1):
        pixels = np.full((H, W, 3), number * 40, np.uint8)
        Image.fromarray(pixels).save(root / f"{split}2017" / image["file_name"])
    path = root / "annotations" / f"instances_{split}2017.json"
    path.write_text(json.dumps(spec))
    return path


def test_hand_written_file_reads_back_exactly(tmp_path: Path):
    _write(tmp_path, _tiny_spec(), "val")
    _write(tmp_path, _tiny_spec(), "train")
    assert DATASETS["coco_instances"] is COCOInstances
    assert len(COCOInstances(tmp_path, "train")) == 1  # train keeps annotated images
    assert len(COCOInstances(tmp_path, "train", keep_empty=True)) == 2
    assert len(COCOInstances(tmp_path, "val", keep_empty=False)) == 1
    data = build_dataset("coco_instances", tmp_path, "val")
    assert data.classes == ("background", "dog", "cat") and data.num_classes == 3
    assert data.category_ids == (3, 17) and len(data.palette) >= 3
    assert [p.name for p, _ in data.samples] == ["a.png", "b.png"]
    image, target = data[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert image.shape == (3, H, W) and int(image[0, 0, 0]) == 40
    assert target["image_id"] == 1
    masks = torch.zeros(4, H, W, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 0:3, 0] = True
    masks[2, 4:6, 0:2] = True
    masks[3, :, 6:8] = True
    assert isinstance(target["masks"], tv_tensors.Mask) and torch.equal(target["masks"], masks)
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [2, 1, 2, 1]
    assert [data.category_ids[k - 1] for k in target["labels"]] == [17, 3, 17, 3]
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.dtype == torch.float32
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY and tuple(boxes.canvas_size) == (H, W)
    assert boxes.tolist() == [[2, 1, 5, 3], [0, 0, 1, 3], [0, 4, 2, 6], [6, 0, 8, 6]]
    assert torch.equal(boxes.as_subclass(torch.Tensor), mask_boxes(masks).as_subclass(torch.Tensor))
    assert target["iscrowd"].tolist() == [False, False, False, True]
    assert (
        target["area"].tolist() == [6.0, 3.0, 4.0, 12.0] and target["area"].dtype == torch.float32
    )
    _, empty = data[1]
    assert empty["image_id"] == 2 and empty["masks"].shape == (0, H, W)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["iscrowd"].shape == (0,) and empty["area"].shape == (0,)
    semantic = instance_semantic(empty)
    assert semantic.shape == (H, W) and not semantic.any()


def _ann(spec: dict, k: int = 0) -> dict:
    return spec["annotations"][k]


BAD: dict[str, tuple[Callable[[dict], object], str]] = {
    "not COCO": (lambda s: s.pop("categories"), "not a COCO instances file"),
    "no categories": (lambda s: s["categories"].clear(), "no categories"),
    "nameless category": (lambda s: s["categories"][0].pop("name"), r"categories\[0\] needs"),
    "category twice": (lambda s: s["categories"][1].update(id=17), "appears twice"),
    "image twice": (lambda s: s["images"][1].update(id=1), "image id 1 repeats"),
    "list image id": (lambda s: s["images"][0].update(id=[1]), r"id \[1\] is not an integer"),
    "no height": (lambda s: s["images"][0].pop("height"), "needs id, file_name"),
    "unknown category": (lambda s: _ann(s).update(category_id=5), "unknown category_id 5"),
    "list category": (lambda s: _ann(s).update(category_id=[17]), "unknown category_id"),
    "list image": (lambda s: _ann(s).update(image_id=[1]), r"image id \[1\] is not in"),
    "unknown image": (lambda s: _ann(s).update(image_id=7), "image id 7"),
    "no image_id": (lambda s: _ann(s).pop("image_id"), "has no image_id"),
    "no bbox": (lambda s: _ann(s).pop("bbox"), "bbox None"),
    "short bbox": (lambda s: _ann(s)["bbox"].pop(), r"bbox \[2, 1, 3\]"),
    "negative bbox": (lambda s: _ann(s)["bbox"].__setitem__(2, -1), "height >= 0"),
    "text bbox": (lambda s: _ann(s).update(bbox=["a", 1, 2, 3]), "not \\[x, y, width"),
    "iscrowd 2": (lambda s: _ann(s).update(iscrowd=2), "iscrowd 2"),
    "odd polygon": (lambda s: _ann(s)["segmentation"][0].pop(), "odd number"),
    "short RLE": (lambda s: _ann(s, 1)["segmentation"].update(counts=[0, 3]), "sum to 3"),
    "RLE size": (lambda s: _ann(s, 3)["segmentation"].update(size=[6, 9]), "RLE size"),
    "bad RLE": (lambda s: _ann(s, 2)["segmentation"].update(counts="zz"), "malformed"),
    "no segmentation": (lambda s: _ann(s).pop("segmentation"), "no segmentation"),
    "text area": (lambda s: _ann(s).update(area="6"), "area '6'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_annotations_name_the_file(tmp_path: Path, case: str):
    spec = copy.deepcopy(_tiny_spec())
    change, message = BAD[case]
    change(spec)
    path = _write(tmp_path, spec)
    with pytest.raises(DataError, match=message) as err:
        COCOInstances(tmp_path, "val")
    assert str(path) in str(err.value)


def test_bad_annotation_error_names_index_and_id(tmp_path: Path):
    spec = _tiny_spec()
    spec["annotations"][2]["bbox"] = None
    _write(tmp_path, spec)
    with pytest.raises(DataError, match=r"annotations\[2\] \(id 12, image 1\): bbox None"):
        COCOInstances(tmp_path, "val")


def test_missing_files_say_how_to_download(tmp_path: Path):
    with pytest.raises(DataError, match="annotations_trainval2017.zip") as err:
        COCOInstances(tmp_path, "val")
    assert "instances_val2017.json" in str(err.value)
    path = _write(tmp_path, _tiny_spec())
    (tmp_path / "val2017" / "b.png").unlink()
    with pytest.raises(DataError, match=re.escape(f"b.png: image not found (listed in {path}")):
        COCOInstances(tmp_path, "val")
    for name in ("a.png", "b.png"):
        (tmp_path / "val2017" / name).unlink(missing_ok=True)
    (tmp_path / "val2017").rmdir()
    with pytest.raises(DataError, match="val2017.zip"):
        COCOInstances(tmp_path, "val")


def test_image_size_differs_from_file(tmp_path: Path):
    path = _write(tmp_path, _tiny_spec())
    Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(tmp_path / "val2017" / "a.png")
    with pytest.raises(DataError, match="image is 5x8") as err:
        COCOInstances(tmp_path, "val")[0]
    assert str(path) in str(err.value) and "a.png" in str(err.value)


def test_instance_semantic_by_hand():
    masks = torch.zeros(4, 4, 6, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True  # small cat (label 2), in front of the big dog
    masks[1, 0:4, 0:4] = True  # big dog (label 1)
    masks[2, 0:2, 3:6] = True  # crowd of cats over the dog's column 3 and the background
    masks[3, 3, 5] = True  # a one-pixel dog, inside nobody
    target = {
        "masks": tv_tensors.Mask(masks),
        "labels": torch.tensor([2, 1, 2, 1]),
        "iscrowd": torch.tensor([False, False, True, False]),
    }
    expected = torch.tensor(
        [
            [1, 1, 1, 1, 255, 255],
            [1, 2, 2, 1, 255, 255],
            [1, 2, 2, 1, 0, 0],
            [1, 1, 1, 1, 0, 1],
        ]
    )
    semantic = instance_semantic(target)
    assert semantic.dtype == torch.int64 and torch.equal(semantic, expected)
    order = [1, 3, 2, 0]  # the smaller instance wins whatever the order
    shuffled = {k: v[order] for k, v in target.items()}
    assert torch.equal(instance_semantic(shuffled), expected)


def _target(masks: torch.Tensor, labels: list[int]) -> dict:
    h, w = masks.shape[-2:]
    return {
        "image_id": 5,
        "boxes": mask_boxes(masks),
        "labels": torch.tensor(labels),
        "masks": tv_tensors.Mask(masks),
        "iscrowd": torch.zeros(len(labels), dtype=torch.bool),
        "area": masks.flatten(1).sum(1).float(),
    }


def test_flip_mirrors_image_masks_and_boxes():
    masks = torch.zeros(2, H, W, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:6, 0:2] = True
    image = tv_tensors.Image(torch.arange(3 * H * W, dtype=torch.uint8).reshape(3, H, W))
    target = _target(masks, [1, 2])
    flipped, out = instance_hflip(image, target)
    assert isinstance(out["boxes"], tv_tensors.BoundingBoxes)
    assert out["boxes"].tolist() == [[3, 1, 6, 3], [6, 4, 8, 6]]  # x -> 8 - x, corners swapped
    assert torch.equal(out["masks"], masks.flip(-1)) and isinstance(out["masks"], tv_tensors.Mask)
    assert torch.equal(flipped, image.flip(-1)) and out["labels"] is target["labels"]
    assert torch.equal(out["boxes"], mask_boxes(out["masks"]))
    back, again = instance_hflip(flipped, out)
    assert torch.equal(back, image) and torch.equal(again["masks"], masks)
    assert torch.equal(again["boxes"], target["boxes"]) and again["image_id"] == 5


def test_train_transforms_keep_boxes_on_masks_and_drop_emptied():
    torch.manual_seed(0)
    size = (20, 24)
    masks = torch.zeros(4, *size, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True  # a corner object the crop often cuts away
    masks[1, 5:15, 6:18] = True
    masks[2, 16:20, 20:24] = True
    masks[3, 8:12, 1:4] = True
    labels = [1, 2, 3, 4]  # one per instance, to follow each through the transform
    image = torch.zeros(3, *size, dtype=torch.uint8)
    for k, label in enumerate(labels):  # each instance's pixels carry its label
        image[0][masks[k]] = 10 * label
    exact = InstanceTrainTransforms(10, mean=(0, 0, 0), std=(1, 1, 1), scale_range=(1, 1))
    scaled = InstanceTrainTransforms(12, mean=(0.5,) * 3, std=(0.25,) * 3)
    dropped = 0
    for transform in [exact] * 30 + [scaled] * 30:
        out, target = transform(tv_tensors.Image(image), _target(masks, labels))
        assert isinstance(out, tv_tensors.Image) and out.dtype == torch.float32
        assert out.shape == (3, transform.crop_size, transform.crop_size)
        kept = target["masks"]
        n = len(kept)
        assert kept.dtype == torch.bool and kept.shape[1:] == out.shape[1:]
        assert kept.flatten(1).any(1).all()  # no empty instance left
        assert all(len(target[k]) == n for k in ("labels", "iscrowd", "area", "boxes"))
        boxes = target["boxes"]
        assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.dtype == torch.float32
        assert tuple(boxes.canvas_size) == tuple(out.shape[1:])
        expected = masks_to_boxes(kept.as_subclass(torch.Tensor)) + torch.tensor([0, 0, 1, 1])
        assert torch.equal(boxes.as_subclass(torch.Tensor), expected)
        dropped += n < len(labels)
        if transform is exact:  # no resizing: fields stay in step with their pixels
            for k in range(n):
                values = out[0][kept[k]] * 255
                assert torch.allclose(values, torch.full_like(values, 10.0 * target["labels"][k]))
                assert target["area"][k] == masks[int(target["labels"][k]) - 1].sum()
    assert dropped > 10


def test_train_transforms_on_an_image_without_instances():
    torch.manual_seed(1)
    empty = _target(torch.zeros(0, 9, 7, dtype=torch.bool), [])
    transform = InstanceTrainTransforms(8, mean=(0, 0, 0), std=(1, 1, 1))
    out, target = transform(tv_tensors.Image(torch.zeros(3, 9, 7, dtype=torch.uint8)), empty)
    assert out.shape == (3, 8, 8) and target["masks"].shape == (0, 8, 8)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert not instance_semantic(target).any()


def test_transforms_errors():
    with pytest.raises(ValueError, match="crop_size"):
        InstanceTrainTransforms(0, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match="scale_range"):
        InstanceTrainTransforms(8, mean=(0,) * 3, std=(1,) * 3, scale_range=(2, 1))
