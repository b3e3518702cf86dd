"""One frozen record of the facts about a dataset: class names, colours, ignore label."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .palette import voc_colormap

IGNORE_INDEX = 255
"""Label of pixels that count for neither loss nor metric (DeepLab: VOC object borders, padding)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Names and colours of a dataset's classes; ``palette`` defaults to the VOC colormap;
    ``splits`` names the splits the dataset ships (empty: whatever split files exist)."""

    classes: tuple[str, ...]
    palette: np.ndarray = field(default_factory=voc_colormap, compare=False, repr=False)
    ignore_index: int = IGNORE_INDEX
    splits: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)
