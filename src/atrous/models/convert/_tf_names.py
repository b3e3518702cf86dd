"""The TF DeepLab reference's variable names for an atrous DeepLab: which checkpoint variable
fills which state-dict key, and how its array is laid out (see :mod:`.tf`).

Names come from the reference code: ``core/xception.py``, ``core/resnet_v1_beta.py``, slim's
``nets/mobilenet/mobilenet_v2.py`` (``MobilenetV2/Conv``, ``MobilenetV2/expanded_conv_<n>/
{expand,depthwise,project}``), ``model.py`` (ASPP, decoder, logits) and
``core/dense_prediction_cell.py``. Optimizer slots (``.../Momentum``,
``.../ExponentialMovingAverage``, ...) and ``global_step`` are not model weights (:data:`SLOTS`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from torch import nn

from ...errors import ConfigError
from ..backbones.xception import XCEPTION_BLOCKS
from ..heads.dpc import _PyramidPooling, _SeparableBranch
from ..layers import SeparableConv2d


class _Variant(NamedTuple):
    family: str  # "xception", "mobilenet", "resnet"
    backbone: str  # atrous backbone name
    scope: str  # the TF network's variable scope
    first_conv: str  # the variable (under scope) whose output width gives width_mult
    base_width: int


VARIANTS: dict[str, _Variant] = {
    "xception_41": _Variant("xception", "xception41", "xception_41", "entry_flow/conv1_1", 32),
    "xception_65": _Variant("xception", "xception65", "xception_65", "entry_flow/conv1_1", 32),
    "xception_71": _Variant("xception", "xception71", "xception_71", "entry_flow/conv1_1", 32),
    "mobilenet_v2": _Variant(
        "mobilenet", "mobilenetv2", "MobilenetV2", "expanded_conv_16/project", 320
    ),
    "resnet_v1_50_beta": _Variant("resnet", "resnet50_beta", "resnet_v1_50", "conv1_1", 64),
    "resnet_v1_101_beta": _Variant("resnet", "resnet101_beta", "resnet_v1_101", "conv1_1", 64),
}
"""The TF reference's ``model_variant`` names (``core/feature_extractor.py``) converted here."""

SLOTS = re.compile(
    r"^global_step$|/(Momentum|ExponentialMovingAverage|Adam|Adam_1|RMSProp|RMSProp_1|Adagrad)$"
)
"""Optimizer and moving-average slots: not model weights."""

_BN = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"))
_BN += (("moving_variance", "running_var"),)


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES = {
    key: variant
    for variant, spec in VARIANTS.items()
    for key in (_compact(variant), _compact(variant.replace("_v1", "")), _compact(spec.backbone))
}


def tf_variant(name: str) -> str:
    """The reference's variant name for ``name`` or an alias (``xception65``, ``mobilenetv2``,
    ``resnet101_beta``, ...)."""
    if _compact(name) not in _ALIASES:
        raise ConfigError(f"unknown TF model variant {name!r}; available: {', '.join(VARIANTS)}")
    return _ALIASES[_compact(name)]


class Entry(NamedTuple):
    tf: str  # checkpoint variable name
    key: str  # atrous state-dict key
    kind: str  # "conv", "depthwise", "vector", "pool_first" (ASPP projection)


def _unit(tf: str, conv: str, bn: str | None = None, *, kind: str = "conv") -> list[Entry]:
    """A conv's weight (and its BN's four tensors, or its bias when ``bn`` is None)."""
    weight = "depthwise_weights" if kind == "depthwise" else "weights"
    out = [Entry(f"{tf}/{weight}", f"{conv}.weight", kind)]
    if bn is None:
        return out + [Entry(f"{tf}/biases", f"{conv}.bias", "vector")]
    return out + [Entry(f"{tf}/BatchNorm/{t}", f"{bn}.{a}", "vector") for t, a in _BN]


def _cna(tf: str, prefix: str, kind: str = "conv") -> list[Entry]:
    """A ``Conv2dNormActivation`` (conv ``.0``, BN ``.1``) at ``prefix``."""
    return _unit(tf, f"{prefix}.0", f"{prefix}.1", kind=kind)


def _xception(net: nn.Module, scope: str) -> list[Entry]:
    """TF ``core/xception.py``: ``entry_flow/conv1_*``, ``<flow>/block<b>/unit_<u>/
    xception_module/separable_conv<j>_{depthwise,pointwise}`` and ``.../shortcut``."""
    out = _cna(f"{scope}/entry_flow/conv1_1", "backbone.stem.0")
    out += _cna(f"{scope}/entry_flow/conv1_2", "backbone.stem.1")
    specs = XCEPTION_BLOCKS[net.depth]
    entry = next(i for i, spec in enumerate(specs) if spec.skip == "sum")
    middle = sum(spec.skip == "sum" for spec in specs)
    for i, spec in enumerate(specs):
        if i < entry:
            where = f"entry_flow/block{i + 1}/unit_1"
        elif i < entry + middle:
            where = f"middle_flow/block1/unit_{i - entry + 1}"
        else:
            where = f"exit_flow/block{i - entry - middle + 1}/unit_1"
        module, block = f"{scope}/{where}/xception_module", f"backbone.blocks.{i}"
        for j in range(3):
            tf = f"{module}/separable_conv{j + 1}"
            out += _cna(f"{tf}_depthwise", f"{block}.convs.{j}.0", "depthwise")
            out += _cna(f"{tf}_pointwise", f"{block}.convs.{j}.1")
        if spec.skip == "conv":
            out += _cna(f"{module}/shortcut", f"{block}.shortcut")
    return out


def _mobilenet(net: nn.Module, scope: str) -> list[Entry]:
    """slim ``mobilenet_v2``: ``Conv``, ``expanded_conv[_<n>]/{expand,depthwise,project}``."""
    out = _cna(f"{scope}/Conv", "backbone.features.0")
    for n, unit in enumerate(list(net.features)[1:]):
        tf = f"{scope}/expanded_conv" + (f"_{n}" if n else "")
        prefix = f"backbone.features.{n + 1}.conv"
        parts = ("expand", "depthwise") if len(unit.conv) == 4 else ("depthwise",)
        for k, part in enumerate(parts):
            out += _cna(
                f"{tf}/{part}", f"{prefix}.{k}", "depthwise" if part == "depthwise" else "conv"
            )
        k = len(parts)
        out += _unit(f"{tf}/project", f"{prefix}.{k}", f"{prefix}.{k + 1}")
    return out


def _resnet(net: nn.Module, scope: str) -> list[Entry]:
    """TF ``core/resnet_v1_beta.py``: ``conv1_{1,2,3}``, ``block<s>/unit_<u>/bottleneck_v1/
    {shortcut,conv1,conv2,conv3}``."""
    out = [e for i in range(3) for e in _cna(f"{scope}/conv1_{i + 1}", f"backbone.stem.{i}")]
    for s in range(4):
        for u, unit in enumerate(getattr(net, f"layer{s + 1}")):
            tf, prefix = (
                f"{scope}/block{s + 1}/unit_{u + 1}/bottleneck_v1",
                f"backbone.layer{s + 1}.{u}",
            )
            if isinstance(unit.downsample, nn.Sequential):
                out += _unit(f"{tf}/shortcut", f"{prefix}.downsample.0", f"{prefix}.downsample.1")
            for c in (1, 2, 3):
                out += _unit(f"{tf}/conv{c}", f"{prefix}.conv{c}", f"{prefix}.bn{c}")
    return out


def _separable_or_plain(tf: str, prefix: str, module: nn.Module) -> list[Entry]:
    """``<tf>_depthwise`` / ``<tf>_pointwise`` for a separable conv, else ``<tf>``."""
    if isinstance(module, SeparableConv2d):
        return _cna(f"{tf}_depthwise", f"{prefix}.0", "depthwise") + _cna(
            f"{tf}_pointwise", f"{prefix}.1"
        )
    return _cna(tf, prefix)


def _head(head: nn.Module) -> list[Entry]:
    """TF ``model.py`` ASPP (``image_pooling``, ``aspp<i>``, ``concat_projection``) or the DPC
    (``core/dense_prediction_cell.py``: ``meta_architecture/branch<i>``, ``concat_projection``)."""
    if hasattr(head, "cell"):  # Dense Prediction Cell
        out: list[Entry] = []
        for i, branch in enumerate(head.branches):
            tf, prefix = f"meta_architecture/branch{i}", f"head.branches.{i}"
            if isinstance(branch, _SeparableBranch):
                out += _unit(
                    f"{tf}_depthwise",
                    f"{prefix}.depthwise",
                    f"{prefix}.depthwise_bn",
                    kind="depthwise",
                )
                out += _cna(f"{tf}_pointwise", f"{prefix}.pointwise")
            else:
                out += _cna(tf, f"{prefix}.conv" if isinstance(branch, _PyramidPooling) else prefix)
        return out + _cna("meta_architecture/concat_projection", "head.project")
    out = _cna("image_pooling", "head.pooling.conv") + _cna("aspp0", "head.branches.0")
    for i, branch in enumerate(list(head.branches)[1:], 1):
        out += _separable_or_plain(f"aspp{i}", f"head.branches.{i}", branch)
    return out + _cna("concat_projection", "head.project.0", "pool_first")


def _decoder(decoder: nn.Module) -> list[Entry]:
    """TF ``model.py`` ``refine_by_decoder`` (one stage): ``decoder/feature_projection0``, then
    ``decoder/decoder_conv{0,1}_{depthwise,pointwise}`` (or ``decoder_conv0/decoder_conv0_{1,2}``
    when not separable)."""
    out = _cna("decoder/feature_projection0", "decoder.reduce")
    for j, conv in enumerate(decoder.fuse):
        tf = f"decoder/decoder_conv{j}"
        if not isinstance(conv, SeparableConv2d):
            tf = f"decoder/decoder_conv0/decoder_conv0_{j + 1}"
        out += _separable_or_plain(tf, f"decoder.fuse.{j}", conv)
    return out


def tf_variable_map(model: nn.Module, variant: str) -> dict[str, str]:
    """Every TF variable name of the reference's graph for ``model`` (a DeepLab built as
    :func:`from_tf_checkpoint` builds it) -> the atrous state-dict key it fills, one to one."""
    return {e.tf: e.key for e in entries(model, tf_variant(variant))}


def entries(model: nn.Module, variant: str) -> list[Entry]:
    spec = VARIANTS[variant]
    backbone = {"xception": _xception, "mobilenet": _mobilenet, "resnet": _resnet}[spec.family]
    out = backbone(model.backbone, spec.scope) + _head(model.head)
    if model.decoder is not None:
        out += _decoder(model.decoder)
    out += _unit("logits/semantic", "classifier")
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    if sorted(e.key for e in out) != sorted(keys) or len({e.tf for e in out}) != len(out):
        raise AssertionError(f"the TF name map of {variant} does not cover the model one to one")
    return out
