"""ImageNet backbone weights, fetched on request through torchvision's and timm's own hubs,
converted: what a builder's ``backbone_weights="imagenet"`` loads.

Needs the network (tests replace the fetchers). Whole published models (torchvision's
COCO-trained DeepLabv3, the TF zoo) are entries of :mod:`.registry`.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from .timm import convert_timm_state_dict

IMAGENET_SOURCES = {
    "resnet50": ("torchvision", "resnet50", "IMAGENET1K_V1"),
    "resnet101": ("torchvision", "resnet101", "IMAGENET1K_V1"),
    "mobilenetv2": ("torchvision", "mobilenet_v2", "IMAGENET1K_V1"),
    "vgg16": ("torchvision", "vgg16", "IMAGENET1K_V1"),
    "xception41": ("timm", "xception41.tf_in1k", None),
    "xception65": ("timm", "xception65.tf_in1k", None),
    "xception71": ("timm", "xception71.tf_in1k", None),
}
"""Backbone -> (hub, model name, weights tag) of its ImageNet classification weights."""


def _fetch_torchvision(name: str, weights: str) -> nn.Module:
    builder = getattr(torchvision.models, name, None) or getattr(
        torchvision.models.segmentation, name
    )
    return builder(weights=weights)


def _fetch_timm(name: str) -> nn.Module:
    import timm  # optional: only ImageNet Xception weights need it

    return timm.create_model(name, pretrained=True)


def _fetch(hub: str, name: str, weights: Any) -> nn.Module:
    try:
        return _fetch_torchvision(name, weights) if hub == "torchvision" else _fetch_timm(name)
    except ImportError as err:
        raise ImportError(f"{name} weights come from {hub}: pip install {hub}") from err
    except OSError as err:  # URLError / HTTPError / hub errors without network
        raise OSError(f"could not download {hub} weights {name} {weights or ''}: {err}") from err


def load_backbone_weights(backbone: nn.Module, name: str, source: str = "imagenet") -> nn.Module:
    """Fill an atrous ``backbone`` (named as in ``BACKBONES``) with published weights; returns
    the published model (VGG's fc layers start the v1/v2 heads, :func:`load_vgg_fc`)."""
    if source != "imagenet":
        raise ValueError(f"unknown backbone_weights {source!r}; available: 'imagenet'")
    if name not in IMAGENET_SOURCES:
        raise ValueError(f"no ImageNet weights known for backbone {name!r}")
    hub, model_name, tag = IMAGENET_SOURCES[name]
    published = _fetch(hub, model_name, tag)
    if hub == "timm":
        state = convert_timm_state_dict(model_name.split(".")[0], published.state_dict())
    else:
        own = backbone.state_dict()
        state = {k: v for k, v in published.state_dict().items() if k in own}
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{name}: published weights miss {result.missing_keys[:5]}")
    return published


def decimated_vgg_fc(vgg: nn.Module, channels: int = 1024) -> dict[str, torch.Tensor]:
    """VGG-16's ImageNet fc6 (4096 x 512 x 7 x 7) and fc7 (4096 x 4096) subsampled by decimation
    to ``channels`` x 512 x 3 x 3 and ``channels`` x ``channels`` x 1 x 1, as DeepLab v1 did for
    LargeFOV: every (4096 / channels)-th filter and every third tap of the 7 x 7."""
    fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
    step = fc6.out_features // channels
    w6 = fc6.weight.detach().view(fc6.out_features, -1, 7, 7)[::step, :, ::3, ::3]
    w7 = fc7.weight.detach()[::step, ::step]
    return {
        "fc6.weight": w6.contiguous(),
        "fc6.bias": fc6.bias.detach()[::step].clone(),
        "fc7.weight": w7.reshape(*w7.shape, 1, 1).contiguous(),
        "fc7.bias": fc7.bias.detach()[::step].clone(),
    }


def load_vgg_fc(fc6: nn.Conv2d, fc7: nn.Conv2d, vgg: nn.Module) -> None:
    """Start a head's fc6 / fc7 convs from the published VGG-16's (:func:`decimated_vgg_fc`)."""
    weights = decimated_vgg_fc(vgg, fc6.out_channels)
    for conv, name in ((fc6, "fc6"), (fc7, "fc7")):
        for part in ("weight", "bias"):
            value = weights[f"{name}.{part}"]
            target = getattr(conv, part)
            if target.shape != value.shape:
                raise ValueError(f"{name}.{part}: {tuple(target.shape)} vs {tuple(value.shape)}")
            with torch.no_grad():
                target.copy_(value)
