"""OKS and COCO person AP against hand computations (COCO's rules, not pycocotools' output).

COCOeval's AP at one threshold: detections sorted by score, precision made monotone from the
right, then read at the 101 recalls 0, 0.01, ..., 1 (0 where the recall is never reached) and
averaged; AP averages that over the 10 thresholds 0.50:0.05:0.95.
"""

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist

from atrous.data.person_keypoints import NUM_KEYPOINTS, OKS_SIGMAS
from atrous.metrics import PersonAP, oks

SIZE = (200, 200)
# Two people, boxes (top, left, bottom, right): A is 100 x 50 = 5000 px, B 120 x 70 = 8400 px
# (both "medium": 32^2 < area < 96^2), and a crowd region C of 40 x 80.
BOXES = {"A": (20, 20, 120, 70), "B": (20, 120, 140, 190), "C": (150, 20, 190, 100)}
AP_KEYS = ("ap", "ap50", "ap75")


def _mask(box: tuple[int, int, int, int], shift: int = 0) -> np.ndarray:
    top, left, bottom, right = box
    mask = np.zeros(SIZE, dtype=bool)
    mask[top + shift : bottom + shift, left:right] = True
    return mask


def _points(box: tuple[int, int, int, int], seed: int) -> np.ndarray:
    """17 labelled (v=2) keypoints inside ``box``: [17, 3] (x, y, v)."""
    top, left, bottom, right = box
    rng = np.random.default_rng(seed)
    x = rng.uniform(left + 2, right - 2, NUM_KEYPOINTS)
    y = rng.uniform(top + 2, bottom - 2, NUM_KEYPOINTS)
    return np.stack([x, y, np.full(NUM_KEYPOINTS, 2.0)], axis=1)


def _truth(names: str = "AB", crowd: str = "") -> dict:
    points = [_points(BOXES[n], i) for i, n in enumerate(names)]
    points += [np.zeros((NUM_KEYPOINTS, 3)) for _ in crowd]  # crowds: no keypoints
    return {
        "keypoints": torch.tensor(np.stack(points)) if points else torch.zeros(0, 17, 3),
        "masks": torch.tensor(np.stack([_mask(BOXES[n]) for n in names + crowd]))
        if names + crowd
        else torch.zeros(0, *SIZE, dtype=torch.bool),
        "iscrowd": torch.tensor([False] * len(names) + [True] * len(crowd)),
    }


def _exact(truth: dict, index: int, score: float) -> dict:
    """A prediction equal to ground-truth person ``index``."""
    return {
        "keypoints": truth["keypoints"][index].clone(),
        "score": score,
        "mask": truth["masks"][index].clone(),
    }


def _stray(score: float) -> dict:
    """A prediction far from A and B (bottom right corner): OKS ~ 0, mask IoU 0."""
    points = _points((170, 150, 198, 198), seed=9)
    return {"keypoints": points, "score": score, "mask": _mask((170, 150, 198, 198))}


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


def _ap(acc: PersonAP, prefix: str) -> tuple[float, float, float]:
    result = acc.compute()
    return tuple(result[f"{prefix}_{k}"] for k in AP_KEYS)


# -- OKS --------------------------------------------------------------------------------------


def test_oks_of_a_perfect_prediction_is_one():
    truth = torch.tensor(_points(BOXES["A"], 0))
    assert oks(truth, truth, area=5000.0) == pytest.approx(1.0)
    assert oks(truth[:, :2], truth, area=5000.0) == pytest.approx(1.0)  # [K, 2] works too


def test_oks_of_a_one_pixel_shift_matches_the_formula():
    truth = torch.tensor(_points(BOXES["A"], 0))
    shifted = truth.clone()
    shifted[11, 0] += 1.0  # left hip, sigma 1.07 / 10
    area = 100.0
    one = math.exp(-(1.0**2) / (2 * area * (2 * 0.107) ** 2))
    assert one == pytest.approx(0.896569, abs=1e-6)
    assert oks(shifted, truth, area=area) == pytest.approx((16 + one) / 17, rel=1e-12)
    only_hip = truth.clone()
    only_hip[:, 2] = 0
    only_hip[11, 2] = 1
    assert oks(shifted, only_hip, area=area) == pytest.approx(one, rel=1e-12)


def test_oks_skips_unlabelled_keypoints():
    truth = torch.tensor(_points(BOXES["A"], 0))
    truth[:8, 2] = 0
    predicted = truth.clone()
    predicted[:8, :2] += 500.0  # far off, but only where nothing is labelled
    assert oks(predicted, truth, area=5000.0) == pytest.approx(1.0)


def test_oks_rejects_bad_input():
    truth = torch.tensor(_points(BOXES["A"], 0))
    with pytest.raises(ValueError, match="no labelled keypoint"):
        oks(truth, torch.zeros(17, 3), area=10.0)
    with pytest.raises(ValueError, match=r"\[17, 2 or 3\]"):
        oks(truth[:5], truth, area=10.0)


# -- PersonAP ---------------------------------------------------------------------------------


def test_predictions_equal_to_the_truth_score_one():
    truth = _truth("AB")
    acc = PersonAP()
    acc.update(1, SIZE, truth, [_exact(truth, 0, 0.9), _exact(truth, 1, 0.8)])
    result = acc.compute()
    for key in ("keypoint_ap", "keypoint_ap50", "keypoint_ap75", "keypoint_apm", "mask_ap"):
        assert result[key] == pytest.approx(1.0), key
    assert result["mask_ap50"] == pytest.approx(1.0) and result["mask_ap75"] == pytest.approx(1.0)
    assert result["keypoint_apl"] == 0.0  # no large person: COCO's -1 becomes 0.0
    assert (result["images"], result["people"], result["predictions"]) == (1, 2, 2)
    assert "Average Precision" in acc.summary and "masks:" in acc.summary


def test_one_person_missed_of_two():
    # recall 1/2 at precision 1: the 51 recalls 0..0.50 read 1, the 50 above read 0
    truth = _truth("AB")
    acc = PersonAP()
    acc.update(1, SIZE, truth, [_exact(truth, 0, 0.9)])
    expected = 51 / 101
    assert _interpolated([True], 2) == pytest.approx(expected)
    for prefix in ("keypoint", "mask"):
        assert _ap(acc, prefix) == pytest.approx((expected,) * 3), prefix


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # one person, false positive first: precision 0 then 1/2, monotone -> 1/2 everywhere
        (["fp", "A"], 0.5),
        # A, then the false positive, then B: 1 up to recall 1/2 (51 points), 2/3 above (50)
        (["A", "fp", "B"], (51 + 50 * 2 / 3) / 101),
        # the false positive first of three: precision 2/3 at recall 1 -> 2/3 everywhere
        (["fp", "A", "B"], 2 / 3),
    ],
)
def test_a_false_positive_scored_above_a_true_one(order, expected):
    names = "".join(n for n in order if n != "fp")
    truth = _truth(names)
    people = []
    for rank, name in enumerate(order):
        score = 0.9 - 0.1 * rank
        people.append(_stray(score) if name == "fp" else _exact(truth, names.index(name), score))
    assert _interpolated([n != "fp" for n in order], len(names)) == pytest.approx(expected)
    acc = PersonAP()
    acc.update(1, SIZE, truth, people)
    for prefix in ("keypoint", "mask"):
        assert _ap(acc, prefix) == pytest.approx((expected,) * 3), prefix


def test_partial_matches_count_at_the_thresholds_they_pass():
    truth = _truth("A")
    # keypoints all shifted 6 px right: OKS = mean exp(-64 / (2 * 5000 * (2 sigma / 10)^2))
    shift = 6.0
    by_hand = np.mean([math.exp(-(shift**2) / (2 * 5000 * (0.2 * s) ** 2)) for s in OKS_SIGMAS])
    assert 0.70 < by_hand < 0.75  # matches at 0.50, 0.55, 0.60, 0.65, 0.70: 5 of 10
    points = truth["keypoints"][0].clone()
    points[:, 0] += shift
    # the mask 12 rows lower: IoU 88 / 112 = 0.786, matches at 0.50 ... 0.75: 6 of 10
    person = {"keypoints": points, "score": 0.9, "mask": _mask(BOXES["A"], shift=12)}
    acc = PersonAP()
    acc.update(1, SIZE, truth, [person])
    assert _ap(acc, "keypoint") == pytest.approx((0.5, 1.0, 0.0))
    assert _ap(acc, "mask") == pytest.approx((0.6, 1.0, 1.0))


def test_crowds_are_neither_misses_nor_false_positives():
    truth = _truth("A", crowd="C")
    top, left, bottom, right = BOXES["C"]
    on_crowd = {  # scored above the true positive; inside the crowd's box and mask
        "keypoints": _points(BOXES["C"], seed=5),
        "score": 0.95,
        "mask": _mask((top + 5, left + 5, bottom - 5, right - 5)),
    }
    acc = PersonAP()
    acc.update(1, SIZE, truth, [on_crowd, _exact(truth, 0, 0.5)])
    result = acc.compute()
    assert result["people"] == 1
    for prefix in ("keypoint", "mask"):
        assert _ap(acc, prefix) == pytest.approx((1.0,) * 3), prefix


def test_unlabelled_keypoints_do_not_count():
    truth = _truth("AB")
    truth["keypoints"][:, ::2, 2] = 0  # every other keypoint unlabelled
    people = [_exact(truth, 0, 0.9), _exact(truth, 1, 0.8)]
    for person in people:
        person["keypoints"][::2, :2] = torch.tensor([5.0, 195.0])  # wrong where unlabelled
    acc = PersonAP()
    acc.update(1, SIZE, truth, people)
    assert _ap(acc, "keypoint") == pytest.approx((1.0,) * 3)


def test_people_without_masks_only_count_for_keypoints():
    truth = _truth("A")
    person = _exact(truth, 0, 0.9)
    del person["mask"]
    acc = PersonAP()
    acc.update(1, SIZE, truth, [person])
    assert _ap(acc, "keypoint") == pytest.approx((1.0,) * 3)
    assert _ap(acc, "mask") == (0.0, 0.0, 0.0)


def test_empty_images():
    acc = PersonAP()
    acc.update(7, SIZE, _truth(""), [])
    result = acc.compute()
    assert all(result[f"{p}_{k}"] == 0.0 for p in ("keypoint", "mask") for k in AP_KEYS)
    assert (result["images"], result["people"], result["predictions"]) == (1, 0, 0)
    # an empty image beside a perfect one changes nothing
    truth = _truth("A")
    acc.update(8, SIZE, truth, [_exact(truth, 0, 0.9)])
    assert _ap(acc, "keypoint") == pytest.approx((1.0,) * 3)
    assert acc.compute()["images"] == 2
    # predictions but no ground truth, and ground truth but no predictions: 0.0, not -1
    only_predictions, only_truth = PersonAP(), PersonAP()
    only_predictions.update(1, SIZE, _truth(""), [_stray(0.9)])
    only_truth.update(1, SIZE, _truth("AB"), [])
    for acc in (only_predictions, only_truth):
        assert _ap(acc, "keypoint") == (0.0, 0.0, 0.0) and _ap(acc, "mask") == (0.0, 0.0, 0.0)


def _two_images(acc: PersonAP, which: tuple[int, ...] = (1, 2)) -> PersonAP:
    truth = _truth("AB")
    if 1 in which:
        acc.update(1, SIZE, truth, [_exact(truth, 0, 0.9), _stray(0.95)])
    if 2 in which:
        acc.update(2, SIZE, truth, [_exact(truth, 1, 0.7), _exact(truth, 0, 0.3)])
    return acc


def test_merge_equals_one_accumulator_fed_both():
    merged = _two_images(PersonAP(), (1,)).merge(_two_images(PersonAP(), (2,)))
    whole = _two_images(PersonAP())
    assert merged.compute() == whole.compute()
    # by hand: scores .95 fp, .9 A, .7 B, .3 A of 4 people -> precision 2/3 to recall 3/4
    expected = _interpolated([False, True, True, True], 4)
    assert expected == pytest.approx(76 * 3 / 4 / 101)
    assert whole.compute()["keypoint_ap"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="both accumulators hold images"):
        merged.merge(_two_images(PersonAP(), (2,)))


def test_all_reduce_without_a_process_group_is_a_no_op():
    acc = _two_images(PersonAP())
    before = acc.compute()
    acc.all_reduce(torch.device("cpu"))
    assert acc.compute() == before


def test_all_reduce_gathers_in_a_process_group(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        acc = _two_images(PersonAP())
        before = acc.compute()
        acc.all_reduce(torch.device("cpu"))
        assert acc.compute() == before
    finally:
        dist.destroy_process_group()


def test_reset_and_bad_input():
    acc = _two_images(PersonAP())
    with pytest.raises(ValueError, match="image 1 was added twice"):
        _two_images(acc, (1,))
    acc.reset()
    assert acc.compute()["images"] == 0
    truth = _truth("A")
    with pytest.raises(ValueError, match=r"truth\['masks'\] must be \[P, 100, 100\]"):
        acc.update(3, (100, 100), truth, [])
    with pytest.raises(ValueError, match=r"people\[0\]\['mask'\] must be"):
        acc.update(3, SIZE, truth, [{**_exact(truth, 0, 0.5), "mask": torch.ones(5, 5)}])
    with pytest.raises(KeyError, match="iscrowd"):
        acc.update(3, SIZE, {"keypoints": truth["keypoints"], "masks": truth["masks"]}, [])
