"""ResNet-50/101 (He et al., 2016) with atrous output stride, multi-grid and DeepLabv3's cascade.

Parameter names follow ``torchvision.models.resnet50`` (``conv1``, ``bn1``, ``layer1`` ...
``layer4``, each unit torchvision's ``Bottleneck``), so its ImageNet state dict loads directly,
minus the classifier (``fc``). Strides sit on each stage's first unit (torchvision's layout; the
TF reference puts them on the last unit), so the first unit of a dilated stage keeps the rate of
the stage before it, as torchvision's ``replace_stride_with_dilation`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from ..layers import set_dilation
from ._features import Backbone
from ._stride import stride_plan

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
"""Bottleneck units per stage (block1..block4): ResNet paper, Table 1."""

STAGE_WIDTHS = (64, 128, 256, 512)
"""Bottleneck width of each stage; its output has four times as many channels."""

STAGE_STRIDES = (1, 2, 2, 2)
STEM_STRIDES = (2, 2)  # conv1 (7x7, stride 2), then max pool (3x3, stride 2)

CASCADE_MULTI_GRID = (1, 2, 1)
"""Unit rates of block4 and the cascaded blocks 5-7 (DeepLabv3, Sec. 4.1, Table 3's best)."""

MAX_EXTRA_BLOCKS = 3  # blocks 5, 6 and 7 (DeepLabv3, Sec. 3.2, Fig. 3)


def _stage(in_channels: int, width: int, units: int, stride: int) -> nn.Sequential:
    """``units`` bottlenecks; the first gets a projection shortcut when shape changes.

    Strides and rates are left at 1 here and set by :meth:`ResNet.set_output_stride`.
    """
    out_channels = width * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
    blocks = [Bottleneck(in_channels, width, downsample=downsample)]
    blocks += [Bottleneck(out_channels, width) for _ in range(units - 1)]
    return nn.Sequential(*blocks)


class ResNet(Backbone):
    """ResNet feature extractor returning ``{"os4": layer1 output, "out": final features}``.

    ``layers`` gives the units per stage (see :data:`DEPTHS`). ``multi_grid`` (DeepLabv3,
    Sec. 3.2; TF reference ``multi_grid``) multiplies the last block's rate per unit: at OS16
    block4's rate is 2, so ``(1, 2, 4)`` gives its units rates 2, 4, 8. Without it, block4's
    first unit keeps the rate of the stage before it (1 at OS16), as in torchvision.

    ``extra_blocks`` (0-3) appends cascaded copies of block4 (``layer5`` ... ``layer7``;
    DeepLabv3 "going deeper", Sec. 3.2) whose nominal stride 2 always becomes a doubled atrous
    rate. ``multi_grid`` then applies to block4 and every added block (Sec. 4.1) and defaults to
    (1, 2, 1), Table 3's best. ``"out"`` is the last block's output.
    """

    def __init__(
        self,
        *,
        layers: Sequence[int] = DEPTHS[101],
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        extra_blocks: int = 0,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give units for 4 stages, got {tuple(layers)}")
        if not 0 <= extra_blocks <= MAX_EXTRA_BLOCKS:
            raise ValueError(f"extra_blocks must be 0..{MAX_EXTRA_BLOCKS}, got {extra_blocks}")
        if multi_grid is None and extra_blocks:
            multi_grid = CASCADE_MULTI_GRID
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        if self.multi_grid is not None and len(self.multi_grid) != layers[3]:
            raise ValueError(
                f"multi_grid needs one rate per unit of block4 ({layers[3]}), got {self.multi_grid}"
            )

        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        self.stages: list[str] = []
        self.nominal_strides: list[int] = []
        for i, (width, units, stride) in enumerate(
            zip(STAGE_WIDTHS, layers, STAGE_STRIDES, strict=True)
        ):
            self.add_module(f"layer{i + 1}", _stage(in_channels, width, units, stride))
            self.stages.append(f"layer{i + 1}")
            self.nominal_strides.append(stride)
            in_channels = width * Bottleneck.expansion
        for i in range(extra_blocks):
            # A copy of block4: in == out channels, so an identity shortcut; its stride is
            # always past OS32 and so never applied (see set_output_stride).
            self.add_module(f"layer{5 + i}", _stage(in_channels, STAGE_WIDTHS[3], layers[3], 1))
            self.stages.append(f"layer{5 + i}")
            self.nominal_strides.append(2)
        self.feature_channels = {
            "os4": STAGE_WIDTHS[0] * Bottleneck.expansion,
            "os8": STAGE_WIDTHS[1] * Bottleneck.expansion,  # layer2 (Panoptic-DeepLab's decoder)
            "out": in_channels,
        }

        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.set_output_stride(output_stride)

    def _units(self) -> list[tuple[int, Bottleneck, int]]:
        """Every bottleneck as (stage index, unit, nominal stride)."""
        units = []
        for s, (name, stride) in enumerate(zip(self.stages, self.nominal_strides, strict=True)):
            for i, unit in enumerate(getattr(self, name)):
                units.append((s, unit, stride if i == 0 else 1))
        return units

    def set_output_stride(self, output_stride: int) -> None:
        """Turn strides past ``output_stride`` into atrous rates; weights are untouched."""
        units = self._units()
        plan = stride_plan([*STEM_STRIDES, *(stride for _, _, stride in units)], output_stride)
        plan = plan[len(STEM_STRIDES) :]
        # Multi-grid stages: block4 and the cascaded blocks. Their rate is the one the plan gives
        # the stage's later units, i.e. after the stage's own stride became a rate. Without
        # multi-grid, block4's first unit keeps the rate before it, as the plan says.
        stage_rate = {s: rate for (s, _, _), (_, rate) in zip(units, plan, strict=True)}
        index_in_stage: dict[int, int] = {}
        for (s, unit, _), (stride, rate) in zip(units, plan, strict=True):
            i = index_in_stage[s] = index_in_stage.get(s, -1) + 1
            if self.multi_grid is not None and s >= 3:
                rate = stage_rate[s] * self.multi_grid[i]
            if s >= 4 and stride != 1:
                raise AssertionError("cascaded blocks lie past OS32; their stride is never used")
            set_dilation(unit.conv2, rate, stride)
            unit.stride = stride
            if unit.downsample is not None:
                unit.downsample[0].stride = (stride, stride)
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        mid = self.layer2(low)
        out = mid
        for name in self.stages[2:]:
            out = getattr(self, name)(out)
        return {"os4": low, "os8": mid, "out": out}


def resnet50(
    *, output_stride: int = 16, multi_grid: Sequence[int] | None = None, extra_blocks: int = 0
) -> ResNet:
    """ResNet-50 backbone; see :class:`ResNet`."""
    return ResNet(
        layers=DEPTHS[50],
        output_stride=output_stride,
        multi_grid=multi_grid,
        extra_blocks=extra_blocks,
    )


def resnet101(
    *, output_stride: int = 16, multi_grid: Sequence[int] | None = None, extra_blocks: int = 0
) -> ResNet:
    """ResNet-101 backbone, the DeepLabv2/v3 default; see :class:`ResNet`."""
    return ResNet(
        layers=DEPTHS[101],
        output_stride=output_stride,
        multi_grid=multi_grid,
        extra_blocks=extra_blocks,
    )
