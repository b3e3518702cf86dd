"""PQ and Parsing Covering on hand-made id maps (class * 1000 + instance, void = 255 * 1000)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.metrics import PanopticQuality, ParsingCovering

D = 1000
VOID = 255 * D


def _map(*regions: tuple[slice, slice, int], shape=(10, 10), fill: int = 0) -> torch.Tensor:
    out = torch.full(shape, fill, dtype=torch.int64)
    for rows, cols, value in regions:
        out[rows, cols] = value
    return out


def _pq(pred, gt, **kw) -> dict:
    metric = PanopticQuality(3, thing_classes=[1, 2], **kw)
    metric.update(pred, gt)
    return metric.compute()


def test_perfect_and_totally_wrong():
    gt = _map((slice(0, 5), slice(0, 5), 1 * D + 1), (slice(5, 10), slice(5, 10), 2 * D + 1))
    perfect = _pq(gt, gt)
    assert perfect["pq"] == perfect["sq"] == perfect["rq"] == 1.0
    assert perfect["valid"] == [0, 1, 2]  # stuff class 0 (the rest) and things 1, 2
    # every class swapped: no match anywhere
    wrong = _map((slice(0, 5), slice(0, 5), 2 * D + 1), (slice(5, 10), slice(5, 10), 0 * D))
    wrong[(gt // D) == 0] = 1 * D + 1
    result = _pq(wrong, gt)
    assert result["pq"] == 0.0 and result["rq"] == 0.0
    assert result["per_class"]["fn"] == [1, 1, 1] and result["per_class"]["fp"] == [1, 1, 1]


def test_matching_needs_iou_strictly_above_one_half():
    gt = _map((slice(0, 4), slice(0, 5), 1 * D + 1))  # 20 pixels of class 1; rest class 0
    # prediction: 10 of the 20 pixels -> IoU 10 / 20 = 0.5 exactly: no match
    pred = _map((slice(0, 2), slice(0, 5), 1 * D + 7))
    result = _pq(pred, gt)
    assert result["per_class"]["tp"][1] == 0 and result["per_class"]["fn"][1] == 1
    # 11 of the 20 pixels -> IoU 0.55: a match, SQ 0.55, RQ 1 for class 1
    pred = _map((slice(0, 2), slice(0, 5), 1 * D + 7), (slice(2, 3), slice(0, 1), 1 * D + 7))
    result = _pq(pred, gt)
    assert result["per_class"]["tp"][1] == 1 and result["per_class"]["sq"][1] == pytest.approx(0.55)


def test_void_leaves_the_union_and_shields_false_positives():
    gt = _map((slice(0, 4), slice(0, 5), 1 * D + 1), (slice(4, 6), slice(0, 5), VOID))
    # the prediction covers the object and the void strip below it: IoU 20 / (20 + 30 - 20 - 10)
    pred = _map((slice(0, 6), slice(0, 5), 1 * D + 3))
    result = _pq(pred, gt)
    assert result["per_class"]["tp"][1] == 1 and result["per_class"]["sq"][1] == pytest.approx(1.0)
    # a prediction lying mostly on void is not a false positive
    pred = _map((slice(0, 4), slice(0, 5), 1 * D + 1), (slice(4, 6), slice(0, 4), 2 * D + 9))
    assert _pq(pred, gt)["per_class"]["fp"][2] == 0
    # ... but one mostly on real background is
    pred = _map((slice(0, 4), slice(0, 5), 1 * D + 1), (slice(5, 10), slice(5, 10), 2 * D + 9))
    assert _pq(pred, gt)["per_class"]["fp"][2] == 1


def test_crowd_is_neither_missed_nor_a_reason_for_false_positives():
    # a thing class with instance 0 is crowd ("car group"): not FN; a same-class prediction
    # mostly on it is not FP
    gt = _map((slice(0, 4), slice(0, 5), 1 * D + 0))
    pred = _map((slice(0, 3), slice(0, 5), 1 * D + 4))
    result = _pq(pred, gt)
    assert result["per_class"]["fn"][1] == 0 and result["per_class"]["fp"][1] == 0
    assert result["per_class"]["tp"][1] == 0


def test_accumulation_equals_the_sum_of_images_and_inputs_can_be_numpy():
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(3):
        gt = rng.integers(0, 3, (2, 16, 16)) * D + rng.integers(1, 3, (2, 16, 16))
        pred = gt.copy()
        pred[:, :5] = 2 * D + 1
        maps.append((pred, gt))
    together = PanopticQuality(3, thing_classes=[1, 2])
    for pred, gt in maps:
        together.update(pred, gt)  # numpy, batched
    parts = [PanopticQuality(3, thing_classes=[1, 2]) for _ in maps]
    for metric, (pred, gt) in zip(parts, maps, strict=True):
        for i in range(2):
            metric.update(torch.from_numpy(pred[i]), torch.from_numpy(gt[i]))
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert together.compute() == merged.compute()


def test_class_encoding_errors():
    metric = PanopticQuality(3)
    with pytest.raises(ValueError, match=r"classes \[7\] outside"):
        metric.update(torch.full((4, 4), 7 * D), torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="integers"):
        metric.update(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="differ in shape"):
        metric.update(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(4, 5, dtype=torch.int64))


def test_parsing_covering_by_hand():
    # class 1: GT regions of 20 and 10 pixels; predictions cover them with IoU 1 and 0.5
    gt = _map((slice(0, 4), slice(0, 5), 1 * D + 1), (slice(5, 7), slice(0, 5), 1 * D + 2),
              (slice(8, 10), slice(0, 10), VOID))  # fmt: skip
    pred = _map((slice(0, 4), slice(0, 5), 1 * D + 1), (slice(5, 6), slice(0, 5), 1 * D + 5),
                (slice(8, 10), slice(0, 10), 2 * D + 1))  # fmt: skip
    metric = ParsingCovering(3, normalize_by_image_size=False)
    metric.update(pred, gt)
    result = metric.compute()
    # Cov_1 = (20 * 1 + 10 * 0.5) / 30. Class 0: GT is the other 50 non-void pixels; predicted
    # class 0 is 100 - 20 - 5 - 20 (on void, dropped) = 55 pixels covering all 50 -> IoU 50 / 55
    assert result["per_class"][1] == pytest.approx(25 / 30)
    assert result["per_class"][0] == pytest.approx(50 / 55)
    assert result["valid"] == [0, 1]  # class 2 only predicted on void: no GT area, not averaged
    assert result["pc"] == pytest.approx((25 / 30 + 50 / 55) / 2)
    normalized = ParsingCovering(3)
    normalized.update(pred, gt)
    assert normalized.compute()["pc"] == pytest.approx(result["pc"])  # one image: same ratio


def test_coco_panoptic_format_round_trip_and_scoring(tmp_path):
    from atrous.cli import main
    from atrous.evaluation.coco_panoptic import score_coco_panoptic, write_coco_panoptic

    gt = _map((slice(0, 4), slice(0, 5), 1 * D + 1), (slice(5, 10), slice(5, 10), 2 * D + 1))
    pred = gt.clone()
    pred[5:10, 5:10] = 2 * D + 7  # the same segment under another instance number
    pred[0, 0] = 0  # one pixel wrong
    classes, things = ["sky", "cat", "dog"], [1, 2]
    gt_json = write_coco_panoptic([("a.jpg", gt.numpy())], tmp_path / "gt.json", classes, things)
    pred_json = write_coco_panoptic(
        [("a.jpg", pred.numpy())], tmp_path / "pred.json", classes, things
    )
    result = score_coco_panoptic(gt_json, pred_json)
    direct = PanopticQuality(3, thing_classes=things)
    direct.update(pred, gt)
    assert result["pq"] == pytest.approx(direct.compute()["pq"]) and result["images"] == 1
    assert main(["eval", "--panoptic", str(pred_json), "--data", str(gt_json)]) == 0
    assert (tmp_path / "panoptic_scores.json").is_file()
