"""COCO panoptic JSONs and PNGs checked where they enter (issue #28): a broken structure names
the file and the key or id; a segment of the PNG without its segments_info entry (or an entry
without its segment) is an error in ground truth and in predictions, as panopticapi has it,
never pixels turned void without a word."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.data import build_dataset, make_synthetic_dataset
from atrous.data.check import check_dataset
from atrous.errors import DataError
from atrous.evaluation.coco_panoptic import score_coco_panoptic, write_coco_panoptic

CATEGORIES = [{"id": 1, "name": "person", "isthing": 1}, {"id": 187, "name": "sky", "isthing": 0}]


def _png(path: Path, ids: np.ndarray) -> None:
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def _coco(root: Path, segments: list[dict], **spec) -> Path:
    """A one-image COCO panoptic val set: two persons (5, 300) and sky (7); returns the JSON."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "val2017" / "1.jpg")
    ids = np.zeros((3, 4), np.int64)
    ids[0], ids[1], ids[2, :2] = 5, 300, 7  # ids[2, 2:] stays 0: unlabeled
    _png(root / "annotations" / "panoptic_val2017" / "1.png", ids)
    data = {
        "images": [{"id": 1, "file_name": "1.jpg"}],
        "categories": CATEGORIES,
        "annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": segments}],
        **spec,
    }
    path = root / "annotations" / "panoptic_val2017.json"
    path.write_text(json.dumps(data))
    return path


SEGMENTS = [
    {"id": 5, "category_id": 1, "iscrowd": 0},
    {"id": 300, "category_id": 1, "iscrowd": 0},
    {"id": 7, "category_id": 187, "iscrowd": 0},
]


def test_consistent_ground_truth_reads(tmp_path: Path):
    _coco(tmp_path, SEGMENTS)
    _, mask = build_dataset("coco_panoptic", tmp_path, "val")[0]
    assert mask[0].tolist() == [[0] * 4, [0] * 4, [1, 1, 255, 255]]
    assert mask[1].tolist() == [[1] * 4, [2] * 4, [0] * 4]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"annotations": None}, "'annotations' is missing, expected a list"),
        ({"categories": {"1": "person"}}, "'categories' is a dict, expected a list"),
        ({"images": [{"id": 2, "file_name": "1.jpg"}]}, "has image_id 1, which 'images' does not"),
        ({"images": [{"file_name": "1.jpg"}]}, r"images\[0\] has no 'id'"),
    ],
)
def test_broken_json_structure_names_the_file_and_key(tmp_path: Path, spec: dict, match: str):
    path = _coco(tmp_path, SEGMENTS, **spec)
    data = json.loads(path.read_text())
    if spec.get("annotations", 0) is None:
        del data["annotations"]
        path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=match) as caught:
        build_dataset("coco_panoptic", tmp_path, "val")
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_json_that_is_not_an_object_or_lists_a_segment_twice(tmp_path: Path):
    path = _coco(tmp_path, [*SEGMENTS, SEGMENTS[0]])
    with pytest.raises(DataError, match=r"image 1\): segment ids 5 are listed twice"):
        build_dataset("coco_panoptic", tmp_path, "val")
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="top level is a list, expected an object"):
        build_dataset("coco_panoptic", tmp_path, "val")
    _coco(tmp_path / "c", [{**SEGMENTS[0], "category_id": 99}, *SEGMENTS[1:]])
    with pytest.raises(DataError, match="segment 5 has category_id 99, which 'categories'"):
        build_dataset("coco_panoptic", tmp_path / "c", "val")


def test_ground_truth_segment_without_entry_is_an_error_in_data_check(tmp_path: Path):
    _coco(tmp_path, SEGMENTS[1:])  # person 5 is painted but has no entry
    png = tmp_path / "annotations" / "panoptic_val2017" / "1.png"
    with pytest.raises(DataError, match=f"{png}: segment ids 5 are in the PNG but not in its"):
        build_dataset("coco_panoptic", tmp_path, "val")[0]
    report = check_dataset(build_dataset("coco_panoptic", tmp_path, "val", strict=False),
                           progress=False)  # fmt: skip
    assert not report.ok and "segment ids 5 are in the PNG" in report.errors[0]


def test_ground_truth_entry_without_segment_is_an_error(tmp_path: Path):
    _coco(tmp_path, [*SEGMENTS, {"id": 9, "category_id": 1, "iscrowd": 1}])
    with pytest.raises(DataError, match="segments_info lists ids 9 that are not in the PNG"):
        build_dataset("coco_panoptic", tmp_path, "val")[0]


def _scored(tmp_path: Path) -> tuple[Path, Path]:
    gt = np.full((10, 10), 0 * 1000, np.int64)  # sky
    gt[:4, :5], gt[5:, 5:] = 1 * 1000 + 1, 2 * 1000 + 1  # a cat, a dog
    classes, things = ["sky", "cat", "dog"], [1, 2]
    gt_json = write_coco_panoptic([("a.jpg", gt)], tmp_path / "gt.json", classes, things)
    pred_json = write_coco_panoptic([("a.jpg", gt)], tmp_path / "pred.json", classes, things)
    return gt_json, pred_json


def test_prediction_segment_without_entry_is_an_error_not_void(tmp_path: Path):
    gt_json, pred_json = _scored(tmp_path)
    assert score_coco_panoptic(gt_json, pred_json)["pq"] == pytest.approx(1.0)
    pred = json.loads(pred_json.read_text())
    dropped = pred["annotations"][0]["segments_info"].pop()  # the PNG still paints it
    pred_json.write_text(json.dumps(pred))
    with pytest.raises(DataError, match=rf"a.png: segment ids {dropped['id']} are in the PNG"):
        score_coco_panoptic(gt_json, pred_json)
    pred["annotations"][0]["segments_info"] += [dropped, {**dropped, "id": 77}]
    pred_json.write_text(json.dumps(pred))
    with pytest.raises(DataError, match="segments_info lists ids 77 that are not in the PNG"):
        score_coco_panoptic(gt_json, pred_json)


def test_prediction_json_structure_is_checked(tmp_path: Path):
    gt_json, pred_json = _scored(tmp_path)
    pred_json.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=f"{pred_json}: 'annotations' is missing"):
        score_coco_panoptic(gt_json, pred_json)
    pred_json.write_text(json.dumps({"annotations": [{"image_id": 1, "file_name": "a.png"}]}))
    with pytest.raises(DataError, match=r"annotations\[0\] has no 'segments_info'"):
        score_coco_panoptic(gt_json, pred_json)
    pred_json.write_text("{")
    with pytest.raises(DataError, match="pred.json: cannot read COCO panoptic annotations"):
        score_coco_panoptic(gt_json, pred_json)


def test_panoptic_folder_thing_classes_are_checked(tmp_path: Path):
    root = make_synthetic_dataset(tmp_path / "p", num_train=2, num_val=1, size_range=(20, 24),
                                  panoptic=True)  # fmt: skip
    spec = json.loads((root / "classes.json").read_text())
    (root / "classes.json").write_text(json.dumps({**spec, "thing_classes": ["car"]}))
    with pytest.raises(DataError, match=r"thing_classes \['car'\] is not a list of class ids"):
        build_dataset("panoptic_folder", root, "train")
