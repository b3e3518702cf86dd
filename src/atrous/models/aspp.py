"""Atrous Spatial Pyramid Pooling, DeepLabv3 form (Chen et al., 2017, Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import conv3x3, conv_bn_relu, set_dilation

ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
"""Atrous rates of the three 3x3 branches per output stride (v3 paper, Sec. 3.3)."""


class ImagePooling(nn.Module):
    """Image-level features: global average pool, 1x1 conv + BN + ReLU, upsample back."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """1x1 conv + three 3x3 atrous convs + image pooling, concatenated and projected.

    ``separable=True`` gives the DeepLabv3+ variant with depthwise-separable 3x3 branches.
    Dropout 0.1 after the projection follows the TF reference (keep probability 0.9).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = ASPP_RATES[16],
        *,
        separable: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, out_channels, 1)])
        for rate in rates:
            self.branches.append(
                conv3x3(in_channels, out_channels, dilation=rate, separable=separable)
            )
        self.pooling = ImagePooling(in_channels, out_channels)
        self.project = nn.Sequential(
            conv_bn_relu((len(rates) + 2) * out_channels, out_channels, 1), nn.Dropout(dropout)
        )
        self.rates = tuple(rates)
        self.out_channels = out_channels

    def set_rates(self, rates: Sequence[int]) -> None:
        """Change the atrous rates in place (e.g. doubled when moving from OS16 to OS8)."""
        if len(rates) != len(self.rates):
            raise ValueError(f"expected {len(self.rates)} rates, got {len(rates)}")
        for branch, rate in zip(self.branches[1:], rates, strict=True):
            set_dilation(branch[0][0] if isinstance(branch[0], nn.Sequential) else branch[0], rate)
        self.rates = tuple(rates)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x))
        return self.project(torch.cat(outs, dim=1))
