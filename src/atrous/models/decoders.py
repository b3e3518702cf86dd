"""The DeepLabv3+ decoder (Chen et al., 2018, Sec. 3.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import conv3x3, conv_bn_relu


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
    ) -> None:
        super().__init__()
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
        x = F.interpolate(
            x, size=low_level.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return self.fuse(torch.cat([x, low_level], dim=1))
