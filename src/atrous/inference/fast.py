"""Faster CPU/GPU inference: fold BatchNorm into the conv before it, channels-last layout.

:func:`optimize_for_inference` returns an eval-mode copy whose ``Conv2d -> BatchNorm2d`` pairs
are merged into a single conv (the BN becomes ``nn.Identity``), so each pair costs one kernel
instead of two. The folding is exact up to float rounding; the original model is untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from ..models.backbones.resnet import ResNet
from ..models.layers import DepthwiseConv2d

# Modules whose forward applies ``bnK`` directly to the output of ``convK``.
_ATTRIBUTE_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    TorchvisionResNet: (("conv1", "bn1"),),
    ResNet: (("conv1", "bn1"),),
}


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) in (nn.Conv2d, DepthwiseConv2d)
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if not _foldable(conv, bn):
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, bn_name, nn.Identity())
    return True


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``Conv2d`` directly followed by a ``BatchNorm2d`` in place (eval mode only).

    Pairs are consecutive children of an ``nn.Sequential`` (at any nesting) and the
    ``convK``/``bnK`` attributes of ResNet units and stems. Returns the number folded; other
    BatchNorms are left alone."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call .eval() first)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:], strict=False):
                folded += _fold_pair(module, first, second)
        for conv_name, bn_name in _ATTRIBUTE_PAIRS.get(type(module), ()):
            folded += _fold_pair(module, conv_name, bn_name)
    return folded


def optimize_for_inference(
    model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True
) -> nn.Module:
    """An eval-mode deep copy of ``model`` with BatchNorms folded into the convs before them
    (``fold_bn``) and weights in ``torch.channels_last`` layout (``channels_last``).

    The copy computes the same function as ``model.eval()``; ``model`` itself is not modified.
    Feed it channels-last inputs (``x.to(memory_format=torch.channels_last)``) for the full
    benefit."""
    fast = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


def bf16_autocast_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is worth using on ``device`` (CPU: AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported()) or bool(
            getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
    except Exception:
        return False
