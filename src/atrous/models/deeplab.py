"""The DeepLab network (backbone -> head -> optional decoder -> logits at the input's size),
then its builders in paper order: typed, keyword-only functions returning a :class:`DeepLab`.

The name -> builder table (:data:`~.builders.MODELS`) is in :mod:`.builders`; published weights
for a whole model come from :func:`~atrous.models.from_weights`, never from a builder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from .align import crop_to, pad_to_exact
from .backbones._stride import check_output_stride
from .convert.weights import load_backbone_weights, load_vgg_fc
from .factory import _backbone
from .heads.aspp import ASPP, ASPP_RATES, TORCHVISION_ASPP_DROPOUT, ASPPv2
from .heads.decoders import DeepLabV3PlusDecoder
from .heads.dpc import DensePredictionCell
from .heads.largefov import LargeFOV
from .init import initialise, zero_init_last
from .layers import conv_bn_relu

__all__ = [
    "DeepLab",
    "deeplabv1",
    "deeplabv2",
    "deeplabv3",
    "mobile_deeplabv3",
    "deeplabv3plus",
]


class DeepLab(nn.Module):
    """``[N,3,H,W]`` image -> ``[N,num_classes,H,W]`` logits, bilinearly upsampled to the input.

    ``head`` maps the backbone's ``"out"`` features to features (ASPP) or straight to logits
    (v1 LargeFOV, v2 ASPP); ``decoder`` (v3+) fuses the ``"os4"`` features; ``classifier``
    maps to class logits (``nn.Identity`` when the head already gives them).

    ``forward`` is aligned (:mod:`.align`): it pads the input to the next exact size for the
    model's output stride and ``align_corners`` convention (multiples of the stride for
    ``align_corners=False``, ``k*stride + 1`` for ``True``), so every feature pixel sits at the
    same place in the image at every size, and crops the logits back. ``pad_input=False``
    runs the network on the input as it is (torchvision's behaviour, kept by
    :func:`~atrous.models.from_torchvision` so converted models equal their originals).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        classifier: nn.Module,
        decoder: nn.Module | None = None,
        *,
        num_classes: int,
        align_corners: bool = False,
        pad_input: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.decoder = decoder
        self.classifier = classifier
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.pad_input = pad_input

    @property
    def align_corners(self) -> bool:
        """The resize convention of every upsampling in the model (``False``: torchvision's;
        ``True``: the TF reference's); it decides which input sizes are exact."""
        return self._align_corners

    @align_corners.setter
    def align_corners(self, value: bool) -> None:
        self._align_corners = bool(value)
        if self.decoder is not None and hasattr(self.decoder, "align_corners"):
            self.decoder.align_corners = self._align_corners

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        """The output strides :meth:`set_output_stride` takes (8, 16, 32 for the atrous
        backbones; a searched network's path fixes its own)."""
        return tuple(getattr(self.backbone, "output_strides", (8, 16, 32)))

    def set_output_stride(self, output_stride: int) -> None:
        """Evaluate at another output stride with the same weights (v3 paper, Sec. 4.1):
        backbone strides become atrous rates and ASPP rates scale with them."""
        check_output_stride(output_stride)
        self.backbone.set_output_stride(output_stride)
        if hasattr(self.head, "set_output_stride"):
            self.head.set_output_stride(output_stride)

    def forward(self, x: Tensor) -> Tensor:
        if not self.pad_input:
            return self.forward_with_features(x)[0]
        height, width = x.shape[-2], x.shape[-1]
        return crop_to(self.forward_with_features(self.pad(x))[0], height, width)

    def pad(self, x: Tensor) -> Tensor:
        """``x`` padded (bottom/right, 0 = the mean pixel) to this model's next exact size: for
        its coarsest feature map (``backbone.max_stride``, e.g. Auto-DeepLab's OS32 cells on an
        OS8 network), else its output stride."""
        stride = getattr(self.backbone, "max_stride", self.output_stride)
        return pad_to_exact(x, stride, align_corners=self.align_corners)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits at input size and the backbone's features dict, for heads that tap the
        backbone too (DT-EdgeNet's edge branch, :mod:`.wrappers.domain_transform`).

        This is the network itself, without :meth:`pad`: give it inputs of an exact size (or
        accept the drift described in :mod:`.align`)."""
        logits, _, features = self._parts(x)
        logits = F.interpolate(
            logits, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return logits, features

    def forward_head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits at the classifier's resolution (not upsampled) and the features the
        classifier reads: the "penultimate" features attention to scale looks at. For v1/v2,
        whose heads give logits directly, those are the backbone's output features. Like
        :meth:`forward_with_features`, the network itself (no padding)."""
        logits, penultimate, _ = self._parts(x)
        return logits, penultimate

    @property
    def penultimate_channels(self) -> int:
        """Channels of :meth:`forward_head`'s features."""
        if isinstance(self.classifier, nn.Identity):
            return self.backbone.feature_channels["out"]
        first = next(m for m in self.classifier.modules() if isinstance(m, nn.Conv2d))
        return first.in_channels

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        features = self.backbone(x)
        y = self.head(features["out"])
        if self.decoder is not None:
            y = self.decoder(y, features["os4"])
        logits = self.classifier(y)
        penultimate = features["out"] if isinstance(self.classifier, nn.Identity) else y
        return logits, penultimate, features


def deeplabv1(
    *,
    num_classes: int = 21,
    output_stride: int = 8,
    backbone_weights: str | None = None,
    align_corners: bool = False,
) -> DeepLab:
    """DeepLab-LargeFOV (v1, Chen et al., 2015, Sec. 4): VGG-16 with pool4/pool5 at stride 1
    and conv5 at rate 2 (OS8), then the LargeFOV head (fc6 3x3 at rate 12 with 1024 channels,
    fc7, fc8) giving logits. With ``backbone_weights="imagenet"`` fc6 and fc7 start from VGG-16's
    ImageNet fc6/fc7, subsampled by decimation to 1024 x 3 x 3 and 1024 x 1 x 1 as the paper did."""
    net = _backbone("vgg16", output_stride)
    head = LargeFOV(net.feature_channels["out"], num_classes, output_stride=output_stride)
    if backbone_weights is not None:
        load_vgg_fc(head.fc6, head.fc7, load_backbone_weights(net, "vgg16", backbone_weights))
    return DeepLab(net, head, nn.Identity(), num_classes=num_classes, align_corners=align_corners)


def deeplabv2(
    *,
    backbone: str = "resnet101",
    num_classes: int = 21,
    output_stride: int = 8,
    backbone_weights: str | None = None,
    align_corners: bool = False,
) -> DeepLab:
    """DeepLabv2 (Chen et al., 2016): backbone at OS8 + ASPP-L (rates 6/12/18/24, Sec. 3.3),
    whose branches give class scores that are summed; the head outputs logits.

    ResNet backbones take single-conv branches; a VGG backbone (name starting ``vgg``) takes
    the fc6-fc7-fc8 branches with 1024 hidden channels, as in the paper.
    """
    vgg = backbone.startswith("vgg")
    net = _backbone(backbone, output_stride, weights=None if vgg else backbone_weights)
    head = ASPPv2(
        net.feature_channels["out"],
        num_classes,
        output_stride=output_stride,
        hidden=1024 if vgg else None,
    )
    if vgg and backbone_weights is not None:
        published = load_backbone_weights(net, backbone, backbone_weights)
        for branch in head.branches:  # each branch's fc6/fc7 start from VGG-16's, as LargeFOV's do
            load_vgg_fc(branch[0], branch[3], published)
    return DeepLab(net, head, nn.Identity(), num_classes=num_classes, align_corners=align_corners)


def deeplabv3(
    *,
    backbone: str = "resnet101",
    num_classes: int = 21,
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    width_mult: float = 1.0,
    channels: int = 256,
    atrous_rates: Sequence[int] = ASPP_RATES[16],
    backbone_weights: str | None = None,
    torchvision_head: bool = False,
    head: str = "aspp",
    dpc_cell: str | Sequence[Mapping[str, Any]] | None = None,
    align_corners: bool = False,
    separable: bool = False,
    tf_compat: bool = False,
) -> DeepLab:
    """DeepLabv3 (Chen et al., 2017): backbone + ASPP (plain 3x3 convs) + 1x1 classifier.

    ``multi_grid`` multiplies the rates of block4's units (Sec. 3.2; the paper's best is (1, 2, 4));
    ``extra_blocks`` cascades copies of block4 (Sec. 3.2, "going deeper"); both are ResNet
    options. ``atrous_rates`` are the ASPP rates at OS16 (Sec. 3.3), ``channels`` the ASPP width
    (256 in the paper). No decoder: logits come from OS-``output_stride`` features.

    ``backbone_weights="imagenet"`` downloads ImageNet weights for the backbone (a whole
    published model comes from :func:`~atrous.models.from_weights`, e.g. torchvision's
    COCO-trained ``"deeplabv3_resnet101.torchvision_coco_voc"``). ``torchvision_head`` builds
    torchvision's head (ASPP dropout 0.5 and an extra 3x3 conv-BN-ReLU before the 1x1
    classifier), the network those weights fill at output stride 8.
    ``head="dpc"`` replaces ASPP with a Dense Prediction Cell (``dpc_cell``, as for v3+).
    ``separable`` makes the ASPP's 3x3 branches depthwise-separable (the TF reference's
    ``aspp_with_separable_conv``); ``tf_compat`` as for :func:`deeplabv3plus`.
    """
    net = _backbone(
        backbone,
        output_stride,
        width_mult,
        multi_grid=multi_grid,
        extra_blocks=extra_blocks,
        weights=backbone_weights,
        tf_compat=tf_compat,
    )
    aspp = _head(
        head,
        net.feature_channels["out"],
        channels,
        atrous_rates,
        output_stride=output_stride,
        dropout=TORCHVISION_ASPP_DROPOUT if torchvision_head else 0.1,
        dpc_cell=dpc_cell,
        **({"separable": True} if separable else {}),
    )
    classifier: nn.Module = nn.Conv2d(channels, num_classes, 1)
    if torchvision_head:
        classifier = nn.Sequential(conv_bn_relu(channels, channels, 3), classifier)
    return DeepLab(net, aspp, classifier, num_classes=num_classes, align_corners=align_corners)


def _head(
    kind: str,
    in_channels: int,
    channels: int,
    atrous_rates: Sequence[int],
    *,
    output_stride: int,
    dpc_cell: str | Sequence[Mapping[str, Any]] | None = None,
    **aspp_options: Any,
) -> nn.Module:
    """The multi-scale head on the backbone features: ``"aspp"`` (v3) or ``"dpc"``."""
    if kind == "aspp":
        if dpc_cell is not None:
            raise ValueError("dpc_cell needs head='dpc'")
        return ASPP(
            in_channels, channels, atrous_rates, output_stride=output_stride, **aspp_options
        )
    if kind == "dpc":
        return DensePredictionCell(
            in_channels, dpc_cell, channels=channels, output_stride=output_stride
        )
    raise ValueError(f"unknown head {kind!r}; available: 'aspp', 'dpc'")


def mobile_deeplabv3(
    *,
    num_classes: int = 21,
    output_stride: int = 16,
    width_mult: float = 1.0,
    backbone_weights: str | None = None,
    align_corners: bool = False,
) -> DeepLab:
    """Mobile DeepLabv3 (MobileNetV2 paper, Sec. 6.3): MobileNetV2 features before the final
    1x1 conv ("MNet V2*") at OS16, and a reduced ASPP of only the 1x1 and image-pooling
    branches (no atrous branches, no decoder)."""
    net = _backbone("mobilenetv2", output_stride, width_mult, weights=backbone_weights)
    head = ASPP(net.feature_channels["out"], 256, (), output_stride=output_stride)
    classifier = nn.Conv2d(256, num_classes, 1)
    return DeepLab(net, head, classifier, num_classes=num_classes, align_corners=align_corners)


def deeplabv3plus(
    *,
    backbone: str = "mobilenetv2",
    num_classes: int = 21,
    output_stride: int = 16,
    width_mult: float = 1.0,
    channels: int = 256,
    separable: bool = True,
    atrous_rates: Sequence[int] = ASPP_RATES[16],
    aspp_dropout: float = 0.1,
    backbone_weights: str | None = None,
    low_level: str = "block",
    depthwise_bn: bool = True,
    decoder: str = "deeplabv3plus",
    decoder_residual: bool = False,
    head: str = "aspp",
    dpc_cell: str | Sequence[Mapping[str, Any]] | None = None,
    init: str = "torch",
    zero_init_residual: bool = True,
    align_corners: bool = False,
    multi_grid: Sequence[int] | None = None,
    tf_compat: bool = False,
) -> DeepLab:
    """DeepLabv3+ (Chen et al., 2018): ASPP + a decoder on OS4 features (MobileNetV2's
    ``features[3]``, ResNet's ``layer1``).

    ``low_level`` (MobileNetV2 only) picks the OS4 tap: ``"block"``, the 24-channel output of
    ``features[3]`` (torchvision-based libraries); ``"depthwise"``, the 144-channel expanded
    depthwise output inside it, the TF reference's ``layer_4/depthwise_output`` (use it for
    TF-converted weights). ``depthwise_bn=False`` drops the BN + ReLU the paper puts after each
    depthwise conv of ASPP and decoder (an ablation). ``init`` initialises the convs not loaded
    from published weights (:mod:`.init`: ``"torch"`` default, ``"he"`` fan-out).
    ``zero_init_residual`` (default) starts each residual unit of a backbone built from scratch
    as the identity (its last BN's scale at 0, :func:`.init.zero_init_last`; Goyal et al.,
    2017): MobileNetV2 from scratch trained better with it on all four data sets of
    ``benchmarks/quality.py``; ResNet's bottlenecks get the same (torchvision's option).

    ``decoder`` chooses how the encoder output reaches the OS4 features before the fusion
    convs: ``"deeplabv3plus"`` (bilinear, the paper), or x2 stages of "The Devil is in the
    Decoder" (Wojna et al., 2017): ``"bilinear_additive"``, ``"depth_to_space"``,
    ``"transposed"``; ``decoder_residual`` adds their residual-like connection.

    ``separable`` uses depthwise-separable convs in ASPP and decoder, as the paper does.
    ``width_mult`` scales the backbone's channels and ``channels`` the ASPP/decoder width
    (256 in the paper); smaller values make a CPU-sized model. ``atrous_rates`` are the ASPP
    rates at OS16, scaled with the output stride (the TF reference's ``atrous_rates``); smaller
    ones suit small inputs, where rates past the feature map's size leave only the centre tap.
    ``aspp_dropout`` follows ASPP's projection: 0.1, the TF reference's keep probability 0.9
    (torchvision and segmentation_models_pytorch use 0.5).
    ``align_corners`` (every builder) is the resize convention: ``False`` (torchvision's) makes
    multiples of the output stride exact, ``True`` (the TF reference's) sizes ``k*OS + 1``; the
    forward pads to the next exact size (:mod:`atrous.models.align`).

    ``tf_compat`` (here and in :func:`deeplabv3`) gives the backbone the TF reference's
    numerics (MobileNetV2: BN eps 1e-3 and TF "SAME" padding; Xception and the ResNet-beta
    backbones have them already); with ``align_corners=True`` the model then computes what the
    TF graph computes (:func:`~atrous.models.from_tf_checkpoint`). ``multi_grid`` is the
    ResNet backbones' (see :func:`deeplabv3`). ``backbone_weights="imagenet"`` fills the
    backbone with ImageNet weights; published whole models come from
    :func:`~atrous.models.from_weights`.
    """
    net = _backbone(
        backbone,
        output_stride,
        width_mult,
        multi_grid=multi_grid,
        low_level=low_level,
        weights=backbone_weights,
        tf_compat=tf_compat,
    )
    aspp = _head(
        head,
        net.feature_channels["out"],
        channels,
        atrous_rates,
        output_stride=output_stride,
        separable=separable,
        depthwise_bn=depthwise_bn,
        dpc_cell=dpc_cell,
        dropout=aspp_dropout,
    )
    fusion = DeepLabV3PlusDecoder(
        net.feature_channels["os4"],
        channels,
        channels=channels,
        separable=separable,
        depthwise_bn=depthwise_bn,
        upsampling=decoder,
        residual=decoder_residual,
        factor=output_stride // 4,
    )
    classifier = nn.Conv2d(channels, num_classes, 1)
    initialise([aspp, fusion] + ([] if backbone_weights else [net]), init)
    if zero_init_residual and not backbone_weights:
        zero_init_last(net)
    return DeepLab(
        net, aspp, classifier, fusion, num_classes=num_classes, align_corners=align_corners
    )
