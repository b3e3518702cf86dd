"""The solver's pieces: parameter groups (backbone / head LR, weight decay on weights only),
frozen BatchNorm, mixed-precision settings."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..inference.fast import bf16_autocast_supported

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _in_backbone(name: str) -> bool:
    """``backbone.*``, also inside a wrapper (e.g. DT-EdgeNet's ``model.backbone.*``)."""
    return name.startswith("backbone.") or ".backbone." in name


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Backbone and head parameters at ``lr`` and ``lr * head_lr_mult``; weight decay on
    conv/linear weights only, not BN or biases, as the TF reference's regularizers do."""
    groups = []
    for part, mult in (("backbone", 1.0), ("head", head_lr_mult)):
        params = [
            p
            for name, p in model.named_parameters()
            if p.requires_grad and _in_backbone(name) == (part == "backbone")
        ]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append(
                    {"params": chosen, "lr": lr * mult, "weight_decay": weight_decay * decay}
                )
    return groups


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep every BN layer on its running statistics with fixed scale and shift (the TF
    reference's ``fine_tune_batch_norm=False``): the fallback for small batches."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.requires_grad_(False)


def resolve_amp(amp: str, device: torch.device) -> str:
    """``"auto"``: bf16 autocast where the hardware runs it natively (a CPU with AVX512-BF16 or
    AMX, checked at run time; a CUDA GPU with bf16), fp16 on older CUDA GPUs, fp32 elsewhere.
    Other values are returned as they are."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if bf16_autocast_supported(device) else "none"


def check_amp(amp: str, device: torch.device) -> None:
    if amp != "auto" and amp not in AMP_DTYPES:
        raise ConfigError(f"train.amp = {amp!r}: expected one of auto, {', '.join(AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.amp = 'fp16' needs a CUDA device, but training runs on {device.type}: "
            "use train.amp=bf16 on CPU, or train.amp=none"
        )


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = AMP_DTYPES[amp]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
