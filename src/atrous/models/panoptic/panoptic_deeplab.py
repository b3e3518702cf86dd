"""Panoptic-DeepLab (Cheng et al., CVPR 2020), the single-shot form of DeeperLab (Yang et al.,
2019): one encoder, a semantic branch and an instance branch (instance centre heatmap + offsets
from each pixel to its centre), each with its own ASPP and light decoder fusing the OS8 and OS4
features; ``decoder="deeperlab"`` instead shares DeeperLab's decoder (OS4 features brought to
the encoder's resolution by space-to-depth, two 7x7 depthwise convs, depth-to-space back to OS4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...errors import ConfigError
from ..align import crop_to, pad_to_exact
from ..factory import _backbone
from ..heads.aspp import ASPP
from ..layers import DepthwiseConv2d, conv_bn_relu


def _separable(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """Depthwise ``kernel`` x ``kernel`` + BN + ReLU, then pointwise + BN + ReLU."""
    depthwise = DepthwiseConv2d(
        in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels, bias=False
    )
    return nn.Sequential(
        depthwise,
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        conv_bn_relu(in_channels, out_channels, 1),
    )


class PanopticDecoder(nn.Module):
    """ASPP features (OS16) upsampled and fused with the OS8, then the OS4 features: each step
    projects the low-level features by a 1x1 conv, concatenates and applies a 5x5 separable
    conv (Panoptic-DeepLab, Sec. 3.1)."""

    def __init__(
        self, in_channels: int, os8: int, os4: int, *, projections: tuple[int, int], channels: int
    ) -> None:
        super().__init__()
        self.project8 = conv_bn_relu(os8, projections[0], 1)
        self.fuse8 = _separable(in_channels + projections[0], channels, 5)
        self.project4 = conv_bn_relu(os4, projections[1], 1)
        self.fuse4 = _separable(channels + projections[1], channels, 5)

    def forward(self, x: Tensor, features: dict[str, Tensor]) -> Tensor:
        steps = (("os8", self.project8, self.fuse8), ("os4", self.project4, self.fuse4))
        for key, project, fuse in steps:
            low = project(features[key])
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, low], dim=1))
        return x


class DeeperLabDecoder(nn.Module):
    """DeeperLab's decoder (Yang et al., 2019, Sec. 3.2): the OS4 features are reduced by a 1x1
    conv and moved to the encoder's OS16 by space-to-depth (block 4) instead of upsampling the
    encoder output; concatenated with it, two 7x7 depthwise separable convs, a 1x1 conv to
    16 x ``channels``, and depth-to-space (block 4) gives ``channels`` at OS4."""

    def __init__(self, in_channels: int, os4: int, *, channels: int = 256, low: int = 32) -> None:
        super().__init__()
        self.reduce_low = conv_bn_relu(os4, low, 1)
        self.reduce = conv_bn_relu(in_channels, channels, 1)
        fused = channels + 16 * low
        self.fuse = nn.Sequential(_separable(fused, fused, 7), _separable(fused, fused, 7))
        self.expand = conv_bn_relu(fused, 16 * channels, 1)

    def forward(self, x: Tensor, features: dict[str, Tensor]) -> Tensor:
        low = F.pixel_unshuffle(self.reduce_low(features["os4"]), 4)
        x = self.reduce(F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False))
        return F.pixel_shuffle(self.expand(self.fuse(torch.cat([x, low], dim=1))), 4)


def _head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """5x5 separable conv to ``hidden``, then a 1x1 conv to the outputs."""
    return nn.Sequential(_separable(in_channels, hidden, 5), nn.Conv2d(hidden, out_channels, 1))


class PanopticDeepLab(nn.Module):
    """``forward`` in training gives ``{"semantic": [N,C,H,W], "center": [N,1,H,W], "offset":
    [N,2,H,W]}`` at the input size; in eval mode the semantic logits alone (so predictors,
    evaluation and mIoU work as for any DeepLab). :meth:`forward_panoptic` gives all three;
    :func:`atrous.tasks.panoptic_decode.predict_panoptic` turns them into panoptic ids. Inputs are
    padded to the output stride, as DeepLab's are."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        thing_classes: Iterable[int],
        *,
        decoder: str = "panoptic_deeplab",
        label_divisor: int = 1000,
        atrous_rates: Sequence[int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes
        self.thing_classes = tuple(sorted(int(c) for c in thing_classes))
        bad = [c for c in self.thing_classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"thing_classes {bad} outside [0, {num_classes})")
        self.label_divisor, self.decoder_kind = label_divisor, decoder
        self.align_corners, self.pad_input = False, True
        ch = backbone.feature_channels
        os = backbone.output_stride
        rates = tuple(atrous_rates)
        self.semantic_aspp = ASPP(ch["out"], 256, rates, output_stride=os)
        if decoder == "panoptic_deeplab":
            self.semantic_decoder: nn.Module = PanopticDecoder(
                256, ch["os8"], ch["os4"], projections=(64, 32), channels=256
            )
            self.instance_aspp: nn.Module | None = ASPP(ch["out"], 256, rates, output_stride=os)
            self.instance_decoder: nn.Module | None = PanopticDecoder(
                256, ch["os8"], ch["os4"], projections=(32, 16), channels=128
            )
            instance_channels = 128
        elif decoder == "deeperlab":
            self.semantic_decoder = DeeperLabDecoder(256, ch["os4"])
            self.instance_aspp = self.instance_decoder = None  # one shared decoder
            instance_channels = 256
        else:
            raise ValueError(f"decoder must be 'panoptic_deeplab' or 'deeperlab', got {decoder!r}")
        self.semantic_head = _head(256, 256, num_classes)
        self.center_head = _head(instance_channels, 32, 1)
        self.offset_head = _head(instance_channels, 32, 2)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        return (8, 16, 32)

    def set_output_stride(self, output_stride: int) -> None:
        self.backbone.set_output_stride(output_stride)
        for aspp in (self.semantic_aspp, self.instance_aspp):
            if aspp is not None:
                aspp.set_output_stride(output_stride)

    def pad(self, x: Tensor) -> Tensor:
        return pad_to_exact(x, self.output_stride)

    def forward_panoptic(self, x: Tensor) -> dict[str, Tensor]:
        """The three outputs at the input size (see the class docstring)."""
        height, width = x.shape[-2], x.shape[-1]
        xp = self.pad(x) if self.pad_input else x
        features = self.backbone(xp)
        semantic = self.semantic_decoder(self.semantic_aspp(features["out"]), features)
        if self.instance_decoder is not None:
            assert self.instance_aspp is not None
            instance = self.instance_decoder(self.instance_aspp(features["out"]), features)
        else:
            instance = semantic
        outputs = {
            "semantic": self.semantic_head(semantic),
            "center": self.center_head(instance),
            "offset": self.offset_head(instance),
        }
        size = xp.shape[-2:]
        # offsets are in pixels: scaled with the upsampling from OS4 to the input
        scale = size[0] / outputs["offset"].shape[-2]
        outputs = {
            k: F.interpolate(v, size=size, mode="bilinear", align_corners=False)
            for k, v in outputs.items()
        }
        outputs["offset"] = outputs["offset"] * scale
        return crop_to(outputs, height, width)

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        outputs = self.forward_panoptic(x)
        return outputs if self.training else outputs["semantic"]


def panoptic_deeplab(
    *,
    backbone: str = "resnet50",
    num_classes: int = 19,
    thing_classes: Iterable[int] = (11, 12, 13, 14, 15, 16, 17, 18),
    output_stride: int = 16,
    width_mult: float = 1.0,
    decoder: str = "panoptic_deeplab",
    atrous_rates: Sequence[int] = (6, 12, 18),
    backbone_weights: str | None = None,
) -> PanopticDeepLab:
    """Panoptic-DeepLab on a ResNet or MobileNetV2 backbone (``thing_classes``: the instance
    classes, by default Cityscapes' 8 of its 19 train ids; ``atrous_rates``: both ASPPs' rates
    at OS16, smaller for small crops); see :class:`PanopticDeepLab`."""
    if backbone not in ("resnet50", "resnet101", "mobilenetv2"):
        raise ConfigError(
            f"panoptic_deeplab takes resnet50, resnet101 or mobilenetv2, not {backbone!r}"
        )
    net = _backbone(backbone, output_stride, width_mult, weights=backbone_weights)
    return PanopticDeepLab(
        net, num_classes, thing_classes, decoder=decoder, atrous_rates=atrous_rates
    )
