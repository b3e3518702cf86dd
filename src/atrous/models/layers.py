"""Small building blocks shared by backbones and heads."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
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


def tf_same_pad(
    x: Tensor, kernel: int, stride: int, dilation: int = 1, value: float = 0.0
) -> Tensor:
    """``x`` padded as TensorFlow's ``padding="SAME"`` pads it: ``ceil(size / stride)`` outputs,
    the odd pixel of an uneven total at the bottom/right (for strided convs on even sizes).

    The amounts come from the input's own shape (with ``%``, so that traced exports keep them
    dynamic); they need an effective kernel at least as large as the stride.
    """
    span = (kernel - 1) * dilation + 1
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = span - ((size - 1) % stride + 1)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding, computed from each input's size (it
    ignores ``padding``): the TF reference's strided convs on even sizes pad one more pixel at
    the bottom/right than at the top/left. Stride 1 gives the usual symmetric padding."""

    def forward(self, x: Tensor) -> Tensor:
        k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
        if (k - 1) * d + 1 < s:
            raise ValueError(f"Conv2dSame needs a kernel span of at least the stride {s}")
        x = tf_same_pad(x, k, s, d)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def same_padded(conv: nn.Conv2d) -> Conv2dSame:
    """A :class:`Conv2dSame` holding ``conv``'s parameters (the same tensors, the same names)."""
    new = Conv2dSame(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    new.weight = conv.weight
    new.bias = conv.bias
    return new
