"""Published weights, fetched on request through torchvision's and timm's own hubs, converted.

Needs the network (tests replace the fetchers). ``backbone_weights="imagenet"`` fills a
backbone with ImageNet weights; ``weights="torchvision-coco"`` gives torchvision's DeepLabv3
trained on COCO with the 21 VOC classes, converted by :func:`~.convert.from_torchvision`.
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

from .convert import from_torchvision

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

COCO_SOURCES = {"resnet50": "deeplabv3_resnet50", "resnet101": "deeplabv3_resnet101"}


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


def load_backbone_weights(backbone: nn.Module, name: str, source: str = "imagenet") -> None:
    """Fill an atrous ``backbone`` (named as in ``BACKBONES``) with published weights."""
    if source != "imagenet":
        raise ValueError(f"unknown backbone_weights {source!r}; available: 'imagenet'")
    if name not in IMAGENET_SOURCES:
        raise ValueError(f"no ImageNet weights known for backbone {name!r}")
    hub, model_name, tag = IMAGENET_SOURCES[name]
    published = _fetch(hub, model_name, tag)
    if hub == "timm":
        from .convert_timm import convert_timm_state_dict

        state = convert_timm_state_dict(model_name.split(".")[0], published.state_dict())
    else:
        own = backbone.state_dict()
        state = {k: v for k, v in published.state_dict().items() if k in own}
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{name}: published weights miss {result.missing_keys[:5]}")


def torchvision_coco(backbone: str) -> nn.Module:
    """torchvision's COCO-trained DeepLabv3 (VOC's 21 classes), downloaded and converted."""
    if backbone not in COCO_SOURCES:
        raise ValueError(f"torchvision-coco weights exist for {', '.join(COCO_SOURCES)}")
    return from_torchvision(
        _fetch("torchvision", COCO_SOURCES[backbone], "COCO_WITH_VOC_LABELS_V1")
    )


def weights_architecture(weights: str) -> dict[str, Any]:
    """The builder options that give ``weights``'s network without downloading it (for
    rebuilding a checkpoint trained from them)."""
    if weights == "torchvision-coco":
        return {"weights": None, "torchvision_head": True}
    raise ValueError(f"unknown weights {weights!r}; available: 'torchvision-coco'")
