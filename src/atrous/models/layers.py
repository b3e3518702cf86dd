"""Small building blocks shared by backbones and heads."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import Conv2dNormActivation
from torchvision.ops.misc import ConvNormActivation


def fp32_depthwise_under_cpu_autocast(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a depthwise conv that CPU bf16 autocast should leave in fp32 while
    training: a strided, atrous or non-3x3 one, whose oneDNN bf16 backward runs 1.5-30x slower
    than fp32 (benchmarks/results/depthwise_bf16.md). Plain 3x3 ones, and every forward without
    gradients, are faster in bf16 and stay there."""
    plain = conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1)
    return _is_depthwise(conv) and not plain


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _keep_fp32(conv: nn.Conv2d, x: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and fp32_depthwise_under_cpu_autocast(conv)
    )


def _center_tap_only(conv: nn.Conv2d, x: Tensor, *, same_padded: bool = False) -> bool:
    """Whether every off-centre tap of this stride-1, zero-"same"-padded atrous depthwise conv
    reads only padding on ``x`` (rate >= the feature size, as ASPP's rates 12 and 18 are on the
    10x10 features of a 160 crop at OS16): the conv is then exactly its centre tap. Not while
    tracing or in ``torch.export``: an exported graph must hold at every size."""
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    padding = ((kh - 1) // 2 * dh, (kw - 1) // 2 * dw)
    return (
        not torch.jit.is_tracing()
        and not torch.compiler.is_exporting()
        and _is_depthwise(conv)
        and conv.stride == (1, 1)
        and kh % 2 == 1
        and kw % 2 == 1
        and (kh, kw) != (1, 1)
        and (same_padded or (conv.padding == padding and conv.padding_mode == "zeros"))
        and dh >= x.shape[-2]
        and dw >= x.shape[-1]
    )


def _center_tap(conv: nn.Conv2d, x: Tensor) -> Tensor:
    # A per-channel multiply: oneDNN runs these degenerate depthwise convs through a slow path,
    # 50-70x the multiply's time (benchmarks/results/depthwise_bf16.md).
    kh, kw = conv.kernel_size
    weight = conv.weight[:, 0, kh // 2, kw // 2].to(x.dtype).view(1, -1, 1, 1)
    out = x * weight
    return out if conv.bias is None else out + conv.bias.to(x.dtype).view(1, -1, 1, 1)


def _depthwise_call(
    conv: nn.Conv2d, x: Tensor, run: Callable[[Tensor], Tensor], *, same_padded: bool = False
) -> Tensor:
    """``run(x)`` (the conv itself), as the centre tap or in fp32 where those are faster."""
    if _center_tap_only(conv, x, same_padded=same_padded):
        return _center_tap(conv, x)
    if _keep_fp32(conv, x):
        with torch.autocast("cpu", enabled=False):
            return run(x.float())
    return run(x)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` that trains in fp32 under CPU bf16 autocast when it is a strided, atrous or
    non-3x3 depthwise conv (:func:`fp32_depthwise_under_cpu_autocast`), and computes an atrous
    one whose rate reaches past the features as the exact per-channel multiply it then is;
    otherwise exactly ``nn.Conv2d``. The checks run per call, so they follow
    :func:`set_dilation` and the input size."""

    def forward(self, x: Tensor) -> Tensor:
        return _depthwise_call(self, x, super().forward)


class DepthwiseConvNormActivation(Conv2dNormActivation):
    """torchvision's ``Conv2dNormActivation`` (conv ``.0``, norm ``.1``, activation ``.2``, the
    same state-dict keys) whose conv is built as the :class:`DepthwiseConv2d` it is: ``channels``
    in and out, one group per channel, padded to keep the size."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        # Conv2dNormActivation fixes its conv to nn.Conv2d; its base takes the conv class.
        ConvNormActivation.__init__(
            self,
            channels,
            channels,
            kernel_size,
            stride,
            None,
            channels,
            norm_layer,
            activation_layer,
            dilation,
            True,
            bias,
            DepthwiseConv2d,
        )


def fast_depthwise(module: nn.Module) -> nn.Module:
    """Turn every plain grouped ``nn.Conv2d`` in ``module`` into a :class:`DepthwiseConv2d` (in
    place; the same parameters and names, the same results up to float rounding: only how
    depthwise convs run changes, the dtype CPU bf16 autocast trains them in and the centre tap
    of rates past the features). Returns ``module``. For modules built elsewhere: atrous's own
    blocks construct their depthwise convs as :class:`DepthwiseConv2d` (or
    :class:`DepthwiseConvNormActivation`)."""
    for child in module.modules():
        if type(child) is nn.Conv2d and child.groups > 1:
            # A class swap keeps the parameters, their names, hooks and the RNG stream of the
            # build exactly as they were; DepthwiseConv2d adds no state.
            child.__class__ = DepthwiseConv2d
    return module


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
            DepthwiseConvNormActivation(
                in_channels,
                kernel_size,
                dilation=dilation,
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
        return _depthwise_call(self, x, self._padded_conv, same_padded=True)  # as DepthwiseConv2d

    def _padded_conv(self, x: Tensor) -> Tensor:
        x = tf_same_pad(x, self.kernel_size[0], self.stride[0], self.dilation[0])
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
