"""Test-time augmentation: multi-scale inputs and left-right flips, softmax averaged.

DeepLabv3 (Sec. 4.3) and v3+ evaluate with inputs rescaled by 0.5:0.25:1.75 (VOC, ADE20K) or
0.75:0.25:1.25 (Cityscapes) plus their left-right flips, averaging the softmax probabilities at
the input resolution. Images are resized *after* normalization, as the TF reference does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from .types import Forward

# v3 paper Sec. 4.3 / TF ref `eval_scales`: VOC and ADE20K use 0.5:0.25:1.75.
VOC_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# TF ref Cityscapes evaluation: 0.75:0.25:1.25.
CITYSCAPES_SCALES: tuple[float, ...] = (0.75, 1.0, 1.25)


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """``scales`` as a tuple of positive floats; a clear error otherwise."""
    out = tuple(float(s) for s in scales)
    if not out or any(not s > 0 for s in out):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales!r}")
    return out


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W)`` multiplied by ``scale`` and rounded, at least one pixel each."""
    return tuple(max(1, round(n * scale)) for n in size)  # type: ignore[return-value]


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def multiscale_probs(
    forward: Forward, x: Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> Tensor:
    """Average softmax probabilities ``[N, K, H, W]`` over ``scales`` x (image, flipped image).

    ``x`` is the normalized batch ``[N, 3, H, W]``. For each scale the batch is resized
    (bilinear, ``align_corners=False``; scale 1 is used as is), run through ``forward`` (a
    model, or e.g. a sliding-window closure), turned into probabilities, flipped back when the
    input was flipped and resized back to ``H x W`` before averaging.
    """
    scales = check_scales(scales)
    size = (x.shape[-2], x.shape[-1])
    total: Tensor | None = None
    runs = 0
    for scale in scales:
        xs = _resize(x, scaled_size(size, scale))
        for flipped in (False, True) if flip else (False,):
            inp = xs.flip(-1) if flipped else xs
            probs = forward(inp).softmax(1)
            if flipped:
                probs = probs.flip(-1)
            probs = _resize(probs, size)
            total = probs if total is None else total + probs
            runs += 1
    assert total is not None
    return total / runs


def tta_log_probs(
    forward: Forward, x: Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> Tensor:
    """``log`` of :func:`multiscale_probs`, clamped away from ``-inf``; its argmax is the
    prediction, so it stands in for logits where callers expect scores."""
    probs = multiscale_probs(forward, x, scales, flip)
    return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
