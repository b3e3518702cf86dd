"""The Dense Prediction Cell: the published cell's wiring and rates at OS16 and OS8, a custom cell
with pyramid pooling, JSON cells and their errors, and the paper's parameter arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atrous.models import deeplabv3, deeplabv3plus
from atrous.models.heads.dpc import CITYSCAPES_CELL, DensePredictionCell


def test_the_published_cell_wiring_and_rates():
    cell = DensePredictionCell(64, channels=16).eval()
    assert [b["input"] for b in cell.cell] == [-1, 0, 1, 0, 0]
    assert cell.rates == ((1, 6), (18, 15), (6, 3), (1, 1), (6, 21))
    cell.set_output_stride(8)
    assert cell.rates == ((2, 12), (36, 30), (12, 6), (2, 2), (12, 42))
    # Branch 2 reads branch 1, which reads branch 0: check the graph by tracing the inputs.
    seen = {}
    hooks = [
        b.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, (i[0], o)))
        for k, b in enumerate(cell.branches)
    ]
    x = torch.randn(1, 64, 9, 11)
    with torch.no_grad():
        out = cell(x)
    for h in hooks:
        h.remove()
    assert out.shape == (1, 16, 9, 11) and cell.project[0].in_channels == 5 * 16
    assert seen[0][0] is x
    assert seen[1][0] is seen[0][1] and seen[2][0] is seen[1][1]
    assert seen[3][0] is seen[0][1] and seen[4][0] is seen[0][1]


def test_parameters_of_the_branches_match_the_paper_arithmetic():
    """The paper's Params column counts the five branches' conv weights (no projection, no BN):
    MobileNetV2 320 * 9 + 320 * 256 + 4 * (256 * 9 + 256 * 256) = 356,160; Xception 814,080."""
    for in_channels, expected in ((320, 356_160), (2048, 814_080)):
        cell = DensePredictionCell(in_channels)
        weights = sum(p.numel() for n, p in cell.branches.named_parameters() if p.ndim == 4)
        assert weights == expected


def test_custom_cell_with_pyramid_pooling_and_a_1x1_branch(tmp_path: Path):
    spec = [
        {"op": "pyramid_pooling", "kernel": 1, "grid_size": [2, 2], "input": -1},
        {"op": "conv", "kernel": 1, "rate": [1, 1], "input": -1},
        {"op": "conv", "kernel": 3, "rate": [3, 3], "input": 1},
    ]
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(spec))
    model = deeplabv3plus(
        num_classes=3, width_mult=0.25, channels=16, head="dpc", dpc_cell=str(path)
    )
    assert model.head.rates == ((3, 3),)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 65, 81)).shape == (1, 3, 65, 81)
    pooling = model.head.branches[0]
    pooling.conv = torch.nn.Identity()  # look at the pooling alone
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).view(1, 2, 5, 5)
    # grid 2 on 5 pixels: windows of (5 - 1) / 2 + 1 = 3 pixels, stride 1 -> 3 x 3 averages,
    # resized back to 5 x 5 (align_corners, as the TF reference): the corners are exact.
    got = pooling(x)
    windows = torch.nn.functional.avg_pool2d(x, 3, stride=1)
    assert got.shape == (1, 2, 5, 5) and windows.shape == (1, 2, 3, 3)
    assert got[0, 0, 0, 0] == x[0, 0, :3, :3].mean() and got[0, 1, 4, 4] == x[0, 1, 2:, 2:].mean()
    v3 = deeplabv3(backbone="resnet50", num_classes=3, channels=16, head="dpc", dpc_cell=spec)
    assert v3(torch.randn(2, 3, 33, 33)).shape == (2, 3, 33, 33)


def test_cell_errors_name_the_branch(tmp_path: Path):
    with pytest.raises(ValueError, match="branch 1 reads input 3"):
        DensePredictionCell(8, [CITYSCAPES_CELL[0], {"op": "conv", "rate": [1, 1], "input": 3}])
    with pytest.raises(ValueError, match="branch 0 has op 'pool'"):
        DensePredictionCell(8, [{"op": "pool", "input": -1}])
    with pytest.raises(ValueError, match=r"rate must be \[h, w\]"):
        DensePredictionCell(8, [{"op": "conv", "kernel": 3, "rate": [0, 2], "input": -1}])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the DPC cell"):
        DensePredictionCell(8, str(bad))
    with pytest.raises(ValueError, match="dpc_cell needs head='dpc'"):
        deeplabv3plus(num_classes=3, dpc_cell=CITYSCAPES_CELL)
    with pytest.raises(ValueError, match="unknown head"):
        deeplabv3plus(num_classes=3, head="psp")
