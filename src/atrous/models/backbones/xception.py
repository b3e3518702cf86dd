"""Modified aligned Xception (DeepLabv3+, Chen et al., 2018, Sec. 3.2) with atrous output stride.

The network is a table of blocks (:data:`XCEPTION_BLOCKS`); each block is three 3x3
depthwise-separable convs, its last one strided, plus a residual. Compared to Chollet's
Xception the paper (a) deepens the middle flow (16 blocks for Xception-65), (b) replaces every
max pool by a stride-2 separable conv, so output stride can become atrous rate anywhere, and
(c) adds BN after each depthwise conv.

Activation placement ports the TF DeepLab reference (``core/xception.py``), which the
published checkpoints (and timm's ``xception41/65/71``) use: in the entry and middle flow and the
first exit block, a ReLU comes *before* each separable conv and the convs themselves are
BN-only (``activation_fn_in_separable_conv=False``); only the last exit block (no residual)
has BN + ReLU after its depthwise and its pointwise convs. BN eps is 1e-3 (TF reference).

Features: ``"out"`` is the 2048-channel exit-flow output. ``"os4"`` is DeepLabv3+'s low-level
feature as the TF reference takes it (``feature_extractor.py``, decoder end point
``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise`` for Xception-65,
``block3`` for Xception-71): the second separable conv's output (BN, before the ReLU that
starts the third conv) of the block that takes the network from stride 4 to 8; 256 channels,
at stride 4 for every output stride.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import Conv2dNormActivation

from ..layers import DepthwiseConvNormActivation, set_dilation
from ._features import Backbone
from ._stride import stride_plan

BN_EPS = 1e-3
"""TF DeepLab reference's BN epsilon for Xception (``xception_arg_scope``)."""

_norm = partial(nn.BatchNorm2d, eps=BN_EPS)


class BlockSpec(NamedTuple):
    """One Xception block: three separable convs with these output channels."""

    channels: tuple[int, int, int]
    stride: int
    skip: Literal["conv", "sum", "none"]
    """Residual: 1x1 conv + BN projection, identity sum, or none (TF ``skip_connection_type``)."""
    relu_inside: bool = False
    """BN + ReLU after depthwise and pointwise (only the last exit block); else ReLU before."""


def _entry(*specs: tuple[int, int]) -> tuple[BlockSpec, ...]:
    return tuple(BlockSpec((c, c, c), s, "conv") for c, s in specs)


_MIDDLE = BlockSpec((728, 728, 728), 1, "sum")
_EXIT = (
    BlockSpec((728, 1024, 1024), 2, "conv"),
    BlockSpec((1536, 1536, 2048), 1, "none", relu_inside=True),
)
XCEPTION_BLOCKS: dict[int, tuple[BlockSpec, ...]] = {
    # Entry flow 128/256/728, each stride 2; middle flow 8 (41) or 16 (65) x 728; exit flow.
    41: _entry((128, 2), (256, 2), (728, 2)) + (_MIDDLE,) * 8 + _EXIT,
    65: _entry((128, 2), (256, 2), (728, 2)) + (_MIDDLE,) * 16 + _EXIT,
    # Xception-71 (TF reference ``xception_71``): two extra stride-1 entry blocks.
    71: _entry((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)) + (_MIDDLE,) * 16 + _EXIT,
}
"""Blocks after the stem (conv 32 s2, conv 64), per depth (TF reference ``xception_41/65/71``)."""


def _width(channels: int, width_mult: float) -> int:
    return max(1, int(channels * width_mult + 0.5))


def _scaled(spec: BlockSpec, width_mult: float) -> BlockSpec:
    """``spec`` with its channels times ``width_mult`` (rounded; for CPU-sized models)."""
    channels = tuple(_width(c, width_mult) for c in spec.channels)
    return spec._replace(channels=channels)  # type: ignore[arg-type]


class XceptionSeparableConv(nn.Sequential):
    """Depthwise 3x3 conv + BN [+ ReLU], then pointwise 1x1 conv + BN [+ ReLU].

    The atrous rate and the stride live on the depthwise conv (``self[0][0]``).
    """

    def __init__(self, in_channels: int, out_channels: int, *, relu: bool) -> None:
        act = nn.ReLU if relu else None
        super().__init__(
            DepthwiseConvNormActivation(in_channels, 3, norm_layer=_norm, activation_layer=act),
            Conv2dNormActivation(
                in_channels, out_channels, 1, norm_layer=_norm, activation_layer=act
            ),
        )


class XceptionBlock(nn.Module):
    """Three separable convs (the last one strided) and a residual, from a :class:`BlockSpec`."""

    def __init__(self, in_channels: int, spec: BlockSpec) -> None:
        super().__init__()
        self.stride = spec.stride  # nominal; the output stride may turn it into a dilation
        self.relu_first = not spec.relu_inside
        self.skip = spec.skip
        if spec.skip == "sum" and (in_channels != spec.channels[-1] or spec.stride != 1):
            raise ValueError(f"an identity skip needs equal channels and stride 1, got {spec}")
        widths = (in_channels, *spec.channels)
        self.convs = nn.ModuleList(
            XceptionSeparableConv(widths[i], widths[i + 1], relu=spec.relu_inside) for i in range(3)
        )
        self.shortcut = None
        if spec.skip == "conv":
            self.shortcut = Conv2dNormActivation(
                in_channels,
                spec.channels[-1],
                1,
                stride=spec.stride,
                norm_layer=_norm,
                activation_layer=None,
            )
        self.set_stride(spec.stride, 1)

    def set_stride(self, stride: int, dilation: int) -> None:
        """Stride the last depthwise conv (and the projection); all three take ``dilation``."""
        for i, conv in enumerate(self.convs):
            set_dilation(conv[0][0], dilation, stride if i == 2 else 1)
        if self.shortcut is not None:
            set_dilation(self.shortcut[0], 1, stride)

    def forward_with_low_level(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output and its second separable conv's output (DeepLabv3+'s tap)."""
        y = x
        taps = []
        for conv in self.convs:
            y = conv(F.relu(y) if self.relu_first else y)
            taps.append(y)
        if self.skip == "conv":
            y = y + self.shortcut(x)  # type: ignore[misc]
        elif self.skip == "sum":
            y = y + x
        return y, taps[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_low_level(x)[0]


class Xception(Backbone):
    """Aligned Xception-41/65/71 feature extractor returning ``{"os4": ..., "out": ...}``.

    Parameter names: ``stem.<0|1>`` (conv + BN), ``blocks.<i>.convs.<j>.<0 dw|1 pw>.<0 conv|1
    bn>`` and ``blocks.<i>.shortcut.<0 conv|1 bn>``; :mod:`atrous.models.convert.timm` maps
    timm's ``xception41/65/71`` onto them. ``width_mult`` scales every width (stem included).
    """

    def __init__(
        self, depth: int = 65, *, output_stride: int = 16, width_mult: float = 1.0
    ) -> None:
        super().__init__()
        if depth not in XCEPTION_BLOCKS:
            raise ValueError(f"Xception depth must be one of {tuple(XCEPTION_BLOCKS)}, got {depth}")
        self.depth = depth
        specs = [_scaled(spec, width_mult) for spec in XCEPTION_BLOCKS[depth]]
        stem = (_width(32, width_mult), _width(64, width_mult))
        # Entry-flow stem: conv 32 stride 2, conv 64 (Sec. 3.2, Fig. 4), each BN + ReLU.
        self.stem = nn.Sequential(
            Conv2dNormActivation(3, stem[0], 3, stride=2, norm_layer=_norm),
            Conv2dNormActivation(stem[0], stem[1], 3, norm_layer=_norm),
        )
        blocks, in_channels, stride = [], stem[1], 2
        self.low_level_index = -1
        for i, spec in enumerate(specs):
            if stride == 4 and spec.stride == 2:
                self.low_level_index = i  # the block that goes from stride 4 to 8
            blocks.append(XceptionBlock(in_channels, spec))
            in_channels, stride = spec.channels[-1], stride * spec.stride
        self.blocks = nn.Sequential(*blocks)
        self.feature_channels = {
            "os4": specs[self.low_level_index].channels[1],
            "out": in_channels,
        }
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Turn strides past ``output_stride`` into atrous rates; weights are untouched."""
        blocks: list[XceptionBlock] = list(self.blocks)  # type: ignore[arg-type]
        plan = stride_plan([2] + [b.stride for b in blocks], output_stride)
        for block, (stride, dilation) in zip(blocks, plan[1:], strict=True):
            block.set_stride(stride, dilation)
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        i = self.low_level_index
        x = self.blocks[:i](self.stem(x))
        x, low = self.blocks[i].forward_with_low_level(x)
        return {"os4": low, "out": self.blocks[i + 1 :](x)}


def xception41(*, output_stride: int = 16, width_mult: float = 1.0) -> Xception:
    """Aligned Xception-41: 8 middle-flow blocks (TF reference ``xception_41``)."""
    return Xception(41, output_stride=output_stride, width_mult=width_mult)


def xception65(*, output_stride: int = 16, width_mult: float = 1.0) -> Xception:
    """Aligned Xception-65, DeepLabv3+'s backbone (Sec. 3.2): 16 middle-flow blocks."""
    return Xception(65, output_stride=output_stride, width_mult=width_mult)


def xception71(*, output_stride: int = 16, width_mult: float = 1.0) -> Xception:
    """Aligned Xception-71 (TF reference ``xception_71``, DPC's backbone): extra entry blocks."""
    return Xception(71, output_stride=output_stride, width_mult=width_mult)
