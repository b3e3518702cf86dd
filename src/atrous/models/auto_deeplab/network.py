"""Auto-DeepLab (Liu et al., "Auto-DeepLab: Hierarchical Neural Architecture Search for Semantic
Image Segmentation", CVPR 2019): the network its search found, as the TF reference builds it
(``core/nas_network.py::hnasnet``, ``core/nas_cell.py``), under DeepLab's ASPP + v3+ decoder.

The network is a stem and 12 cells, each at a level of the resolution path (0 = OS4 ... 3 =
OS32); a cell at level ``l`` is ``F * 2**l`` filters wide per block and outputs its 5 blocks
concatenated. Each block adds two operations on earlier hidden states (the previous two cells'
outputs, then the cell's own blocks). An architecture is ``{"path": [...], "cell": {"operations":
[...], "inputs": [...]}}`` (a JSON file or a dict), the found one by default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..deeplab import DeepLab
from ..heads.aspp import ASPP
from ..heads.decoders import DeepLabV3PlusDecoder
from ..layers import DepthwiseConv2d
from ..progress import register_progress_hook

FOUND_PATH = (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)
"""Level of each of the 12 cells (TF reference ``hnasnet``): OS 4,4,4,8,16,8,16,16,32,32,16,8."""
FOUND_OPERATIONS = (
    "atrous_5x5", "separable_3x3_2", "separable_3x3_2", "atrous_3x3", "separable_3x3_2",
    "separable_3x3_2", "separable_5x5_2", "separable_5x5_2", "separable_5x5_2", "atrous_5x5",
)  # fmt: skip
FOUND_INPUTS = (1, 0, 1, 0, 3, 1, 4, 2, 3, 5)
"""Hidden state each operation reads: 0 = the previous cell, 1 = the one before, 2 + b = block b."""
FOUND = {"path": list(FOUND_PATH), "cell": {"operations": list(FOUND_OPERATIONS),
                                             "inputs": list(FOUND_INPUTS)}}  # fmt: skip
SIZES = {"S": 20, "M": 32, "L": 48}
"""Filter multiplier F of Auto-DeepLab-S/M/L (paper Table 2)."""
OPERATIONS = (
    "separable_3x3_2", "separable_5x5_2", "atrous_3x3", "atrous_5x5",
    "avg_pool_3x3", "max_pool_3x3", "skip_connect", "none",
)  # fmt: skip
"""The paper's 8 operations (TF reference names): ``separable_kxk_2`` is two ReLU -> separable
conv -> BN layers, ``atrous_kxk`` ReLU -> full kxk conv at rate 2 -> BN, ``none`` no connection
(in a found cell: identity, as the TF reference's ``none``)."""
BN_EPS = 1e-3  # TF reference BN epsilon for NAS cells


def load_architecture(architecture: Mapping[str, Any] | str | Path | None) -> dict[str, Any]:
    """The architecture dict (see the module docstring), from a JSON path, a dict or None
    (the found one), checked: path levels 0..3 changing by at most one, ops known, inputs
    reading earlier hidden states only."""
    where = "architecture"
    if architecture is None:
        architecture = FOUND
    elif isinstance(architecture, (str, Path)):
        where = str(architecture)
        try:
            architecture = json.loads(Path(architecture).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{architecture}: cannot read the architecture ({err})") from None
    try:
        path = [int(v) for v in architecture["path"]]
        ops = [str(o) for o in architecture["cell"]["operations"]]
        inputs = [int(i) for i in architecture["cell"]["inputs"]]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{where}: needs path, cell.operations and cell.inputs ({err})") from None
    if not path or any(not 0 <= v <= 3 for v in path) or path[0] > 1:
        raise ValueError(f"{where}: path levels must be 0..3 (OS4..OS32), starting at 0 or 1")
    if any(abs(a - b) > 1 for a, b in zip([0, *path], path, strict=False)):
        raise ValueError(f"{where}: path {path} changes by more than one level between cells")
    if len(ops) != len(inputs) or len(ops) % 2:
        raise ValueError(f"{where}: operations and inputs must pair up, two per block")
    for i, (op, source) in enumerate(zip(ops, inputs, strict=True)):
        if op not in OPERATIONS:
            raise ValueError(f"{where}: unknown operation {op!r}; available: {OPERATIONS}")
        if not 0 <= source < 2 + i // 2:
            raise ValueError(f"{where}: operation {i} reads hidden state {source}, not yet made")
    return {"path": path, "cell": {"operations": ops, "inputs": inputs}}


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class DropPath(nn.Module):
    """ScheduledDropPath (TF reference ``nas_cell``): in training, drops a whole operation's
    output per sample with probability ``1 - keep_t`` and scales the rest by ``1 / keep_t``;
    ``keep_t = 1 - min(1, progress) * (1 - keep)``, ``keep`` set per cell by its depth."""

    def __init__(self) -> None:
        super().__init__()
        self.keep, self.progress = 1.0, 0.0

    def forward(self, x: Tensor) -> Tensor:
        keep = 1.0 - min(1.0, self.progress) * (1.0 - self.keep)
        if not self.training or keep >= 1.0:
            return x
        mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < keep
        return x * mask.to(x.dtype) / keep


class _Op(nn.Module):
    """One cell operation, ``channels`` wide, stride 1 or 2."""

    def __init__(self, name: str, channels: int, stride: int) -> None:
        super().__init__()
        self.name, self.stride = name, stride
        if name.startswith("separable"):
            k = int(name.split("_")[1][0])
            layers: list[nn.Module] = []
            for i in range(2):  # separable_kxk_2: two ReLU -> separable conv -> BN layers
                s = stride if i == 0 else 1
                layers += [
                    nn.ReLU(),
                    DepthwiseConv2d(channels, channels, k, s, k // 2, groups=channels, bias=False),
                    nn.Conv2d(channels, channels, 1, bias=False),
                    _bn(channels),
                ]
            self.body: nn.Module = nn.Sequential(*layers)
        elif name.startswith("atrous"):
            k = int(name.split("_")[1][0])
            # Stride 2: the TF reference resizes by half first, then convolves at rate 1.
            rate = 1 if stride == 2 else 2
            self.body = nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(channels, channels, k, 1, rate * (k // 2), dilation=rate, bias=False),
                _bn(channels),
            )
        elif name in ("avg_pool_3x3", "max_pool_3x3"):
            pool = nn.AvgPool2d if name.startswith("avg") else nn.MaxPool2d
            kwargs = {"count_include_pad": False} if name.startswith("avg") else {}
            self.body = pool(3, stride, 1, **kwargs)
        elif name in ("skip_connect", "none"):
            self.body = (
                nn.Identity()
                if stride == 1
                else nn.Sequential(
                    nn.ReLU(), nn.Conv2d(channels, channels, 1, 2, bias=False), _bn(channels)
                )
            )
        else:
            raise ValueError(f"unknown operation {name!r}")
        self.drop = DropPath()

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2 and self.name.startswith("atrous"):
            size = (x.shape[-2] // 2, x.shape[-1] // 2)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.drop(self.body(x))


class _Cell(nn.Module):
    """A cell: both inputs to ``channels`` (1x1 conv + BN after ReLU), then the blocks."""

    def __init__(
        self,
        previous: int,
        before: int,
        channels: int,
        operations: Sequence[str],
        inputs: Sequence[int],
        *,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        self.h0 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(previous, channels, 1, bias=False), _bn(channels)
        )
        self.h1 = (
            nn.Sequential(nn.ReLU(), nn.Conv2d(before, channels, 1, bias=False), _bn(channels))
            if before != channels
            else nn.Identity()
        )
        self.ops = nn.ModuleList(
            _Op(op, channels, 2 if downsample and source < 2 else 1)
            for op, source in zip(operations, inputs, strict=True)
        )
        self.out_channels = channels * (len(operations) // 2)

    def forward(self, previous: Tensor, before: Tensor) -> Tensor:
        if before.shape[-2:] != previous.shape[-2:]:
            before = F.interpolate(
                before, size=previous.shape[-2:], mode="bilinear", align_corners=False
            )
        states = [self.h0(previous), self.h1(before)]
        blocks = []
        for b in range(len(self.ops) // 2):
            i, j = 2 * b, 2 * b + 1
            block = self.ops[i](states[self.inputs[i]]) + self.ops[j](states[self.inputs[j]])
            states.append(block)
            blocks.append(block)
        return torch.cat(blocks, dim=1)


class AutoDeepLabNetwork(nn.Module):
    """The stem and the cells along ``path``; returns ``{"os4": ..., "out": ...}`` like the
    other backbones: ``os4`` is the last OS4 cell (``Cell_2`` on the found path, the TF
    reference's decoder end point), ``out`` the last cell after a ReLU."""

    def __init__(
        self, architecture: Mapping[str, Any] | str | Path | None = None, *, filters: int = 20
    ) -> None:
        super().__init__()
        arch = load_architecture(architecture)
        self.architecture, self.filters = arch, filters
        path, ops, inputs = arch["path"], arch["cell"]["operations"], arch["cell"]["inputs"]
        self.stem = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1, bias=False), _bn(64), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, 1, 1, bias=False), _bn(64)),
            nn.Sequential(nn.ReLU(), nn.Conv2d(64, 128, 3, 2, 1, bias=False), _bn(128)),
        ])  # fmt: skip
        channels, level = [64, 128], 0
        self.cells = nn.ModuleList()
        for target in path:
            width = filters * 2**target
            cell = _Cell(channels[-1], channels[-2], width, ops, inputs, downsample=target > level)
            self.cells.append(cell)
            channels.append(cell.out_channels)
            level = target
        self.path = tuple(path)
        low = [i for i, v in enumerate(path) if v == 0]
        self.low_level_cell = low[-1] if low else None
        self.output_stride = 4 * 2 ** path[-1]
        self.output_strides = (self.output_stride,)  # fixed by the path
        self.max_stride = 4 * 2 ** max(path)
        self.feature_channels = {
            "os4": channels[2 + self.low_level_cell] if low else 128,
            "out": channels[-1],
        }
        # ScheduledDropPath follows training: the loop reports its progress to this hook
        register_progress_hook(self, AutoDeepLabNetwork.set_drop_path_progress)

    def set_drop_path(self, keep_prob: float) -> None:
        """ScheduledDropPath's keep probability at the last cell (1 = off); cell ``i`` of ``n``
        keeps ``1 - (i + 1) / n * (1 - keep_prob)``."""
        for i, cell in enumerate(self.cells):
            keep = 1.0 - (i + 1) / len(self.cells) * (1.0 - keep_prob)
            for op in cell.ops:
                op.drop.keep = keep

    def set_drop_path_progress(self, progress: float) -> None:
        """The schedule's position in training, 0 to 1 (the training loop sets it each step
        through :func:`atrous.models.progress.set_training_progress`)."""
        for module in self.modules():
            if isinstance(module, DropPath):
                module.progress = progress

    def set_output_stride(self, output_stride: int) -> None:
        if output_stride != self.output_stride:
            raise ValueError(
                f"an Auto-DeepLab network's output stride is its path's last level: "
                f"{self.output_stride}, not {output_stride}"
            )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        before = self.stem[0](x)
        previous = self.stem[1](before)
        level, low = 0, previous
        for i, (cell, target) in enumerate(zip(self.cells, self.path, strict=True)):
            if target < level:  # level down: the previous output is upsampled first
                size = (previous.shape[-2] * 2, previous.shape[-1] * 2)
                previous = F.interpolate(previous, size=size, mode="bilinear", align_corners=False)
            out = cell(previous, before)
            before, previous, level = previous, out, target
            if i == self.low_level_cell:
                low = out
        return {"os4": low, "out": F.relu(previous)}


def auto_deeplab(
    *,
    size: str = "S",
    num_classes: int = 21,
    architecture: Mapping[str, Any] | str | None = None,
    filters: int | None = None,
    atrous_rates: Sequence[int] = (6, 12, 18),
    channels: int = 256,
    drop_path_keep_prob: float = 1.0,
    align_corners: bool = False,
) -> DeepLab:
    """Auto-DeepLab-S/M/L (F = 20/32/48, paper Table 2): the found network (or ``architecture``,
    e.g. the JSON ``atrous search`` writes), then ASPP (``atrous_rates`` at OS16, so 12/24/36 at
    the network's OS8, as the TF reference's command) and the v3+ decoder on the last OS4 cell.
    ``drop_path_keep_prob`` < 1 turns on ScheduledDropPath for retraining (the paper's +1.7 mIoU
    for S). Trained from scratch, as in the paper."""
    if size not in SIZES and filters is None:
        raise ValueError(f"size must be one of {', '.join(SIZES)} (or pass filters)")
    net = AutoDeepLabNetwork(architecture, filters=filters or SIZES[size])
    net.set_drop_path(drop_path_keep_prob)
    # Plain (not separable) 3x3 convs in ASPP and decoder: with them the parameters match the
    # paper's Table 2 to 0.1% for S, M and L (separable ones give 23% fewer for S).
    aspp = ASPP(
        net.feature_channels["out"], channels, atrous_rates,
        output_stride=net.output_stride, separable=False,
    )  # fmt: skip
    decoder = DeepLabV3PlusDecoder(
        net.feature_channels["os4"], channels, channels=channels, separable=False
    )
    classifier = nn.Conv2d(channels, num_classes, 1)
    return DeepLab(
        net, aspp, classifier, decoder, num_classes=num_classes, align_corners=align_corners
    )
