"""Every model builder by name, for recipes, checkpoints and the CLI: :data:`MODELS` and
:func:`build_model`. Kept apart from the builders themselves so that no model module has to
import all the others."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .abc_cnn import abc_cnn
from .auto_deeplab import auto_deeplab
from .deeplab import deeplabv1, deeplabv2, deeplabv3, deeplabv3plus, mobile_deeplabv3
from .hazn import hazn
from .masklab import masklab
from .panoptic import panoptic_deeplab
from .personlab import personlab

MODELS: dict[str, Callable[..., nn.Module]] = {
    "abc_cnn": abc_cnn,
    "auto_deeplab": auto_deeplab,
    "deeplabv1": deeplabv1,
    "deeplabv2": deeplabv2,
    "deeplabv3": deeplabv3,
    "deeplabv3plus": deeplabv3plus,
    "hazn": hazn,
    "masklab": masklab,
    "mobile_deeplabv3": mobile_deeplabv3,
    "panoptic_deeplab": panoptic_deeplab,
    "personlab": personlab,
}
"""Builder names for configs and the CLI."""


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Call the builder ``name`` from :data:`MODELS` with keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
