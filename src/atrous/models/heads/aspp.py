"""Atrous Spatial Pyramid Pooling: DeepLabv3 form (Chen et al., 2017, Sec. 3.3) and DeepLabv2's
summed score branches (Chen et al., 2016, Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..align import exact_size
from ..layers import conv3x3, conv_bn_relu, set_dilation

ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
"""Atrous rates of the three 3x3 branches per output stride (v3 paper, Sec. 3.3)."""

TORCHVISION_ASPP_DROPOUT = 0.5
"""torchvision's ASPP drops 50% after its projection (the TF reference keeps 90%)."""


def rates_for(output_stride: int, rates_at_os16: Sequence[int] = ASPP_RATES[16]) -> tuple[int, ...]:
    """Scale rates given for OS16 to ``output_stride`` (doubled at OS8, halved at OS32)."""
    return tuple(max(1, r * 16 // output_stride) for r in rates_at_os16)


class ImagePooling(nn.Module):
    """Image-level features: global average pool, 1x1 conv + BN + ReLU, upsample back.

    In training with a batch of one image, BN would normalize a single value per channel
    (torch refuses); the branch then uses BN's running statistics for that batch instead.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1)
        conv, bn, act = self.conv
        if self.training and x.shape[0] == 1:
            y = F.batch_norm(
                conv(pooled), bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps
            )
            pooled = act(y)
        else:
            pooled = self.conv(pooled)
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """1x1 conv + three 3x3 atrous convs + image pooling, concatenated and projected.

    Rates are given for OS16 and scaled to the backbone's ``output_stride``.

    ``separable=True`` gives the DeepLabv3+ variant with depthwise-separable 3x3 branches.
    Dropout 0.1 after the projection follows the TF reference (keep probability 0.9).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates_at_os16: Sequence[int] = ASPP_RATES[16],
        *,
        output_stride: int = 16,
        separable: bool = False,
        dropout: float = 0.1,
        depthwise_bn: bool = True,
    ) -> None:
        super().__init__()
        self.rates_at_os16 = tuple(rates_at_os16)
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, out_channels, 1)])
        for _ in rates_at_os16:
            self.branches.append(
                conv3x3(in_channels, out_channels, separable=separable, depthwise_bn=depthwise_bn)
            )
        self.pooling = ImagePooling(in_channels, out_channels)
        self.project = nn.Sequential(
            conv_bn_relu((len(rates_at_os16) + 2) * out_channels, out_channels, 1),
            nn.Dropout(dropout),
        )
        self.out_channels = out_channels
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Set the atrous rates for ``output_stride`` in place (doubled from OS16 to OS8)."""
        self.output_stride = output_stride
        self.rates = rates_for(output_stride, self.rates_at_os16)
        for branch, rate in zip(self.branches[1:], self.rates, strict=True):
            # The branch's 3x3 conv (the depthwise one when separable) carries the rate.
            conv = next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
            set_dilation(conv, rate)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x))
        return self.project(torch.cat(outs, dim=1))


ASPP_V2_RATES = (6, 12, 18, 24)
"""DeepLabv2 "ASPP-L" rates at OS8, the output stride v2 runs at (v2 paper, Sec. 3.3)."""


class ASPPv2(nn.Module):
    """DeepLabv2 ASPP: parallel atrous branches, each giving class scores, fused by summation.

    ResNet-101 version (``hidden=None``): each branch is one 3x3 atrous conv (with bias) to
    ``num_classes``. VGG-16 version (``hidden=1024``): each branch is fc6 (3x3 atrous, ``hidden``)
    -> ReLU -> dropout -> fc7 (1x1, ``hidden``) -> ReLU -> dropout -> fc8 (1x1, classes).
    Rates are given at OS8 (v2's output stride) and scaled to ``output_stride`` (halved at OS16).
    The head outputs logits, so a model built with it takes ``nn.Identity`` as classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates_at_os8: Sequence[int] = ASPP_V2_RATES,
        *,
        output_stride: int = 8,
        hidden: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.rates_at_os8 = tuple(rates_at_os8)
        self.branches = nn.ModuleList()
        for _ in self.rates_at_os8:
            if hidden is None:
                branch: nn.Module = nn.Conv2d(in_channels, num_classes, 3)
            else:
                branch = nn.Sequential(
                    nn.Conv2d(in_channels, hidden, 3),
                    nn.ReLU(inplace=True),
                    nn.Dropout(dropout),
                    nn.Conv2d(hidden, hidden, 1),
                    nn.ReLU(inplace=True),
                    nn.Dropout(dropout),
                    nn.Conv2d(hidden, num_classes, 1),
                )
            score = branch if hidden is None else branch[-1]
            # Released v2 prototxts: score layers start Gaussian, std 0.01, bias 0 (recalled).
            nn.init.normal_(score.weight, std=0.01)
            nn.init.zeros_(score.bias)
            self.branches.append(branch)
        self.out_channels = num_classes
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Set the atrous rates for ``output_stride`` in place (halved from OS8 to OS16)."""
        self.output_stride = output_stride
        self.rates = tuple(max(1, r * 8 // output_stride) for r in self.rates_at_os8)
        for branch, rate in zip(self.branches, self.rates, strict=True):
            conv = next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
            set_dilation(conv, rate)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def rates_past_crop(model: nn.Module, crop_size: int) -> list[str]:
    """What is wrong, one line per ASPP of ``model``, when its atrous rates reach past the
    features of a ``crop_size`` training crop; empty when every rate fits.

    A 3x3 branch whose rate is at least the feature map's side reads only padding off its
    centre, so it trains as a 1x1 conv (the v3 paper's degenerate case, Sec. 3.3); its outer
    taps keep their initial weights and join in when evaluation runs on larger images (on the
    demo scenes, zeroing them moved held-out mIoU by +0.7, benchmarks/results/demo_budget.md).
    """
    align = bool(getattr(model, "align_corners", False))
    found = []
    for module in model.modules():
        if isinstance(module, ASPP | ASPPv2):
            stride = module.output_stride
            side = -(-exact_size(crop_size, stride, align_corners=align) // stride)
            past = [r for r in module.rates if r >= side]
            if past:
                found.append(
                    f"ASPP rates {past} reach past the {side}x{side} features of a {crop_size}-"
                    f"pixel crop at output stride {stride}: those branches train only their "
                    "centre tap, and their untrained outer taps join in on larger images. Set "
                    f"model.atrous_rates below {side} for data.crop_size={crop_size} (the "
                    "paper's 6, 12, 18 suit 513 crops, 33x33 features) or train on larger crops."
                )
    return found
