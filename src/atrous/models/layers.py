"""Small building blocks shared by backbones and heads."""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 1, *, dilation: int = 1
) -> Conv2dNormActivation:
    """Conv (no bias) + BatchNorm + ReLU, padded to keep the spatial size."""
    return Conv2dNormActivation(
        in_channels, out_channels, kernel_size, dilation=dilation, bias=False
    )


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU.

    DeepLabv3+ (Sec. 3.2) puts BN and ReLU after the depthwise conv as well as after the
    pointwise one; atrous rate applies to the depthwise conv. ``depthwise_bn=False`` drops the
    inner BN + ReLU (as segmentation_models_pytorch does), for ablations.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        dilation: int = 1,
        depthwise_bn: bool = True,
    ) -> None:
        super().__init__(
            Conv2dNormActivation(
                in_channels,
                in_channels,
                kernel_size,
                dilation=dilation,
                groups=in_channels,
                bias=False,
                norm_layer=nn.BatchNorm2d if depthwise_bn else None,
                activation_layer=nn.ReLU if depthwise_bn else None,
            ),
            conv_bn_relu(in_channels, out_channels, 1),
        )


def conv3x3(
    in_channels: int,
    out_channels: int,
    *,
    dilation: int = 1,
    separable: bool = False,
    depthwise_bn: bool = True,
) -> nn.Module:
    """A 3x3 conv + BN + ReLU block, plain or depthwise-separable."""
    if separable:
        return SeparableConv2d(
            in_channels, out_channels, 3, dilation=dilation, depthwise_bn=depthwise_bn
        )
    return conv_bn_relu(in_channels, out_channels, 3, dilation=dilation)


def set_dilation(conv: nn.Conv2d, dilation: int, stride: int | None = None) -> None:
    """Re-point a conv at a new atrous rate (and stride), keeping 'same' padding.

    This is how output stride and ASPP rates change without touching weights.
    """
    k = conv.kernel_size[0]
    conv.dilation = (dilation, dilation)
    conv.padding = ((k - 1) // 2 * dilation,) * 2
    if stride is not None:
        conv.stride = (stride, stride)
