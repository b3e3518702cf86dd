"""The backbones by name, and the factory every builder uses to make one."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from torch import nn

from .backbones import VGG16, MobileNetV2, resnet50, resnet101, xception41, xception65, xception71
from .backbones._stride import check_output_stride
from .weights import load_backbone_weights

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mobilenetv2": MobileNetV2,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16": VGG16,
    "xception41": xception41,
    "xception65": xception65,
    "xception71": xception71,
}


def _backbone(
    name: str,
    output_stride: int,
    width_mult: float = 1.0,
    *,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    low_level: str = "block",
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
    if low_level != "block":
        options["low_level"] = low_level
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
