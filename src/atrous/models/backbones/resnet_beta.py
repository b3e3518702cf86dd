"""ResNet-v1 "beta" in the TF DeepLab reference's layout (``core/resnet_v1_beta.py``), the
backbone of its ``resnet_v1_50_beta`` / ``resnet_v1_101_beta`` model variants.

It differs from :mod:`.resnet` (torchvision's layout) in three places, each ported as is:

- the stem is three 3x3 convs (64 stride 2, 64, 128; each BN + ReLU) instead of one 7x7, then
  a 3x3 stride-2 max pool with TF's "SAME" padding;
- a stage's stride sits on its *last* unit (on the 3x3 conv, the shortcut subsampling the
  input), so a stage's first units run at the stride of the stage before it;
- the decoder taps (TF ``networks_to_feature_maps``: ``block1/unit_2/bottleneck_v1/conv3`` for
  OS4, ``block2/unit_3/...`` for OS8) are the last pre-stride unit's conv3 + BN output, *before*
  its residual sum and ReLU.

BN eps is 1e-5 (the reference's ResNet arg scope; torch's default). Names: ``stem.<i>`` (conv +
BN), ``layer<s>.<u>`` (torchvision ``Bottleneck``: ``conv1/bn1 ... conv3/bn3``, a projection
shortcut as ``downsample.0/1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.resnet import Bottleneck
from torchvision.ops import Conv2dNormActivation

from ..layers import set_dilation, tf_same_pad
from ._features import Backbone
from ._stride import stride_plan
from .resnet import DEPTHS, STAGE_WIDTHS

STEM_WIDTHS = (64, 64, 128)
"""The beta stem's three 3x3 convs (TF ``root_block_fn_for_beta_variant``)."""
STAGE_STRIDES = (2, 2, 2, 1)
"""Each block's stride, on its last unit; block4 keeps stride 1 (its rates grow instead)."""


class _Subsample(nn.Module):
    """The shortcut of a unit whose input and output widths agree: every ``stride``-th pixel
    (TF ``resnet_utils.subsample``, a 1x1 max pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.stride = 1

    def forward(self, x: Tensor) -> Tensor:
        return x if self.stride == 1 else x[..., :: self.stride, :: self.stride]


def _residual(unit: Bottleneck, x: Tensor) -> Tensor:
    """The unit's conv1 -> conv2 -> conv3 + BN branch, before the sum with the shortcut."""
    y = unit.relu(unit.bn1(unit.conv1(x)))
    y = unit.relu(unit.bn2(unit.conv2(y)))
    return unit.bn3(unit.conv3(y))


def _shortcut(unit: Bottleneck, x: Tensor) -> Tensor:
    return x if unit.downsample is None else unit.downsample(x)


class ResNetBeta(Backbone):
    """ResNet-v1 beta feature extractor returning ``{"os4", "os8", "out"}`` (module docstring).

    ``multi_grid`` multiplies block4's rate per unit (TF ``multi_grid``, e.g. ``(1, 2, 4)``);
    ``width_mult`` scales every width (for CPU-sized models).
    """

    def __init__(
        self,
        *,
        layers: Sequence[int] = DEPTHS[101],
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 2:
            raise ValueError(f"layers must give 2+ units for 4 stages, got {tuple(layers)}")
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        if self.multi_grid is not None and len(self.multi_grid) != layers[3]:
            raise ValueError(
                f"multi_grid needs one rate per unit of block4 ({layers[3]}), got {self.multi_grid}"
            )

        def width(c: int) -> int:
            return max(1, int(c * width_mult + 0.5))

        stem = [width(c) for c in STEM_WIDTHS]
        self.stem = nn.Sequential(
            Conv2dNormActivation(3, stem[0], 3, stride=2),
            Conv2dNormActivation(stem[0], stem[1], 3),
            Conv2dNormActivation(stem[1], stem[2], 3),
        )
        in_channels = stem[2]
        self.nominal_strides: list[list[int]] = []
        for s, (units, stride) in enumerate(zip(layers, STAGE_STRIDES, strict=True)):
            planes = width(STAGE_WIDTHS[s])
            out_channels = planes * Bottleneck.expansion
            stage = []
            for _ in range(units):
                shortcut: nn.Module
                if in_channels != out_channels:
                    shortcut = nn.Sequential(
                        nn.Conv2d(in_channels, out_channels, 1, bias=False),
                        nn.BatchNorm2d(out_channels),
                    )
                else:
                    shortcut = _Subsample()
                stage.append(Bottleneck(in_channels, planes, downsample=shortcut))
                in_channels = out_channels
            self.add_module(f"layer{s + 1}", nn.Sequential(*stage))
            self.nominal_strides.append([1] * (units - 1) + [stride])
        self.feature_channels = {
            "os4": self.layer1[0].conv3.out_channels,
            "os8": self.layer2[0].conv3.out_channels,
            "out": in_channels,
        }
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.set_output_stride(output_stride)

    def _stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def set_output_stride(self, output_stride: int) -> None:
        """Turn strides past ``output_stride`` into atrous rates (the reference's
        ``stack_blocks_dense`` rule); weights are untouched."""
        strides = [2, 2] + [s for stage in self.nominal_strides for s in stage]  # stem, pool
        plan = iter(stride_plan(strides, output_stride)[2:])
        for s, stage in enumerate(self._stages()):
            for i, unit in enumerate(stage):
                stride, rate = next(plan)
                if s == 3 and self.multi_grid is not None:
                    rate *= self.multi_grid[i]
                set_dilation(unit.conv2, rate, stride)
                unit.stride = stride
                if isinstance(unit.downsample, _Subsample):
                    unit.downsample.stride = stride
                elif stride != 1:
                    raise AssertionError("a projection shortcut never sits on a strided unit")
        self.output_stride = output_stride

    @staticmethod
    def _tapped(stage: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
        """The stage's output and its second-to-last unit's branch before the residual sum."""
        x = stage[:-2](x)
        tap = _residual(stage[-2], x)
        x = F.relu(tap + _shortcut(stage[-2], x))
        return stage[-1](x), tap

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        x = F.max_pool2d(tf_same_pad(x, 3, 2, value=float("-inf")), 3, 2)
        x, low = self._tapped(self.layer1, x)
        x, mid = self._tapped(self.layer2, x)
        return {"os4": low, "os8": mid, "out": self.layer4(self.layer3(x))}


def resnet50_beta(
    *, output_stride: int = 16, multi_grid: Sequence[int] | None = None, width_mult: float = 1.0
) -> ResNetBeta:
    """ResNet-50 beta (TF reference ``resnet_v1_50_beta``); see :class:`ResNetBeta`."""
    return ResNetBeta(
        layers=DEPTHS[50], output_stride=output_stride, multi_grid=multi_grid, width_mult=width_mult
    )


def resnet101_beta(
    *, output_stride: int = 16, multi_grid: Sequence[int] | None = None, width_mult: float = 1.0
) -> ResNetBeta:
    """ResNet-101 beta (TF reference ``resnet_v1_101_beta``); see :class:`ResNetBeta`."""
    return ResNetBeta(
        layers=DEPTHS[101],
        output_stride=output_stride,
        multi_grid=multi_grid,
        width_mult=width_mult,
    )
