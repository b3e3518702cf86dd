"""The DeepLab builders: typed, keyword-only functions returning a :class:`DeepLab`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from .aspp import ASPP, ASPP_RATES, TORCHVISION_ASPP_DROPOUT, ASPPv2
from .auto_deeplab import auto_deeplab
from .decoders import DeepLabV3PlusDecoder
from .dpc import DensePredictionCell
from .factory import BACKBONES, _backbone
from .init import initialise, zero_init_last
from .largefov import LargeFOV
from .layers import conv_bn_relu
from .network import DeepLab
from .panoptic_deeplab import panoptic_deeplab
from .weights import load_backbone_weights, load_vgg_fc, torchvision_coco

__all__ = ["BACKBONES", "MODELS", "build_model"]


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
    weights: str | None = None,
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
    ResNet backbones' (see :func:`deeplabv3`). ``weights=NAME`` builds a registry entry with its
    weights (:func:`~.registry.list_weights`).
    """
    if weights is not None:
        return _registered(weights, deeplabv3plus, locals())
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


def deeplabv3(
    *,
    backbone: str = "resnet101",
    num_classes: int = 21,
    output_stride: int | None = None,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    width_mult: float = 1.0,
    channels: int = 256,
    atrous_rates: Sequence[int] = ASPP_RATES[16],
    backbone_weights: str | None = None,
    weights: str | None = None,
    torchvision_head: bool = False,
    head: str = "aspp",
    dpc_cell: str | Sequence[Mapping[str, Any]] | None = None,
    align_corners: bool = False,
    separable: bool = False,
    tf_compat: bool = False,
) -> DeepLab:
    """DeepLabv3 (Chen et al., 2017): backbone + ASPP (plain 3x3 convs) + 1x1 classifier.

    ``output_stride`` is 16 by default (8 with ``weights="torchvision-coco"``). ``multi_grid``
    multiplies the rates of block4's units (Sec. 3.2; the paper's best is (1, 2, 4));
    ``extra_blocks`` cascades copies of block4 (Sec. 3.2, "going deeper"); both are ResNet
    options. ``atrous_rates`` are the ASPP rates at OS16 (Sec. 3.3), ``channels`` the ASPP width
    (256 in the paper). No decoder: logits come from OS-``output_stride`` features.

    ``backbone_weights="imagenet"`` downloads ImageNet weights for the backbone;
    ``weights=NAME`` builds a registry entry (:func:`~.registry.list_weights`) with its weights;
    ``weights="torchvision-coco"`` downloads torchvision's COCO-trained DeepLabv3 (21 VOC
    classes) and builds its network: output stride 8 (where torchvision measures its 66.4 /
    67.4 mIoU) unless ``output_stride`` is given, and ``torchvision_head`` (torchvision's head:
    ASPP dropout 0.5 and an extra 3x3 conv-BN-ReLU before the 1x1 classifier).
    ``head="dpc"`` replaces ASPP with a Dense Prediction Cell (``dpc_cell``, as for v3+).
    ``separable`` makes the ASPP's 3x3 branches depthwise-separable (the TF reference's
    ``aspp_with_separable_conv``); ``tf_compat`` as for :func:`deeplabv3plus`.
    """
    if weights is not None and weights != "torchvision-coco":
        return _registered(weights, deeplabv3, locals())
    if weights is not None:
        _check_torchvision_coco(
            weights,
            num_classes=num_classes,
            multi_grid=multi_grid,
            extra_blocks=extra_blocks,
            width_mult=width_mult,
            channels=channels,
            atrous_rates=atrous_rates,
            backbone_weights=backbone_weights,
        )
        torchvision_head = True
    output_stride = (8 if weights is not None else 16) if output_stride is None else output_stride
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
    model = DeepLab(net, aspp, classifier, num_classes=num_classes, align_corners=align_corners)
    if weights is not None:
        model.load_state_dict(torchvision_coco(backbone).state_dict())
    return model


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


def _registered(name: str, builder: Callable[..., DeepLab], passed: Mapping[str, Any]) -> DeepLab:
    """``weights=NAME``: the registry entry's model with its weights (downloaded once). Options
    set away from the builder's defaults must agree with the entry's architecture."""
    from .registry import WEIGHTS, from_weights

    if name not in WEIGHTS:
        available = ", ".join(["'torchvision-coco'", *map(repr, sorted(WEIGHTS))])
        raise ValueError(f"unknown weights {name!r}; available: {available}")
    entry = WEIGHTS[name]
    if entry.spec.name != builder.__name__:
        raise ValueError(f"weights {name!r} fill a {entry.spec.name} model, not {builder.__name__}")

    def same(a: Any, b: Any) -> bool:
        return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)

    defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()}
    changed = [
        key
        for key, value in passed.items()
        if key != "weights"
        and not same(value, defaults[key])
        and not same(value, entry.spec.kwargs.get(key, defaults[key]))
    ]
    if changed:
        raise ValueError(
            f"weights {name!r} fix the architecture; {', '.join(changed)} differ from it "
            f"({entry.spec.kwargs})"
        )
    return from_weights(name).train()


def _check_torchvision_coco(weights: str, **options: object) -> None:
    """``weights="torchvision-coco"`` fixes the network: options set away from their defaults
    would be silently overwritten, so they are errors."""
    if weights != "torchvision-coco":
        raise ValueError(f"unknown weights {weights!r}; available: 'torchvision-coco'")
    if options["num_classes"] != 21:
        raise ValueError("torchvision-coco weights predict the 21 VOC classes: num_classes=21")
    defaults = {
        "multi_grid": None,
        "extra_blocks": 0,
        "width_mult": 1.0,
        "channels": 256,
        "atrous_rates": ASPP_RATES[16],
        "backbone_weights": None,
    }
    changed = [
        key
        for key, default in defaults.items()
        if (tuple(options[key]) if isinstance(options[key], list) else options[key]) != default
    ]
    if changed:
        raise ValueError(
            f"weights='torchvision-coco' is torchvision's network; {', '.join(changed)} cannot "
            "be changed with it (leave them at their defaults)"
        )


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


MODELS: dict[str, Callable[..., nn.Module]] = {
    "auto_deeplab": auto_deeplab,
    "deeplabv1": deeplabv1,
    "deeplabv2": deeplabv2,
    "deeplabv3": deeplabv3,
    "deeplabv3plus": deeplabv3plus,
    "mobile_deeplabv3": mobile_deeplabv3,
    "panoptic_deeplab": panoptic_deeplab,
}
"""Builder names for configs and the CLI."""


def build_model(name: str, **kwargs: object) -> DeepLab:
    """Call the builder ``name`` from :data:`MODELS` with keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
