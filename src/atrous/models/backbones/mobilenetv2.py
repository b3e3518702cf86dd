"""MobileNetV2 (Sandler et al., 2018) with atrous output stride, torchvision-compatible names.

Parameter names follow ``torchvision.models.mobilenet_v2`` (``features.<i>.conv...``) so its
ImageNet state dict loads directly, minus the final 1x1 conv to 1280 channels (``features.18``):
DeepLab takes the 320-channel features before it (TF reference ``layer_18``; the paper's
"MNet V2*").
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from ..layers import DepthwiseConvNormActivation, same_padded, set_dilation
from ._features import Backbone
from ._stride import stride_plan

TF_BN_EPS = 1e-3
"""slim's ``batch_norm`` epsilon, which the TF reference's MobileNetV2 keeps (torch: 1e-5)."""

# (expansion t, output channels c, repeats n, first stride s): MobileNetV2 paper, Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LOW_LEVEL_INDEX = 3
"""``features[3]`` ends the stride-4 stage: DeepLabv3+'s low-level (OS4) features, 24 channels."""
MID_LEVEL_INDEX = 6
"""``features[6]`` ends the stride-8 stage: the OS8 features (32 channels)."""
LOW_LEVEL_TAPS = ("block", "depthwise")
"""Where the OS4 features come from: ``"block"``, ``features[3]``'s output (24 channels, as
torchvision-based libraries tap it); ``"depthwise"``, the expanded depthwise output inside it
after BN + ReLU6 (144 channels), the TF reference's ``layer_4/depthwise_output``."""


def _make_divisible(value: float, divisor: int = 8) -> int:
    # The MobileNet channel rounding rule; torchvision keeps its copy private.
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 (strided or atrous) -> linear project (1x1), + skip."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.stride = stride  # nominal; the output stride may turn it into a dilation
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(in_channels, hidden, 1, activation_layer=nn.ReLU6))
        layers += [
            DepthwiseConvNormActivation(hidden, 3, stride=stride, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    @property
    def depthwise(self) -> nn.Conv2d:
        """The 3x3 depthwise conv: where this unit's stride or atrous rate lives."""
        return self.conv[-3][0]  # type: ignore[index, return-value]

    def zero_init_last(self) -> None:
        """Start a unit with a skip connection as the identity: its last BN's scale at 0."""
        if self.use_res_connect:
            nn.init.zeros_(self.conv[-1].weight)  # type: ignore[index, arg-type]

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(Backbone):
    """MobileNetV2 feature extractor returning ``{"os4": ..., "out": ...}``; ``low_level`` picks
    the OS4 tap (:data:`LOW_LEVEL_TAPS`).

    ``tf_compat=True`` computes what the TF reference's (slim) MobileNetV2 computes: BN eps
    1e-3 and TF's "SAME" padding on the 3x3 convs (:class:`~atrous.models.layers.Conv2dSame`:
    a strided conv on an even size pads one pixel more at the bottom/right). The parameters and
    their names are the same.
    """

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        output_stride: int = 16,
        low_level: str = "block",
        tf_compat: bool = False,
    ) -> None:
        super().__init__()
        if low_level not in LOW_LEVEL_TAPS:
            raise ValueError(f"low_level must be one of {LOW_LEVEL_TAPS}, got {low_level!r}")
        self.low_level = low_level
        self.tf_compat = tf_compat
        in_channels = _make_divisible(32 * width_mult)
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, in_channels, 3, stride=2, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        if tf_compat:
            self._to_tf()
        tap = layers[LOW_LEVEL_INDEX].conv  # type: ignore[union-attr]
        self.feature_channels = {
            "os4": tap[-1].num_features if low_level == "block" else tap[1][0].out_channels,
            "os8": layers[MID_LEVEL_INDEX].conv[-1].num_features,  # type: ignore[union-attr]
            "out": in_channels,
        }
        self.set_output_stride(output_stride)

    def _to_tf(self) -> None:
        for block in list(self.modules()):
            if isinstance(block, Conv2dNormActivation) and block[0].kernel_size[0] > 1:
                block[0] = same_padded(block[0])
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = TF_BN_EPS

    def set_output_stride(self, output_stride: int) -> None:
        """Turn strides past ``output_stride`` into atrous rates; weights are untouched."""
        units = list(self.features)[1:]
        plan = stride_plan([2] + [u.stride for u in units], output_stride)
        for unit, (stride, dilation) in zip(units, plan[1:], strict=True):
            set_dilation(unit.depthwise, dilation, stride)
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.low_level == "block":
            low = y = self.features[: LOW_LEVEL_INDEX + 1](x)
        else:
            x = self.features[:LOW_LEVEL_INDEX](x)
            unit = self.features[LOW_LEVEL_INDEX]
            expand, depthwise, project, bn = unit.conv
            low = depthwise(expand(x))
            y = bn(project(low))
            y = x + y if unit.use_res_connect else y
        mid = self.features[LOW_LEVEL_INDEX + 1 : MID_LEVEL_INDEX + 1](y)
        return {"os4": low, "os8": mid, "out": self.features[MID_LEVEL_INDEX + 1 :](mid)}
