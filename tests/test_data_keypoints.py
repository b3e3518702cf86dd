"""COCO person keypoints: the reader (synthetic people and a hand-written file read back
exactly, every bad input a DataError naming the file) and PersonLab's training augmentation
(shapes, exact flips, keypoints moving with their masks)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from atrous.data import COCOKeypoints, build_dataset, make_synthetic_people
from atrous.data.keypoints import KeypointTrainTransforms, hflip
from atrous.data.person_keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS
from atrous.errors import DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("people")
    return make_synthetic_people(root, num_train=30, num_val=4, size=(64, 80), seed=3)


def _written(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"person_keypoints_{split}2017.json").read_text())


def test_synthetic_people_round_trip(people: Path):
    spec = _written(people, "train")
    anns: dict[int, list[dict]] = {}
    for ann in spec["annotations"]:
        anns.setdefault(ann["image_id"], []).append(ann)
    data = COCOKeypoints(people, "train")
    assert len(data) == len(anns) and data.classes == ("background", "person")
    assert data.num_classes == 2 and data.palette.shape == (256, 3)
    assert len(build_dataset("coco_keypoints", people, "val")) == 4  # val keeps every image
    assert spec["categories"][0]["keypoints"][5] == "left_shoulder"
    seen = {"occluded": 0, "unannotated": 0, "crowded": 0}
    for index in range(len(data)):
        image, target = data[index]
        written = anns[target["image_id"]]
        people_here = len(written)
        assert image.dtype == torch.uint8 and image.shape == (3, 64, 80)
        assert data.samples[index][0].name == f"{target['image_id']:012d}.png"
        expected = torch.tensor([a["keypoints"] for a in written], dtype=torch.float32)
        assert torch.equal(target["keypoints"], expected.reshape(people_here, NUM_KEYPOINTS, 3))
        masks, kps = target["masks"], target["keypoints"]
        assert masks.dtype == torch.bool and masks.shape == (people_here, 64, 80)
        assert masks.sum(0).max() <= 1  # visible parts: disjoint
        assert masks.flatten(1).sum(1).tolist() == [a["area"] for a in written]
        assert set(kps[..., 2].unique().tolist()) <= {0.0, 1.0, 2.0}
        assert (kps[kps[..., 2] == 0] == 0).all()  # unlabelled: x = y = 0
        assert [int((k[:, 2] > 0).sum()) for k in kps] == [a["num_keypoints"] for a in written]
        unannotated = (kps[..., 2] == 0).all(1)
        assert torch.equal(target["ignore"], masks[unannotated].any(0))
        assert not target["iscrowd"].any() and target["area"].dtype == torch.float32
        seen["occluded"] += int((kps[..., 2] == 1).sum())
        seen["unannotated"] += int(unannotated.sum())
        seen["crowded"] += people_here > 1
    assert all(seen.values()), seen


def test_synthetic_people_is_deterministic(tmp_path: Path):
    a = make_synthetic_people(tmp_path / "a", num_train=2, num_val=1, seed=5)
    b = make_synthetic_people(tmp_path / "b", num_train=2, num_val=1, seed=5)
    name = "annotations/person_keypoints_train2017.json"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    image = "val2017/000000000003.png"
    assert (a / image).read_bytes() == (b / image).read_bytes()


def _kps(points: dict[int, tuple[float, float, int]]) -> list[float]:
    flat = [0.0] * (3 * NUM_KEYPOINTS)
    for j, (x, y, v) in points.items():
        flat[3 * j : 3 * j + 3] = [x, y, v]
    return flat


def _tiny_spec() -> dict:
    """Image 1 (6x8): a polygon person, a crowd RLE, a person without keypoints (compressed
    RLE); image 2: nobody."""
    unlabelled = np.zeros((6, 8), np.uint8)
    unlabelled[4:6, 0:2] = 1
    rle = coco_mask.encode(np.asfortranarray(unlabelled))
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 6, "width": 8},
            {"id": 2, "file_name": "b.png", "height": 6, "width": 8},
        ],
        "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 6.0,
                "segmentation": [[2, 1, 5, 1, 5, 3, 2, 3]],  # columns 2-4, rows 1-2
                "keypoints": _kps({0: (3.5, 1.5, 2), 5: (2.25, 2.0, 1)}),
                "num_keypoints": 2,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 1,
                "area": 12,
                "segmentation": {"size": [6, 8], "counts": [36, 12]},  # columns 6-7
                "keypoints": _kps({}),
                "num_keypoints": 0,
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 4,
                "segmentation": {"size": [6, 8], "counts": rle["counts"].decode()},
                "keypoints": _kps({}),
                "num_keypoints": 0,
            },
            {"id": 13, "image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1]},  # a dog
        ],
    }


def _write(root: Path, spec: dict, split: str = "val") -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / f"{split}2017").mkdir(exist_ok=True)
    for image in spec["images"]:
        pixels = np.full((6, 8, 3), image["id"] * 40, np.uint8)
        Image.fromarray(pixels).save(root / f"{split}2017" / image["file_name"])
    path = root / "annotations" / f"person_keypoints_{split}2017.json"
    path.write_text(json.dumps(spec))
    return path


def test_hand_written_file_reads_back_exactly(tmp_path: Path):
    _write(tmp_path, _tiny_spec(), "val")
    _write(tmp_path, _tiny_spec(), "train")
    assert len(COCOKeypoints(tmp_path, "train")) == 1  # train keeps images with people
    data = COCOKeypoints(tmp_path, "val")
    assert [p.name for p, _ in data.samples] == ["a.png", "b.png"]
    image, target = data[0]
    assert image.shape == (3, 6, 8) and int(image[0, 0, 0]) == 40
    assert target["image_id"] == 1 and target["keypoints"].shape == (3, 17, 3)
    assert target["keypoints"][0, 0].tolist() == [3.5, 1.5, 2.0]
    assert target["keypoints"][0, 5].tolist() == [2.25, 2.0, 1.0]
    assert target["keypoints"].dtype == torch.float32 and target["keypoints"][1:].eq(0).all()
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, :, 6:8] = True
    masks[2, 4:6, 0:2] = True
    assert torch.equal(target["masks"], masks)
    assert target["iscrowd"].tolist() == [False, True, False]
    assert target["area"].tolist() == [6.0, 12.0, 4.0] and target["area"].dtype == torch.float32
    assert torch.equal(target["ignore"], masks[1] | masks[2])
    _, empty = data[1]
    assert empty["image_id"] == 2 and empty["keypoints"].shape == (0, 17, 3)
    assert empty["masks"].shape == (0, 6, 8) and empty["iscrowd"].shape == (0,)
    assert empty["ignore"].shape == (6, 8) and not empty["ignore"].any()


def _person(spec: dict) -> dict:
    return spec["annotations"][0]


BAD: dict[str, tuple[Callable[[dict], object], str]] = {
    "no person": (lambda s: s["categories"].pop(), "no 'person' category"),
    "50 keypoints": (lambda s: _person(s)["keypoints"].pop(), "found 50 values"),
    "visibility 3": (lambda s: _person(s)["keypoints"].__setitem__(2, 3), "visibility 3"),
    "unknown image": (lambda s: _person(s).update(image_id=7), "image id 7"),
    "odd polygon": (lambda s: _person(s)["segmentation"][0].pop(), "odd number"),
    "text polygon": (lambda s: _person(s).update(segmentation=[["a"] * 6]), "not a list of num"),
    "short RLE": (lambda s: s["annotations"][1]["segmentation"].update(counts=[36]), "sum to 36"),
    "RLE size": (lambda s: s["annotations"][1]["segmentation"].update(size=[6, 9]), "RLE size"),
    "bad RLE": (lambda s: s["annotations"][2]["segmentation"].update(counts="zz"), "malformed"),
    "short RLE string": (lambda s: s["annotations"][2]["segmentation"].update(counts="1"), "sum"),
    "no segmentation": (lambda s: _person(s).pop("segmentation"), "no segmentation"),
    "no height": (lambda s: s["images"][0].pop("height"), "needs id, file_name"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_annotations_name_the_file(tmp_path: Path, case: str):
    spec = copy.deepcopy(_tiny_spec())
    change, message = BAD[case]
    change(spec)
    path = _write(tmp_path, spec)
    with pytest.raises(DataError, match=message) as err:
        COCOKeypoints(tmp_path, "val")
    assert str(path) in str(err.value)


def test_missing_and_unreadable_files(tmp_path: Path):
    with pytest.raises(DataError, match="COCO 2017 train/val annotations") as err:
        COCOKeypoints(tmp_path, "val")
    assert "person_keypoints_val2017.json" in str(err.value)
    path = _write(tmp_path, _tiny_spec())
    (tmp_path / "val2017" / "b.png").unlink()
    with pytest.raises(DataError, match="b.png: image not found"):
        COCOKeypoints(tmp_path, "val")
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read") as err:
        COCOKeypoints(tmp_path, "val")
    assert str(path) in str(err.value)


def _item(size: tuple[int, int] = (40, 50)) -> tuple[torch.Tensor, dict]:
    """A random image and one person whose keypoints sit at the centres of 5x5 mask blobs."""
    h, w = size
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    kps = torch.zeros(2, NUM_KEYPOINTS, 3)
    for j in range(NUM_KEYPOINTS):
        if j == 4:
            continue  # unlabelled
        row, col = 3 + (j * 7) % (h - 6), 3 + (j * 11) % (w - 6)
        masks[0, row - 2 : row + 3, col - 2 : col + 3] = True
        kps[0, j] = torch.tensor([col + 0.5, row + 0.5, 1 + j % 2])  # the pixel's centre
    masks[1, :3, :3] = True
    target = {
        "image_id": 1,
        "keypoints": kps,
        "masks": masks,
        "iscrowd": torch.tensor([False, False]),
        "area": torch.tensor([float(masks[0].sum()), 9.0]),
        "ignore": masks[1].clone(),
    }
    return image, target


def test_train_transform_shapes_and_padding():
    image, target = _item()
    torch.manual_seed(0)
    out, t = KeypointTrainTransforms(64, mean=MEAN, std=STD, scale_range=(0.5, 0.5))(
        torch.full_like(image, 255), target
    )
    assert out.dtype == torch.float32 and out.shape == (3, 64, 64)
    assert t["masks"].shape == (2, 64, 64) and t["masks"].dtype == torch.bool
    assert t["ignore"].shape == (64, 64) and t["keypoints"].shape == (2, 17, 3)
    assert int((out[0] != 0).sum()) == 20 * 25  # the 20x25 image; the rest is padding = 0
    assert t["area"][1] == pytest.approx(9.0 / 4)
    unlabelled = t["keypoints"][..., 2] == 0  # keypoint 4 (3 if flipped) and person 1
    assert int(unlabelled.sum()) == 18 and t["keypoints"][unlabelled].eq(0).all()
    with pytest.raises(ValueError):
        KeypointTrainTransforms(0, mean=MEAN, std=STD)


def test_train_flip_is_an_exact_mirror():
    image, target = _item((48, 48))
    transform = KeypointTrainTransforms(48, mean=MEAN, std=STD, scale_range=(1.0, 1.0))
    plain = (image.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[
        :, None, None
    ]
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out, t = transform(image, target)
        flipped = not torch.allclose(out, plain, atol=1e-6)
        flips.add(flipped)
        if not flipped:
            assert torch.equal(t["keypoints"], target["keypoints"])
            assert torch.equal(t["masks"], target["masks"])
            continue
        assert torch.allclose(out, plain.flip(-1), atol=1e-6)
        assert torch.equal(t["masks"], target["masks"].flip(-1))
        assert torch.equal(t["ignore"], target["ignore"].flip(-1))
        source = target["keypoints"][:, list(FLIP_PERMUTATION)]
        labelled = source[..., 2] > 0
        assert torch.equal(t["keypoints"][..., 0][labelled], 48 - source[..., 0][labelled])
        assert torch.equal(t["keypoints"][..., 1:][labelled], source[..., 1:][labelled])
        # left and right swap: the left shoulder now holds the right one's visibility
        assert t["keypoints"][0, 5, 2] == target["keypoints"][0, 6, 2]
    assert flips == {True, False}


def test_flip_twice_is_identity():
    image, target = _item()
    once_image, once = hflip(image, target)
    twice_image, twice = hflip(once_image, once)
    assert torch.equal(twice_image, image) and not torch.equal(once_image, image)
    for key in ("keypoints", "masks", "ignore"):
        assert torch.equal(twice[key], target[key]), key
    assert once["keypoints"][0, 1, 0] == 50 - target["keypoints"][0, 2, 0]


def test_keypoints_stay_on_their_mask():
    image, target = _item()
    transform = KeypointTrainTransforms(48, mean=MEAN, std=STD, scale_range=(0.6, 1.8))
    checked = 0
    for seed in range(12):
        torch.manual_seed(seed)
        _, t = transform(image, target)
        for x, y, v in t["keypoints"][0].tolist():
            if v > 0 and 0 <= x < 48 and 0 <= y < 48:
                assert t["masks"][0, int(y), int(x)], (seed, x, y)
                checked += 1
    assert checked > 50


def test_dataset_applies_transforms(people: Path):
    transform = KeypointTrainTransforms(32, mean=MEAN, std=STD)
    image, target = COCOKeypoints(people, "val", transforms=transform)[0]
    assert image.shape == (3, 32, 32) and target["masks"].shape[-2:] == (32, 32)


def test_data_check_reads_coco_keypoints(tmp_path):
    from atrous.data.check import check_data
    from atrous.data.synthetic_people import make_synthetic_people

    root = make_synthetic_people(tmp_path, num_train=2, num_val=4, seed=5)
    dataset = build_dataset("coco_keypoints", root, "val")
    people = sum(int((~dataset[i][1]["iscrowd"]).sum()) for i in range(len(dataset)))
    report = check_data("coco_keypoints", root, "val")
    assert report.ok and report.num_images == 4 and report.instances == people
    assert report.pixel_counts[1] > 0 and "people (keypoints)" in report.format()
