"""The DeepLab model (backbone -> head -> optional decoder -> logits) and its builders."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .align import crop_to, pad_to_exact
from .aspp import ASPP, ASPP_RATES, ASPPv2
from .backbones import VGG16, MobileNetV2, resnet50, resnet101, xception41, xception65, xception71
from .backbones._stride import check_output_stride
from .decoders import DeepLabV3PlusDecoder
from .largefov import LargeFOV
from .weights import load_backbone_weights, torchvision_coco

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mobilenetv2": MobileNetV2,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16": VGG16,
    "xception41": xception41,
    "xception65": xception65,
    "xception71": xception71,
}


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
        """``x`` padded (bottom/right, 0 = the mean pixel) to this model's next exact size."""
        return pad_to_exact(x, self.output_stride, align_corners=self.align_corners)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits at input size and the backbone's features dict, for heads that tap the
        backbone too (DT-EdgeNet's edge branch, ``atrous.refine.domain_transform``).

        This is the network itself, without :meth:`pad`: give it inputs of an exact size (or
        accept the drift described in :mod:`.align`)."""
        features = self.backbone(x)
        y = self.head(features["out"])
        if self.decoder is not None:
            y = self.decoder(y, features["os4"])
        logits = self.classifier(y)
        logits = F.interpolate(
            logits, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return logits, features


def _backbone(
    name: str,
    output_stride: int,
    width_mult: float = 1.0,
    *,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    weights: str | None = None,
) -> nn.Module:
    """Build backbone ``name``, passing only the options set away from their defaults, and
    fill it with published ``weights`` ("imagenet", downloaded) if asked."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
    check_output_stride(output_stride)
    options: dict[str, object] = {}
    if width_mult != 1.0:
        options["width_mult"] = width_mult
    if multi_grid is not None:
        options["multi_grid"] = tuple(multi_grid)
    if extra_blocks:
        options["extra_blocks"] = extra_blocks
    accepted = inspect.signature(BACKBONES[name]).parameters
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(
            f"backbone {name!r} does not take {', '.join(unknown)}; leave it at its default"
        )
    net = BACKBONES[name](output_stride=output_stride, **options)
    if weights is not None:
        load_backbone_weights(net, name, weights)
    return net


def deeplabv3plus(
    *,
    backbone: str = "mobilenetv2",
    num_classes: int = 21,
    output_stride: int = 16,
    width_mult: float = 1.0,
    channels: int = 256,
    separable: bool = True,
    atrous_rates: Sequence[int] = ASPP_RATES[16],
    backbone_weights: str | None = None,
    align_corners: bool = False,
) -> DeepLab:
    """DeepLabv3+ (Chen et al., 2018): ASPP + a decoder on OS4 features (MobileNetV2's
    ``features[3]``, ResNet's ``layer1``).

    ``separable`` uses depthwise-separable convs in ASPP and decoder, as the paper does.
    ``width_mult`` scales the backbone's channels and ``channels`` the ASPP/decoder width
    (256 in the paper); smaller values make a CPU-sized model. ``atrous_rates`` are the ASPP
    rates at OS16, scaled with the output stride (the TF reference's ``atrous_rates``); smaller
    ones suit small inputs, where rates past the feature map's size leave only the centre tap.
    ``align_corners`` (every builder) is the resize convention: ``False`` (torchvision's) makes
    multiples of the output stride exact, ``True`` (the TF reference's) sizes ``k*OS + 1``; the
    forward pads to the next exact size (:mod:`atrous.models.align`).
    """
    net = _backbone(backbone, output_stride, width_mult, weights=backbone_weights)
    aspp = ASPP(
        net.feature_channels["out"],
        channels,
        atrous_rates,
        output_stride=output_stride,
        separable=separable,
    )
    decoder = DeepLabV3PlusDecoder(
        net.feature_channels["os4"], channels, channels=channels, separable=separable
    )
    classifier = nn.Conv2d(channels, num_classes, 1)
    return DeepLab(
        net, aspp, classifier, decoder, num_classes=num_classes, align_corners=align_corners
    )


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
    weights: str | None = None,
    align_corners: bool = False,
) -> DeepLab:
    """DeepLabv3 (Chen et al., 2017): backbone + ASPP (plain 3x3 convs) + 1x1 classifier.

    ``multi_grid`` multiplies the rates of block4's units (Sec. 3.2; the paper's best is
    (1, 2, 4)); ``extra_blocks`` cascades copies of block4 (Sec. 3.2, "going deeper"); both
    are ResNet options. ``atrous_rates`` are the ASPP rates at OS16 (Sec. 3.3), ``channels`` the
    ASPP width (256 in the paper). No decoder: logits come from OS-``output_stride`` features.

    ``backbone_weights="imagenet"`` downloads ImageNet weights for the backbone;
    ``weights="torchvision-coco"`` returns torchvision's COCO-trained DeepLabv3 (21 VOC classes)
    converted by ``from_torchvision`` (its head keeps torchvision's extra 3x3 conv).
    """
    if weights is not None:
        if weights != "torchvision-coco":
            raise ValueError(f"unknown weights {weights!r}; available: 'torchvision-coco'")
        model = torchvision_coco(backbone, num_classes, output_stride)
        model.align_corners = align_corners
        return model  # type: ignore[return-value]
    net = _backbone(
        backbone,
        output_stride,
        width_mult,
        multi_grid=multi_grid,
        extra_blocks=extra_blocks,
        weights=backbone_weights,
    )
    aspp = ASPP(net.feature_channels["out"], channels, atrous_rates, output_stride=output_stride)
    classifier = nn.Conv2d(channels, num_classes, 1)
    return DeepLab(net, aspp, classifier, num_classes=num_classes, align_corners=align_corners)


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
    net = _backbone(backbone, output_stride, weights=backbone_weights)
    head = ASPPv2(
        net.feature_channels["out"],
        num_classes,
        output_stride=output_stride,
        hidden=1024 if backbone.startswith("vgg") else None,
    )
    return DeepLab(net, head, nn.Identity(), num_classes=num_classes, align_corners=align_corners)


def deeplabv1(
    *,
    num_classes: int = 21,
    output_stride: int = 8,
    backbone_weights: str | None = None,
    align_corners: bool = False,
) -> DeepLab:
    """DeepLab-LargeFOV (v1, Chen et al., 2015, Sec. 4): VGG-16 with pool4/pool5 at stride 1
    and conv5 at rate 2 (OS8), then the LargeFOV head (fc6 3x3 at rate 12 with 1024 channels,
    fc7, fc8) giving logits."""
    net = _backbone("vgg16", output_stride, weights=backbone_weights)
    head = LargeFOV(net.feature_channels["out"], num_classes, output_stride=output_stride)
    return DeepLab(net, head, nn.Identity(), num_classes=num_classes, align_corners=align_corners)


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


MODELS: dict[str, Callable[..., DeepLab]] = {
    "deeplabv1": deeplabv1,
    "deeplabv2": deeplabv2,
    "deeplabv3": deeplabv3,
    "deeplabv3plus": deeplabv3plus,
    "mobile_deeplabv3": mobile_deeplabv3,
}
"""Builder names for configs and the CLI."""


def build_model(name: str, **kwargs: object) -> DeepLab:
    """Call the builder ``name`` from :data:`MODELS` with keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
