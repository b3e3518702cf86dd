import json
import math

import pytest
import torch

from atrous.evaluation import format_table
from atrous.metrics import ConfusionMatrix, write_json


def test_hand_computed_case_with_ignore_and_absent_class():
    # 4 classes; class 3 never appears in prediction or target; 255 pixels are ignored
    # whatever is predicted there.
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 0]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [
        [1, 1, 0, 0],  # target 0: one right, one as 1
        [0, 2, 0, 0],  # target 1: both right
        [1, 0, 1, 0],  # target 2: one right, one as 0
        [0, 0, 0, 0],
    ]
    r = cm.compute()
    # IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1), class 1: 2 / (2 + 1), class 2: 1 / 2.
    assert r["iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(r["iou"][3])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["pixel_accuracy"] == pytest.approx(4 / 6)
    assert r["accuracy"][:3] == pytest.approx([1 / 2, 1, 1 / 2])
    assert r["mean_accuracy"] == pytest.approx(2 / 3)
    # Frequencies 2/6 each: fwIoU = (1/3 + 2/3 + 1/2) / 3.
    assert r["fw_iou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["num_pixels"] == 6


def test_class_only_predicted_has_zero_iou_and_nan_accuracy():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 2, 2]), torch.tensor([0, 0, 0]))
    r = cm.compute()
    assert r["iou"][0] == pytest.approx(1 / 3)
    assert r["iou"][2] == 0.0  # predicted but absent from target: a real miss, counted
    assert math.isnan(r["iou"][1])
    assert r["miou"] == pytest.approx(1 / 6)
    assert math.isnan(r["accuracy"][2])
    assert r["fw_iou"] == pytest.approx(1 / 3)


def test_accumulates_merges_and_resets():
    a, b, both = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    p1, t1 = torch.randint(0, 3, (2, 9, 9)), torch.randint(0, 3, (2, 9, 9))
    p2, t2 = torch.randint(0, 3, (5, 5)), torch.randint(0, 3, (5, 5))
    a.update(p1, t1)
    b.update(p2, t2)
    both.update(p1, t1)
    both.update(p2, t2)
    assert torch.equal(a.merge(b).matrix, both.matrix)
    assert int(both.matrix.sum()) == 2 * 81 + 25
    both.reset()
    assert int(both.matrix.sum()) == 0


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target holds class ids \[5\]"):
        cm.update(torch.zeros(2, dtype=torch.long), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"prediction holds class ids \[3\]"):
        cm.update(torch.tensor([3, 0]), torch.tensor([0, 0]))
    with pytest.raises(TypeError, match="class ids"):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_report_table_and_strict_json(tmp_path):
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    r = cm.compute()
    table = format_table(r, ["background", "cat", "dog"])
    assert "cat" in table and "100.00" in table and "mIoU" in table
    path = write_json(tmp_path / "m.json", r, classes=["background", "cat", "dog"])
    loaded = json.loads(path.read_text())  # strict JSON: NaN written as null
    assert loaded["iou"] == [1.0, 1.0, None] and loaded["miou"] == 1.0
