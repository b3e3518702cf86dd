"""Colour palettes for class-id masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_colormap(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colormap: bits of the class id interleaved into R, G and B.

    Bit ``i`` of ``(r, g, b)`` holds bits ``3j``, ``3j+1`` and ``3j+2`` of the id, placed from
    the most significant bit down, as in the VOC devkit's ``labelcolormap.m``.
    Returns a ``(num_colors, 3)`` uint8 array; id 255 (ignore) comes out as (224, 224, 192).
    """
    ids = np.arange(num_colors)
    cmap = np.zeros((num_colors, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            cmap[:, channel] |= bit << (7 - shift)
    return cmap.astype(np.uint8)


def save_palette_png(labels: np.ndarray, palette: np.ndarray | None, path: str | Path) -> Path:
    """Write ``HxW`` class ids (0-255) as a palette PNG: its pixel values are the ids, viewers
    show the class colours (``palette``, default VOC's)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"{path}: palette PNGs hold class ids 0-255, got {labels.min()}-{labels.max()}"
        )
    png = Image.fromarray(labels.astype(np.uint8), mode="P")
    png.putpalette(
        np.asarray(voc_colormap() if palette is None else palette, np.uint8).ravel().tolist()
    )
    png.save(path)
    return Path(path)


def colorize(mask: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Map an ``HxW`` class-id array to an ``HxWx3`` uint8 colour image."""
    palette = voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8)
    return palette[np.asarray(mask, dtype=np.int64) % len(palette)]


def overlay(
    image: np.ndarray, mask: np.ndarray, palette: np.ndarray | None = None, alpha: float = 0.5
) -> np.ndarray:
    """Blend an ``HxWx3`` uint8 image with its colourized mask; background (0) stays unblended."""
    colours = colorize(mask, palette).astype(np.float32)
    image = np.asarray(image, dtype=np.float32)
    blend = np.where(
        (np.asarray(mask) > 0)[..., None], (1 - alpha) * image + alpha * colours, image
    )
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


# Anchor colours of a dark-blue -> green -> yellow ramp (after viridis). matplotlib is not a
# dependency, and five anchors interpolated are enough for a weight map.
_HEAT = np.array(
    [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64
)


def heatmap(values: np.ndarray) -> np.ndarray:
    """An ``HxW`` array of weights in [0, 1] -> an ``HxWx3`` uint8 colour image (0 dark blue,
    1 yellow), e.g. the per-scale weights of attention to scale."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(_HEAT) - 1)
    low = np.floor(v).astype(np.int64).clip(0, len(_HEAT) - 2)
    t = (v - low)[..., None]
    return ((1 - t) * _HEAT[low] + t * _HEAT[low + 1]).round().astype(np.uint8)
