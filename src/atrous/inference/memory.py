"""Will a whole-image forward fit in memory? A rough, documented estimate, checked before a run.

A DeepLab forward at output stride 16 peaks, measured on the CPU at 769x769 with 21 classes,
at about 590 (DeepLabv3, ResNet-101), 660 (v3+, MobileNetV2) and 780 (v3+, ResNet-101) bytes
per input pixel: the stride-2 and stride-4 feature maps and the full-size scores dominate. The
estimate is :data:`BYTES_PER_PIXEL` plus 16 bytes per class per pixel (scores, softmax, their
sum under scales/flip), times the square of the largest scale. The budget is 3/4 of the
physical memory on the CPU (``os.sysconf``) and 9/10 of the free memory on a CUDA device
(``torch.cuda.mem_get_info``). An image over budget runs in :data:`AUTO_CROP` windows
(:mod:`.sliding`, DeepLab's 513 evaluation crop); the window pass still holds the whole image's
scores, and an image too large even for that is refused with a clear error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

BYTES_PER_PIXEL = 768
"""Feature maps of a whole-image forward, per input pixel (measured 590-780 at OS 16)."""
BYTES_PER_CLASS_PIXEL = 16
"""Scores of one class at one pixel, counted four times over (logits, softmax, sums)."""
AUTO_CROP = 513
"""The window an over-budget image runs in (DeepLab's evaluation crop for VOC)."""


def memory_budget(device: torch.device) -> int:
    """Bytes a forward may use on ``device``: 9/10 of the free CUDA memory, or 3/4 of the
    machine's physical memory on the CPU (and any other device)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): do not guess
        return 1 << 62
    return int(total * 0.75)


def forward_bytes(pixels: int, num_classes: int, scales: Sequence[float] = (1.0,)) -> int:
    """The estimated peak of a whole-image forward over ``pixels`` (all images of a batch)."""
    scale = max(scales)
    per_pixel = BYTES_PER_PIXEL * scale * scale + BYTES_PER_CLASS_PIXEL * num_classes
    return int(pixels * per_pixel)


def window_bytes(
    pixels: int, num_classes: int, crop: tuple[int, int], batch: int = 1, *, scale: float = 1.0
) -> int:
    """The estimated peak of a sliding-window pass: the whole image's score sums and input,
    plus one window's forward."""
    whole = pixels * scale * scale * (8 * num_classes + 3 * 4 + 4) + pixels * 8 * num_classes
    window = forward_bytes(batch * crop[0] * crop[1], num_classes)
    return int(whole + window)


def human(size: float) -> str:
    """``1.5 GB`` style."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TB"
