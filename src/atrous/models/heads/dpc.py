"""The Dense Prediction Cell (Chen et al., "Searching for Efficient Multi-Scale Architectures for
Dense Image Prediction", NeurIPS 2018): a searched multi-scale head that replaces ASPP.

A cell is a list of branches in the TF reference's JSON format: ``{"op": "conv", "kernel": 3,
"rate": [r_h, r_w], "input": i}`` (a 3x3 atrous separable conv: depthwise -> BN -> ReLU ->
pointwise 256 -> BN -> ReLU; kernel 1 is a 1x1 conv + BN + ReLU) or ``{"op": "pyramid_pooling",
"kernel": 1, "grid_size": [g_h, g_w], "input": i}``; ``input`` -1 is the backbone features, else
an earlier branch. The branch outputs are concatenated in order, dropped out (keep 0.9, on the
concat as the TF reference does) and projected by a 1x1 conv to 256 with BN + ReLU. Rates are
given at output stride 16 and scaled by 16 / output stride (the TF ``conv_rate_multiplier``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..layers import DepthwiseConv2d, conv_bn_relu

CITYSCAPES_CELL: list[dict[str, Any]] = [
    {"op": "conv", "kernel": 3, "rate": [1, 6], "input": -1},
    {"op": "conv", "kernel": 3, "rate": [18, 15], "input": 0},
    {"op": "conv", "kernel": 3, "rate": [6, 3], "input": 1},
    {"op": "conv", "kernel": 3, "rate": [1, 1], "input": 0},
    {"op": "conv", "kernel": 3, "rate": [6, 21], "input": 0},
]
"""The published cell (TF reference ``dense_prediction_cell_branch5_top1_cityscapes.json``)."""

CellSpec = Sequence[Mapping[str, Any]]


def load_cell(cell: CellSpec | str | Path | None) -> list[dict[str, Any]]:
    """A cell spec: None (the published Cityscapes cell), a JSON file's path, or a list;
    checked branch by branch, with errors naming the branch and the key."""
    where = "dpc_cell"
    if cell is None:
        cell = CITYSCAPES_CELL
    elif isinstance(cell, (str, Path)):
        where = str(cell)
        try:
            cell = json.loads(Path(cell).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{cell}: cannot read the DPC cell ({err})") from None
    if not isinstance(cell, Sequence) or not cell:
        raise ValueError(f"{where}: a DPC cell is a non-empty list of branches")
    out = []
    for i, branch in enumerate(cell):
        if not isinstance(branch, Mapping):
            raise ValueError(f"{where}: branch {i} is not a mapping")
        op, source = branch.get("op"), branch.get("input", -1)
        if op not in ("conv", "pyramid_pooling"):
            raise ValueError(f"{where}: branch {i} has op {op!r}; expected conv or pyramid_pooling")
        if not isinstance(source, int) or not -1 <= source < i:
            raise ValueError(f"{where}: branch {i} reads input {source!r}; expected -1..{i - 1}")
        kernel = int(branch.get("kernel", 3 if op == "conv" else 1))
        if op == "conv" and kernel not in (1, 3):
            raise ValueError(f"{where}: branch {i} has kernel {kernel}; conv takes 1 or 3")
        pair = branch.get("rate" if op == "conv" else "grid_size", [1, 1])
        pair = [pair, pair] if isinstance(pair, int) else list(pair)
        if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
            key = "rate" if op == "conv" else "grid_size"
            raise ValueError(f"{where}: branch {i} {key} must be [h, w] positive ints, got {pair}")
        entry = {"op": op, "kernel": kernel, "input": source}
        entry["rate" if op == "conv" else "grid_size"] = pair
        out.append(entry)
    return out


class _SeparableBranch(nn.Module):
    """3x3 depthwise (rate r_h x r_w) -> BN -> ReLU -> pointwise -> BN -> ReLU."""

    def __init__(self, in_channels: int, channels: int, rate: Sequence[int]) -> None:
        super().__init__()
        self.rate_at_os16 = tuple(rate)
        self.depthwise = DepthwiseConv2d(
            in_channels, in_channels, 3, groups=in_channels, bias=False
        )
        self.depthwise_bn = nn.BatchNorm2d(in_channels)
        self.pointwise = conv_bn_relu(in_channels, channels, 1)
        self.set_multiplier(1.0)

    def set_multiplier(self, multiplier: float) -> None:
        rate = tuple(max(1, round(r * multiplier)) for r in self.rate_at_os16)
        self.depthwise.dilation, self.depthwise.padding = rate, rate

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(F.relu(self.depthwise_bn(self.depthwise(x))))


class _PyramidPooling(nn.Module):
    """Average pooling over a ``grid`` of the feature map (windows of (size - 1) / grid + 1
    pixels, stride 1, as the TF reference sizes them), 1x1 conv + BN + ReLU, resized back."""

    def __init__(self, in_channels: int, channels: int, grid: Sequence[int]) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.conv = conv_bn_relu(in_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        kernel = (int((h - 1) / self.grid[0]) + 1, int((w - 1) / self.grid[1]) + 1)
        pooled = F.avg_pool2d(x, kernel, stride=1)
        return F.interpolate(self.conv(pooled), size=(h, w), mode="bilinear", align_corners=True)


class DensePredictionCell(nn.Module):
    """A DPC head (see the module docstring) on ``in_channels`` features, ``channels`` wide."""

    def __init__(
        self,
        in_channels: int,
        cell: CellSpec | str | Path | None = None,
        *,
        channels: int = 256,
        output_stride: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.cell = load_cell(cell)
        self.branches = nn.ModuleList()
        for branch in self.cell:
            source = in_channels if branch["input"] == -1 else channels
            if branch["op"] == "pyramid_pooling":
                self.branches.append(_PyramidPooling(source, channels, branch["grid_size"]))
            elif branch["kernel"] == 1:
                self.branches.append(conv_bn_relu(source, channels, 1))
            else:
                self.branches.append(_SeparableBranch(source, channels, branch["rate"]))
        self.dropout = nn.Dropout(dropout)  # on the concat, before the projection (TF ref)
        self.project = conv_bn_relu(len(self.cell) * channels, channels, 1)
        self.out_channels = channels
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Scale every atrous rate by 16 / ``output_stride`` (doubled at OS8)."""
        self.rates_multiplier = 16 / output_stride
        for branch in self.branches:
            if isinstance(branch, _SeparableBranch):
                branch.set_multiplier(self.rates_multiplier)

    @property
    def rates(self) -> tuple[tuple[int, int], ...]:
        """The atrous rates (h, w) of the conv branches at the current output stride."""
        return tuple(
            tuple(b.depthwise.dilation)  # type: ignore[misc]
            for b in self.branches
            if isinstance(b, _SeparableBranch)
        )

    def forward(self, x: Tensor) -> Tensor:
        outputs: list[Tensor] = []
        for spec, branch in zip(self.cell, self.branches, strict=True):
            outputs.append(branch(x if spec["input"] == -1 else outputs[spec["input"]]))
        return self.project(self.dropout(torch.cat(outputs, dim=1)))
