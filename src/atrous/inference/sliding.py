"""Sliding-window inference for images larger than the training crop.

Windows of ``crop`` pixels step by ``stride`` (default two thirds of the crop); the last window
on each axis is aligned to the image's bottom/right edge so every pixel is covered. An image
smaller than the crop is padded bottom/right with 0, which after normalization is the mean pixel
(as the TF reference pads evaluation images to the crop, e.g. 513 for VOC). Overlapping outputs
are averaged with a count map, then cropped back to the image size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .types import Forward


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """An int or an ``(h, w)`` pair of positive ints -> ``(h, w)``."""
    hw = (value, value) if isinstance(value, int) else tuple(value)
    if len(hw) != 2 or any(not isinstance(v, int) or v < 1 for v in hw):
        raise ValueError(f"{name} must be a positive int or an (h, w) pair, got {value!r}")
    return hw  # type: ignore[return-value]


def default_stride(crop: tuple[int, int]) -> tuple[int, int]:
    """Two thirds of the crop on each axis (at least one pixel)."""
    return (max(1, round(crop[0] * 2 / 3)), max(1, round(crop[1] * 2 / 3)))


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window offsets along one axis of ``length >= crop``: every ``stride``, plus one window
    flush with the end when the steps do not land there."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, stride))
    if starts[-1] + crop < length:
        starts.append(length - crop)
    return starts


def sliding_window(
    forward: Forward,
    x: Tensor,
    crop: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    *,
    softmax: bool = False,
) -> Tensor:
    """Run ``forward`` on ``crop``-sized windows of ``x`` ``[N, C, H, W]`` and stitch the outputs.

    ``forward`` maps ``[N, C, h, w]`` to ``[N, K, h, w]`` (logits at window size). Overlaps are
    averaged: logits by default, softmax probabilities with ``softmax=True``. When the (padded)
    image fits in one crop this is a single whole-image run. Returns ``[N, K, H, W]``.
    """
    ch, cw = pair(crop, "crop")
    sh, sw = default_stride((ch, cw)) if stride is None else pair(stride, "stride")
    if sh > ch or sw > cw:
        raise ValueError(
            f"stride {(sh, sw)} is larger than crop {(ch, cw)}: windows would leave gaps"
        )
    height, width = x.shape[-2:]
    pad_h, pad_w = max(0, ch - height), max(0, cw - width)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)  # 0 = mean pixel after normalization
    ph, pw = x.shape[-2:]
    total: Tensor | None = None
    count = torch.zeros((1, 1, ph, pw), dtype=x.dtype, device=x.device)
    for top in window_starts(ph, ch, sh):
        for left in window_starts(pw, cw, sw):
            out = forward(x[..., top : top + ch, left : left + cw])
            if softmax:
                out = out.softmax(1)
            if total is None:
                total = out.new_zeros((x.shape[0], out.shape[1], ph, pw))
            total[..., top : top + ch, left : left + cw] += out
            count[..., top : top + ch, left : left + cw] += 1
    assert total is not None
    return (total / count)[..., :height, :width]
