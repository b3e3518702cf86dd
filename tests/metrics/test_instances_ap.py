"""COCO mask and box AP (InstanceAP) against hand computations (COCO's rules, not pycocotools'
output).

COCOeval's AP at one threshold and class: detections sorted by score, precision made monotone
from the right, then read at the 101 recalls 0, 0.01, ..., 1 (0 where the recall is never
reached) and averaged; AP averages that over the classes with ground truth and the 10 IoU
thresholds 0.50:0.05:0.95.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from atrous.metrics import InstanceAP

SIZE = (200, 200)
NUM_CLASSES = 3  # background, 1 and 2
# Regions (top, left, bottom, right): A 100 x 50 = 5000 px and B 120 x 70 = 8400 px are
# "medium" (32^2 < area < 96^2), S 20 x 20 = 400 px "small", C a 40 x 80 crowd region.
REGIONS = {
    "A": (20, 20, 120, 70),
    "B": (20, 120, 140, 190),
    "S": (160, 150, 180, 170),
    "C": (150, 20, 190, 100),
}
AP_KEYS = ("ap", "ap50", "ap75")


def _mask(region: tuple[int, int, int, int], shift: int = 0) -> np.ndarray:
    top, left, bottom, right = region
    mask = np.zeros(SIZE, dtype=bool)
    mask[top + shift : bottom + shift, left:right] = True
    return mask


def _box(region: tuple[int, int, int, int], shift: int = 0) -> list[float]:
    top, left, bottom, right = region
    return [left, top + shift, right, bottom + shift]  # x1, y1, x2, y2


def _truth(names: str = "AB", labels: tuple[int, ...] = (), crowd: str = "") -> dict:
    """Ground truth: ``names`` (class 1 unless ``labels`` says) then crowd regions (class 1)."""
    labels = tuple(labels) or (1,) * len(names)
    every = names + crowd
    return {
        "boxes": torch.tensor([_box(REGIONS[n]) for n in every], dtype=torch.float32).reshape(
            -1, 4
        ),
        "labels": torch.tensor(list(labels) + [1] * len(crowd), dtype=torch.int64),
        "masks": torch.tensor(np.stack([_mask(REGIONS[n]) for n in every]))
        if every
        else torch.zeros(0, *SIZE, dtype=torch.bool),
        "iscrowd": torch.tensor([False] * len(names) + [True] * len(crowd)),
    }


def _predictions(*instances: tuple) -> dict:
    """Predictions from ``(box, label, score, mask)`` tuples."""
    if not instances:
        return {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "scores": torch.zeros(0),
            "masks": torch.zeros(0, *SIZE, dtype=torch.bool),
        }
    boxes, labels, scores, masks = zip(*instances, strict=True)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels),
        "scores": torch.tensor(scores),
        "masks": torch.tensor(np.stack(masks)),
    }


def _exact(name: str, score: float, label: int = 1) -> tuple:
    return _box(REGIONS[name]), label, score, _mask(REGIONS[name])


def _stray(score: float, label: int = 1) -> tuple:
    """Far from every region (top right corner): IoU 0 with all."""
    region = (0, 150, 15, 198)
    return _box(region), label, score, _mask(region)


def _interpolated(hits: list[bool], num_truth: int) -> float:
    """COCO's 101-point AP of detections in score order (True: a match), by hand."""
    tp = np.cumsum(hits)
    recall = tp / num_truth
    precision = tp / np.arange(1, len(hits) + 1)
    total = 0.0
    for r in np.linspace(0, 1, 101):
        reached = precision[recall >= r - 1e-12]
        total += reached.max() if len(reached) else 0.0
    return total / 101


def _ap(result: dict, prefix: str) -> tuple[float, float, float]:
    return tuple(result[f"{prefix}_{k}"] for k in AP_KEYS)


def _one(truth: dict, predictions: dict) -> dict:
    acc = InstanceAP(NUM_CLASSES)
    acc.update(1, SIZE, truth, predictions)
    return acc.compute()


def test_predictions_equal_to_the_truth_score_one():
    truth = _truth("ABS", labels=(1, 1, 2))
    acc = InstanceAP(NUM_CLASSES)
    acc.update(
        1, SIZE, truth, _predictions(_exact("A", 0.9), _exact("B", 0.8), _exact("S", 0.7, 2))
    )
    result = acc.compute()
    for key in ("mask_ap", "mask_ap50", "mask_ap75", "mask_aps", "mask_apm"):
        assert result[key] == pytest.approx(1.0), key
    for key in ("box_ap", "box_ap50", "box_ap75"):
        assert result[key] == pytest.approx(1.0), key
    assert result["mask_apl"] == 0.0  # no large instance: COCO's -1 becomes 0.0
    assert (result["images"], result["instances"], result["predictions"]) == (1, 3, 3)
    assert "Average Precision" in acc.summary
    assert "masks:" in acc.summary and "boxes:" in acc.summary


def test_one_instance_missed_of_two_and_classes_are_averaged():
    # class 1: recall 1/2 at precision 1: the 51 recalls 0..0.50 read 1, the 50 above read 0
    expected = 51 / 101
    assert _interpolated([True], 2) == pytest.approx(expected)
    result = _one(_truth("AB"), _predictions(_exact("A", 0.9)))
    for prefix in ("mask", "box"):
        assert _ap(result, prefix) == pytest.approx((expected,) * 3), prefix
    # class 2 found perfectly beside it: the mean of the two classes
    result = _one(_truth("ABS", (1, 1, 2)), _predictions(_exact("A", 0.9), _exact("S", 0.2, 2)))
    for prefix in ("mask", "box"):
        assert _ap(result, prefix) == pytest.approx(((1 + expected) / 2,) * 3), prefix


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["fp", "A"], 0.5),  # precision 0 then 1/2, made monotone -> 1/2 everywhere
        (["A", "fp", "B"], (51 + 50 * 2 / 3) / 101),  # 1 up to recall 1/2, 2/3 above
    ],
)
def test_a_false_positive_scored_above_a_true_one(order, expected):
    names = "".join(n for n in order if n != "fp")
    found = [
        _stray(0.9 - 0.1 * i) if n == "fp" else _exact(n, 0.9 - 0.1 * i)
        for i, n in enumerate(order)
    ]
    assert _interpolated([n != "fp" for n in order], len(names)) == pytest.approx(expected)
    result = _one(_truth(names), _predictions(*found))
    for prefix in ("mask", "box"):
        assert _ap(result, prefix) == pytest.approx((expected,) * 3), prefix


def test_a_wrong_class_is_a_miss_and_a_false_positive_elsewhere():
    # A predicted as class 2, which has no ground truth here (so no AP of its own)
    result = _one(_truth("A"), _predictions(_exact("A", 0.9, label=2)))
    assert _ap(result, "mask") == (0.0, 0.0, 0.0) and _ap(result, "box") == (0.0, 0.0, 0.0)


def test_partial_matches_count_at_the_thresholds_they_pass():
    # 12 rows lower: IoU 88 / 112 = 0.786 for the mask and the box alike, matches at
    # 0.50 ... 0.75: 6 of 10 thresholds
    shifted = (_box(REGIONS["A"], shift=12), 1, 0.9, _mask(REGIONS["A"], shift=12))
    result = _one(_truth("A"), _predictions(shifted))
    assert _ap(result, "mask") == pytest.approx((0.6, 1.0, 1.0))
    assert _ap(result, "box") == pytest.approx((0.6, 1.0, 1.0))


def test_a_right_box_with_a_wrong_mask():
    # the box exact, the mask its top third (IoU 1/3): box AP 1, mask AP 0
    top, left, bottom, right = REGIONS["A"]
    third = _mask((top, left, top + (bottom - top) // 3, right))
    result = _one(_truth("A"), _predictions((_box(REGIONS["A"]), 1, 0.9, third)))
    assert _ap(result, "box") == pytest.approx((1.0,) * 3)
    assert _ap(result, "mask") == (0.0, 0.0, 0.0)
    # and the other way round: the mask exact, the box 1.6 times as tall (IoU 0.625: matches
    # at 0.50, 0.55, 0.60, 3 of 10 thresholds)
    x1, y1, x2, y2 = _box(REGIONS["A"])
    tall = ([x1, y1, x2, y1 + 1.6 * (y2 - y1)], 1, 0.9, _mask(REGIONS["A"]))
    result = _one(_truth("A"), _predictions(tall))
    assert _ap(result, "mask") == pytest.approx((1.0,) * 3)
    assert _ap(result, "box") == pytest.approx((0.3, 1.0, 0.0))


def test_crowds_are_neither_misses_nor_false_positives():
    top, left, bottom, right = REGIONS["C"]
    inside = (top + 5, left + 5, bottom - 5, right - 5)
    on_crowd = (_box(inside), 1, 0.95, _mask(inside))  # scored above the true positive
    result = _one(_truth("A", crowd="C"), _predictions(on_crowd, _exact("A", 0.5)))
    assert result["instances"] == 1 and result["predictions"] == 2
    for prefix in ("mask", "box"):
        assert _ap(result, prefix) == pytest.approx((1.0,) * 3), prefix
    # the same prediction without the crowd region is a false positive ranked first: 1/2
    result = _one(_truth("A"), _predictions(on_crowd, _exact("A", 0.5)))
    for prefix in ("mask", "box"):
        assert _ap(result, prefix) == pytest.approx((0.5,) * 3), prefix


def test_probability_masks_and_predictions_without_masks():
    probabilities = _mask(REGIONS["A"]).astype(np.float32) * 0.4 + 0.3  # 0.7 in, 0.3 out
    predictions = _predictions(_exact("A", 0.9))
    predictions["masks"] = torch.tensor(probabilities[None])
    result = _one(_truth("A"), predictions)
    assert _ap(result, "mask") == pytest.approx((1.0,) * 3)
    del predictions["masks"]
    result = _one(_truth("A"), predictions)
    assert _ap(result, "box") == pytest.approx((1.0,) * 3)
    assert _ap(result, "mask") == (0.0, 0.0, 0.0) and result["predictions"] == 1


def test_numpy_input_and_default_boxes():
    truth = {k: v.numpy() for k, v in _truth("AB").items() if k != "boxes"}  # the masks' boxes
    predictions = {
        k: v.numpy() for k, v in _predictions(_exact("A", 0.9), _exact("B", 0.8)).items()
    }
    result = _one(truth, predictions)
    assert _ap(result, "box") == pytest.approx((1.0,) * 3)
    assert _ap(result, "mask") == pytest.approx((1.0,) * 3)


def test_empty_images():
    acc = InstanceAP(NUM_CLASSES)
    acc.update(7, SIZE, _truth(""), _predictions())
    result = acc.compute()
    assert all(result[f"{p}_{k}"] == 0.0 for p in ("mask", "box") for k in AP_KEYS)
    assert (result["images"], result["instances"], result["predictions"]) == (1, 0, 0)
    acc.update(8, SIZE, _truth("A"), _predictions(_exact("A", 0.9)))  # beside a perfect one
    assert _ap(acc.compute(), "mask") == pytest.approx((1.0,) * 3)
    # predictions but no ground truth, and ground truth but no predictions: 0.0, not -1
    for truth, predictions in (
        (_truth(""), _predictions(_stray(0.9))),
        (_truth("A"), _predictions()),
    ):
        result = _one(truth, predictions)
        assert _ap(result, "mask") == (0.0, 0.0, 0.0) and _ap(result, "box") == (0.0, 0.0, 0.0)


def _two_images(acc: InstanceAP, which: tuple[int, ...] = (1, 2)) -> InstanceAP:
    if 1 in which:
        acc.update(1, SIZE, _truth("AB"), _predictions(_exact("A", 0.9), _stray(0.95)))
    if 2 in which:
        acc.update(2, SIZE, _truth("AB"), _predictions(_exact("B", 0.7), _exact("A", 0.3)))
    return acc


def test_merge_equals_one_accumulator_fed_both():
    merged = _two_images(InstanceAP(NUM_CLASSES), (1,)).merge(
        _two_images(InstanceAP(NUM_CLASSES), (2,))
    )
    whole = _two_images(InstanceAP(NUM_CLASSES))
    assert merged.compute() == whole.compute()
    # by hand: scores .95 fp, .9 A, .7 B, .3 A of 4 instances -> precision 3/4 to recall 3/4
    expected = _interpolated([False, True, True, True], 4)
    assert expected == pytest.approx(76 * 3 / 4 / 101)
    assert whole.compute()["mask_ap"] == pytest.approx(expected)
    assert whole.compute()["box_ap"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="both accumulators hold images"):
        merged.merge(_two_images(InstanceAP(NUM_CLASSES), (2,)))


def test_all_reduce(tmp_path):
    acc = _two_images(InstanceAP(NUM_CLASSES))
    before = acc.compute()
    acc.all_reduce(torch.device("cpu"))  # no process group: a no-op
    assert acc.compute() == before
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        acc.all_reduce(torch.device("cpu"))
        assert acc.compute() == before
    finally:
        dist.destroy_process_group()


def test_reset_and_bad_input():
    acc = _two_images(InstanceAP(NUM_CLASSES))
    with pytest.raises(ValueError, match="image 1 was added twice"):
        _two_images(acc, (1,))
    acc.reset()
    assert acc.compute()["images"] == 0
    truth, good = _truth("A"), _predictions(_exact("A", 0.9))
    with pytest.raises(ValueError, match="counts background"):
        InstanceAP(1)
    with pytest.raises(ValueError, match=r"image 3: truth\['masks'\] must be \[1, 100, 100\]"):
        acc.update(3, (100, 100), truth, good)
    with pytest.raises(ValueError, match=r"image 3: predictions\['masks'\] must be \[1, 200"):
        acc.update(3, SIZE, truth, {**good, "masks": torch.ones(1, 5, 5, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"image 3: truth\['labels'\] holds 3: labels are"):
        acc.update(3, SIZE, {**truth, "labels": torch.tensor([3])}, good)
    with pytest.raises(ValueError, match=r"image 3: predictions\['labels'\] holds 0"):
        acc.update(3, SIZE, truth, {**good, "labels": torch.tensor([0])})
    with pytest.raises(ValueError, match=r"image 3: predictions\['scores'\] holds non-finite"):
        acc.update(3, SIZE, truth, {**good, "scores": torch.tensor([float("nan")])})
    with pytest.raises(ValueError, match=r"image 3: predictions\['boxes'\] holds non-finite"):
        acc.update(3, SIZE, truth, {**good, "boxes": torch.tensor([[0.0, 0.0, float("inf"), 5.0]])})
    with pytest.raises(ValueError, match=r"predictions\['boxes'\]\[0\] .* has x2 < x1"):
        acc.update(3, SIZE, truth, {**good, "boxes": torch.tensor([[10.0, 0.0, 5.0, 5.0]])})
    with pytest.raises(ValueError, match=r"predictions\['boxes'\] must be \[1, 4\]"):
        acc.update(3, SIZE, truth, {**good, "boxes": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="non-finite probabilities"):
        acc.update(3, SIZE, truth, {**good, "masks": torch.full((1, *SIZE), float("nan"))})
    with pytest.raises(ValueError, match=r"1 masks but 2 iscrowd flags"):
        acc.update(3, SIZE, {**truth, "iscrowd": torch.tensor([False, False])}, good)
    with pytest.raises(ValueError, match=r"truth\['area'\] must be 1 finite areas"):
        acc.update(3, SIZE, {**truth, "area": torch.tensor([-1.0])}, good)
    with pytest.raises(KeyError, match="iscrowd"):
        acc.update(3, SIZE, {k: v for k, v in truth.items() if k != "iscrowd"}, good)
    with pytest.raises(KeyError, match="scores"):
        acc.update(3, SIZE, truth, {k: v for k, v in good.items() if k != "scores"})
    assert acc.compute()["images"] == 0  # nothing half-added
