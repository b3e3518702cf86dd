"""timm ImageNet weights -> atrous backbones, by renaming state-dict keys.

Each supported timm architecture has a table of ``(timm pattern, atrous replacement)`` regex
rules; every timm key must match one rule (or a dropped classifier prefix) and every atrous key
must be filled, so a silent partial load cannot happen. The numerics are the same: the atrous
modules port timm's activation placement and BN eps (see the backbones' docstrings).

    >>> import timm
    >>> backbone = from_timm(timm.create_model("xception65", pretrained=True), output_stride=16)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import NamedTuple

from torch import Tensor, nn

from ..backbones import MobileNetV2
from ..backbones.xception import Xception

_SEPARABLE = {"conv_dw": "0.0", "bn_dw": "0.1", "conv_pw": "1.0", "bn_pw": "1.1"}
_XCEPTION_RULES: tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...] = (
    (r"^stem\.(\d)\.conv\.", r"stem.\1.0."),
    (r"^stem\.(\d)\.bn\.", r"stem.\1.1."),
    (r"^blocks\.(\d+)\.shortcut\.conv\.", r"blocks.\1.shortcut.0."),
    (r"^blocks\.(\d+)\.shortcut\.bn\.", r"blocks.\1.shortcut.1."),
    # timm counts the separable convs conv1..conv3, atrous convs.0..2.
    (
        r"^blocks\.(\d+)\.stack\.conv(\d)\.(conv_dw|bn_dw|conv_pw|bn_pw)\.",
        lambda m: f"blocks.{m[1]}.convs.{int(m[2]) - 1}.{_SEPARABLE[m[3]]}.",
    ),
)
"""timm ``XceptionAligned`` -> :class:`Xception` (classifier ``head.*`` dropped)."""

# timm mobilenetv2 units: DepthwiseSeparableConv (first) or InvertedResidual (the rest).
# torchvision's layout: first unit conv.0 = dw conv+BN, conv.1/2 = pw conv/BN;
# later units conv.0 = expand conv+BN, conv.1 = dw conv+BN, conv.2/3 = project conv/BN.
_MOBILENETV2_FIRST_UNIT = {
    "conv_dw": "conv.0.0",
    "bn1": "conv.0.1",
    "conv_pw": "conv.1",
    "bn2": "conv.2",
}
_MOBILENETV2_UNIT = {
    "conv_pw": "conv.0.0",
    "bn1": "conv.0.1",
    "conv_dw": "conv.1.0",
    "bn2": "conv.1.1",
    "conv_pwl": "conv.2",
    "bn3": "conv.3",
}
_MOBILENETV2_STEM = {"conv_stem": "features.0.0", "bn1": "features.0.1"}
_MOBILENETV2_DEPTHS = (1, 2, 3, 4, 3, 3, 1)
"""Units per timm stage (``blocks.<stage>.<unit>``), MobileNetV2 paper Table 2."""


def _rename_xception(key: str) -> str | None:
    for pattern, replacement in _XCEPTION_RULES:
        new, found = re.subn(pattern, replacement, key, count=1)
        if found:
            return new
    return None


def _rename_mobilenetv2(key: str) -> str | None:
    prefix, _, param = key.rpartition(".")
    if prefix in _MOBILENETV2_STEM:
        return f"{_MOBILENETV2_STEM[prefix]}.{param}"
    match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)", prefix)
    if match is None:
        return None
    stage, unit, layer = int(match[1]), int(match[2]), match[3]
    index = 1 + sum(_MOBILENETV2_DEPTHS[:stage]) + unit  # features.0 is the stem
    table = _MOBILENETV2_FIRST_UNIT if index == 1 else _MOBILENETV2_UNIT
    return f"features.{index}.{table[layer]}.{param}" if layer in table else None


class _Converter(NamedTuple):
    build: Callable[..., nn.Module]  # (output_stride=...) -> atrous backbone
    rename: Callable[[str], str | None]  # timm key -> atrous key (None: no rule)
    dropped: tuple[str, ...]  # timm key prefixes with no atrous counterpart


_XCEPTION_HEAD = ("head.",)
CONVERTERS: dict[str, _Converter] = {
    "xception41": _Converter(partial(Xception, 41), _rename_xception, _XCEPTION_HEAD),
    "xception65": _Converter(partial(Xception, 65), _rename_xception, _XCEPTION_HEAD),
    "xception71": _Converter(partial(Xception, 71), _rename_xception, _XCEPTION_HEAD),
    # The atrous MobileNetV2 stops before the 1x1 conv to 1280 (conv_head / bn2) and classifier.
    "mobilenetv2_100": _Converter(
        MobileNetV2, _rename_mobilenetv2, ("conv_head.", "bn2.", "classifier.")
    ),
}
"""timm architecture name -> how to build the atrous backbone and rename the keys."""


def timm_architecture(timm_model: nn.Module) -> str:
    """The timm model's architecture name from ``pretrained_cfg``, e.g. ``"xception65"``."""
    cfg = getattr(timm_model, "pretrained_cfg", None) or getattr(timm_model, "default_cfg", None)
    if not cfg or "architecture" not in cfg:
        raise ValueError(
            f"{type(timm_model).__name__} has no pretrained_cfg['architecture']; create it with "
            "timm.create_model(name) or call convert_timm_state_dict(name, state_dict)"
        )
    return str(cfg["architecture"])


def _converter(architecture: str) -> _Converter:
    if architecture not in CONVERTERS:
        raise ValueError(
            f"no atrous converter for timm architecture {architecture!r}; "
            f"supported: {', '.join(CONVERTERS)}"
        )
    return CONVERTERS[architecture]


def convert_timm_state_dict(
    architecture: str, state_dict: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Rename a timm ``architecture``'s state dict to the atrous backbone's keys.

    The classifier (and MobileNetV2's final 1x1 conv) is dropped; any other key without a rule
    is an error, so a changed timm layout fails loudly instead of loading partially.
    """
    converter = _converter(architecture)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(converter.dropped):
            continue
        new = converter.rename(key)
        if new is None:
            raise ValueError(f"timm {architecture}: no atrous name for state-dict key {key!r}")
        out[new] = value
    return out


def from_timm(timm_model: nn.Module, *, output_stride: int = 16) -> nn.Module:
    """The atrous backbone at ``output_stride`` carrying a timm model's weights.

    Supported: ``xception41``, ``xception65``, ``xception71`` (-> :class:`Xception`) and
    ``mobilenetv2_100`` (-> :class:`MobileNetV2`). Loading is strict in both directions.
    """
    architecture = timm_architecture(timm_model)
    backbone = _converter(architecture).build(output_stride=output_stride)
    weights = convert_timm_state_dict(architecture, timm_model.state_dict())
    result = backbone.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"timm {architecture} -> {type(backbone).__name__}: missing keys "
            f"{result.missing_keys[:5]}, unexpected keys {result.unexpected_keys[:5]}"
        )
    return backbone
