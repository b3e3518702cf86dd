"""The DeepLabv3+ decoder (Chen et al., 2018, Sec. 3.1) and the upsampling alternatives of "The
Devil is in the Decoder" (Wojna et al., BMVC 2017): bilinear additive upsampling, depth-to-space
and transposed convolutions, with or without the residual-like connection."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..layers import conv3x3, conv_bn_relu

DECODERS = ("deeplabv3plus", "bilinear_additive", "depth_to_space", "transposed")
"""How the encoder output reaches the low-level features' resolution: bilinear resizing (the
v3+ paper), or x2 stages of the "Decoders matter" paper."""


class BilinearAdditiveUpsample(nn.Module):
    """Bilinear upsampling by ``factor`` (``align_corners=False``), then the sum of every
    ``group`` consecutive channels: ``C -> C / group`` (Wojna et al., Sec. 3.1). No parameters;
    output channel ``o`` is the sum of upsampled channels ``o*group ... o*group + group - 1``."""

    def __init__(self, factor: int = 2, group: int = 4) -> None:
        super().__init__()
        if factor < 1 or group < 1:
            raise ValueError(f"factor and group must be positive, got {factor} and {group}")
        self.factor, self.group = factor, group

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if c % self.group:
            raise ValueError(f"{c} channels do not split into groups of {self.group}")
        y = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return y.view(n, c // self.group, self.group, h * self.factor, w * self.factor).sum(2)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, group={self.group}"


class UpsamplingStage(nn.Module):
    """One x2 stage at constant width ``channels``: bilinear additive upsampling (C -> C/4) or
    depth-to-space (C -> C/4), each followed by a 3x3 conv back to C, or a 4x4 stride-2
    transposed conv; all with BN + ReLU. ``residual`` adds the parameter-free bilinear additive
    upsampling of the stage's input (group = in/out channels, 1 here) to its output: the
    residual-like connection of Wojna et al."""

    def __init__(self, kind: str, channels: int, *, residual: bool = False) -> None:
        super().__init__()
        if kind == "transposed":
            self.up: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
        elif kind in ("bilinear_additive", "depth_to_space"):
            if channels % 4:
                raise ValueError(f"{kind} needs channels divisible by 4, got {channels}")
            if kind == "bilinear_additive":
                first: nn.Module = BilinearAdditiveUpsample(2, 4)
            else:
                first = nn.PixelShuffle(2)
            self.up = nn.Sequential(first, conv_bn_relu(channels // 4, channels, 3))
        else:
            raise ValueError(f"unknown upsampling stage {kind!r}; available: {DECODERS[1:]}")
        self.skip = BilinearAdditiveUpsample(2, 1) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.up(x)
        return y if self.skip is None else y + self.skip(x)


class DeepLabV3PlusDecoder(nn.Module):
    """Fuse upsampled ASPP features with low-level OS4 features.

    Low-level features are reduced by a 1x1 conv to 48 channels (so they do not outweigh the
    encoder's 256), concatenated with the bilinearly upsampled ASPP output, and refined by two
    3x3 convs with 256 channels (v3+ paper, Sec. 3.1 and Table 1-2).
    """

    def __init__(
        self,
        low_level_channels: int,
        in_channels: int = 256,
        *,
        low_level_projection: int = 48,
        channels: int = 256,
        separable: bool = True,
        depthwise_bn: bool = True,
        upsampling: str = "deeplabv3plus",
        residual: bool = False,
        factor: int = 4,
    ) -> None:
        super().__init__()
        if upsampling not in DECODERS:
            raise ValueError(f"unknown decoder {upsampling!r}; available: {', '.join(DECODERS)}")
        if residual and upsampling == "deeplabv3plus":
            raise ValueError("decoder_residual needs a learned decoder (not plain bilinear)")
        stages = max(0, round(math.log2(factor))) if upsampling != "deeplabv3plus" else 0
        self.upsampling = upsampling
        self.stages = nn.ModuleList(
            UpsamplingStage(upsampling, in_channels, residual=residual) for _ in range(stages)
        )
        self.reduce = conv_bn_relu(low_level_channels, low_level_projection, 1)
        self.fuse = nn.Sequential(
            conv3x3(
                in_channels + low_level_projection,
                channels,
                separable=separable,
                depthwise_bn=depthwise_bn,
            ),
            conv3x3(channels, channels, separable=separable, depthwise_bn=depthwise_bn),
        )
        self.out_channels = channels
        self.align_corners = False  # the model's resize convention, set by DeepLab

    def forward(self, x: Tensor, low_level: Tensor) -> Tensor:
        low_level = self.reduce(low_level)
        # Learned x2 stages up to the low-level resolution (as many as the output stride
        # needs; built for the construction-time stride), then an exact bilinear resize.
        for stage in self.stages:
            if x.shape[-2] * 2 > low_level.shape[-2] + 1:
                break
            x = stage(x)
        x = F.interpolate(
            x, size=low_level.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return self.fuse(torch.cat([x, low_level], dim=1))
