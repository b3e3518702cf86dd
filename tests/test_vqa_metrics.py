"""VQA metrics against hand-computed cases and brute force: the VQA accuracy over the
10-choose-9 annotator subsets, accuracy per type, WUPS's clear message without WordNet, the
attention IoU."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch

from atrous.errors import AtrousError
from atrous.metrics import AttentionIoU, QAAccuracy, attention_iou, vqa_accuracy
from atrous.metrics.vqa import attention_mass, normalize_answer, vqa_soft_scores, wordnet_available


def _brute_force(answer: str, humans: list[str]) -> float:
    subsets = list(combinations(range(len(humans)), len(humans) - 1))
    return sum(min(sum(humans[i] == answer for i in s) / 3, 1) for s in subsets) / len(subsets)


def test_vqa_accuracy_by_hand() -> None:
    humans = ["two"] * 2 + ["three"] * 5 + ["four"] * 3
    # two matches: leaving out a match leaves 1 (1/3, twice), a non-match leaves 2 (2/3, 8x)
    assert vqa_accuracy("two", humans) == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert vqa_accuracy("two", humans) == pytest.approx(0.6)
    assert vqa_accuracy("Four.", humans) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)  # 0.9
    assert vqa_accuracy("three", humans) == 1.0
    assert vqa_accuracy("five", humans) == 0.0
    for answer in ("two", "three", "four", "five"):
        assert vqa_accuracy(answer, humans) == pytest.approx(_brute_force(answer, humans))
    assert vqa_soft_scores(humans) == pytest.approx({"two": 0.6, "three": 1.0, "four": 0.9})
    with pytest.raises(ValueError, match="human answers"):
        vqa_accuracy("two", [])


def test_normalize_answer() -> None:
    assert normalize_answer("  Red,  Car. ") == "red car"


def test_accuracy_overall_and_per_type_and_merge() -> None:
    a, b = QAAccuracy(), QAAccuracy()
    a.update(["red", "two", "disc"], ["red", "three", "disc"], ["colour", "count", "object"])
    b.update(["Left"], ["left"], ["location"], [["left"] * 10])
    result = a.merge(b).compute()
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["per_type"] == {"colour": 1.0, "count": 0.0, "location": 1.0, "object": 1.0}
    assert result["questions"] == 4 and result["vqa_accuracy"] == 1.0
    with pytest.raises(ValueError, match="one each"):
        a.update(["x"], [], ["t"])


@pytest.mark.skipif(wordnet_available(), reason="WordNet is installed here")
def test_wups_says_what_to_install() -> None:
    acc = QAAccuracy()
    acc.update(["red"], ["red"], ["colour"])
    with pytest.raises(AtrousError, match=r"atrous\[wups\].*nltk.downloader wordnet"):
        acc.compute(with_wups=True)


@pytest.mark.skipif(not wordnet_available(), reason="WordNet is not installed")
def test_wups_with_wordnet() -> None:
    acc = QAAccuracy()
    acc.update(["red", "dog"], ["red", "cat"], ["colour", "object"])
    result = acc.compute(with_wups=True)
    assert 0.5 < result["wups_0.0"] < 1.0 and result["wups_0.9"] <= result["wups_0.0"]


def test_attention_iou_by_hand() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, :] = True  # 4 pixels
    attention = torch.full((4, 4), 0.01)
    attention[0, 0] = attention[0, 1] = 0.5  # two on the object ...
    attention[3, 3] = attention[2, 2] = 0.4  # ... two off it: top 4 = 2 hits
    kept = {(0, 0), (0, 1), (3, 3), (2, 2)}
    truth = {(0, j) for j in range(4)}
    assert attention_iou(attention, mask) == pytest.approx(len(kept & truth) / len(kept | truth))
    assert attention_iou(torch.where(mask, 1.0, 0.0), mask) == 1.0
    assert attention_iou(attention, torch.zeros(4, 4)) != attention_iou(attention, mask)  # NaN
    total = attention.sum()
    assert attention_mass(attention, mask) == pytest.approx(float(attention[0].sum() / total))
    # a 2 x 2 map resized to the 8 x 8 mask: its top-left cell covers the top-left quarter
    coarse = torch.tensor([[0.7, 0.1], [0.1, 0.1]])
    quarter = torch.zeros(8, 8, dtype=torch.bool)
    quarter[:4, :4] = True
    assert attention_iou(coarse, quarter) > 0.5


def test_attention_accumulator_skips_empty_masks() -> None:
    acc = AttentionIoU()
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True
    attention = torch.zeros(2, 4, 4)
    attention[:, 0, 0] = 1.0
    acc.update(attention, masks, ["object", "count"])
    result = acc.compute()
    assert result["attention_iou"] == 1.0 and result["attention_iou_per_type"] == {"object": 1.0}
