"""The backbones by name, and the factory every builder uses to make one."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from torch import nn

from .backbones import (
    VGG16,
    MobileNetV2,
    resnet50,
    resnet50_beta,
    resnet101,
    resnet101_beta,
    xception41,
    xception65,
    xception71,
)
from .backbones._stride import check_output_stride
from .convert.weights import load_backbone_weights

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mobilenetv2": MobileNetV2,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet50_beta": resnet50_beta,
    "resnet101_beta": resnet101_beta,
    "vgg16": VGG16,
    "xception41": xception41,
    "xception65": xception65,
    "xception71": xception71,
}

TF_NATIVE = ("xception41", "xception65", "xception71", "resnet50_beta", "resnet101_beta")
"""Backbones whose padding and BN eps already are the TF reference's (``tf_compat`` is a
no-op for them); MobileNetV2 takes ``tf_compat``; the others have no TF counterpart here."""


def _backbone(
    name: str,
    output_stride: int,
    width_mult: float = 1.0,
    *,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    low_level: str = "block",
    weights: str | None = None,
    tf_compat: bool = False,
) -> nn.Module:
    """Build backbone ``name``, passing only the options set away from their defaults, and
    fill it with published ``weights`` ("imagenet", downloaded) if asked. ``tf_compat`` asks
    for the TF reference's numerics (see :data:`TF_NATIVE`)."""
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
    if tf_compat and "tf_compat" in accepted:
        options["tf_compat"] = True
    elif tf_compat and name not in TF_NATIVE:
        raise ValueError(
            f"backbone {name!r} has no TF-compatible mode (tf_compat); the TF reference's "
            f"backbones here: mobilenetv2, {', '.join(TF_NATIVE)}"
        )
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(
            f"backbone {name!r} does not take {', '.join(unknown)}; leave it at its default"
        )
    net = BACKBONES[name](output_stride=output_stride, **options)
    if weights is not None:
        load_backbone_weights(net, name, weights)
    return net
