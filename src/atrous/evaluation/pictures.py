"""Pictures people look at instead of tables: rows of image | ground truth | predictions."""

from __future__ import annotations

import numpy as np

from ..data.palette import colorize


def comparison_grid(
    rows: list[tuple[np.ndarray, ...]],
    palette: np.ndarray | None = None,
    gap: int = 4,
) -> np.ndarray:
    """One picture of ``(image, mask, mask, ...)`` rows (e.g. image, ground truth, prediction),
    masks drawn in class colours.

    Images may differ in size; each row is as tall as its image, padded white on the right.
    """
    panels = [[image, *(colorize(mask, palette) for mask in masks)] for image, *masks in rows]
    width = max(sum(p.shape[1] for p in row) + (len(row) - 1) * gap for row in panels)
    lines = []
    for row in panels:
        height = row[0].shape[0]
        line = np.full((height + gap, width, 3), 255, dtype=np.uint8)
        x = 0
        for panel in row:
            line[:height, x : x + panel.shape[1]] = panel
            x += panel.shape[1] + gap
        lines.append(line)
    return np.concatenate(lines, axis=0)
