"""Cityscapes in its official layout, label ids mapped to the 19 train ids.

Layout (``root`` holds ``leftImg8bit/`` and ``gtFine/``, plus ``gtCoarse/`` for the coarse set)::

    root/
      leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
      gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png      train, val, test
      gtCoarse/{split}/{city}/{city}_{seq}_{frame}_gtCoarse_labelIds.png  train, val, train_extra

The ``*_labelIds.png`` files hold one 8-bit label id (0-33) per pixel; :data:`CITYSCAPES_LABELS`
maps them to train ids, everything outside the 19 evaluated classes to 255 (ignore).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..errors import DataError
from ._pairs import PairedDataset, pair_files
from .info import IGNORE_INDEX, DatasetInfo

__all__ = [
    "CITYSCAPES_INFO",
    "CITYSCAPES_LABELS",
    "CityscapesLabel",
    "CityscapesSegmentation",
    "cityscapes_label_map",
]


class CityscapesLabel(NamedTuple):
    """One row of the official label table: label id, name, train id (255 = ignore), colour."""

    id: int
    name: str
    train_id: int
    color: tuple[int, int, int]


_L = CityscapesLabel
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    # Port of the label table in cityscapesScripts ``helpers/labels.py`` (id, name, trainId,
    # color); trainId -1 there (license plate) is written 255 here.
    _L(0, "unlabeled", 255, (0, 0, 0)),
    _L(1, "ego vehicle", 255, (0, 0, 0)),
    _L(2, "rectification border", 255, (0, 0, 0)),
    _L(3, "out of roi", 255, (0, 0, 0)),
    _L(4, "static", 255, (0, 0, 0)),
    _L(5, "dynamic", 255, (111, 74, 0)),
    _L(6, "ground", 255, (81, 0, 81)),
    _L(7, "road", 0, (128, 64, 128)),
    _L(8, "sidewalk", 1, (244, 35, 232)),
    _L(9, "parking", 255, (250, 170, 160)),
    _L(10, "rail track", 255, (230, 150, 140)),
    _L(11, "building", 2, (70, 70, 70)),
    _L(12, "wall", 3, (102, 102, 156)),
    _L(13, "fence", 4, (190, 153, 153)),
    _L(14, "guard rail", 255, (180, 165, 180)),
    _L(15, "bridge", 255, (150, 100, 100)),
    _L(16, "tunnel", 255, (150, 120, 90)),
    _L(17, "pole", 5, (153, 153, 153)),
    _L(18, "polegroup", 255, (153, 153, 153)),
    _L(19, "traffic light", 6, (250, 170, 30)),
    _L(20, "traffic sign", 7, (220, 220, 0)),
    _L(21, "vegetation", 8, (107, 142, 35)),
    _L(22, "terrain", 9, (152, 251, 152)),
    _L(23, "sky", 10, (70, 130, 180)),
    _L(24, "person", 11, (220, 20, 60)),
    _L(25, "rider", 12, (255, 0, 0)),
    _L(26, "car", 13, (0, 0, 142)),
    _L(27, "truck", 14, (0, 0, 70)),
    _L(28, "bus", 15, (0, 60, 100)),
    _L(29, "caravan", 255, (0, 0, 90)),
    _L(30, "trailer", 255, (0, 0, 110)),
    _L(31, "train", 16, (0, 80, 100)),
    _L(32, "motorcycle", 17, (0, 0, 230)),
    _L(33, "bicycle", 18, (119, 11, 32)),
    _L(-1, "license plate", 255, (0, 0, 142)),
)
"""The official Cityscapes labels, one row per label id."""
del _L


def cityscapes_label_map() -> torch.Tensor:
    """A 34-entry int64 lookup table: label id -> train id (255 for ids without one).

    Ids 34-255 do not occur in official ``labelIds`` files, so the table stops at 33 and such
    a value is an error naming the file (a corrupt or wrong label file). The license plate
    (id -1) only appears in instance files and has no slot.
    """
    lut = torch.full((34,), IGNORE_INDEX, dtype=torch.int64)
    for label in CITYSCAPES_LABELS:
        if label.id >= 0:
            lut[label.id] = label.train_id
    return lut


def _info() -> DatasetInfo:
    train = sorted(
        (lab for lab in CITYSCAPES_LABELS if lab.train_id != IGNORE_INDEX),
        key=lambda lab: lab.train_id,
    )
    assert [lab.train_id for lab in train] == list(range(19)), "train ids must be 0..18"
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(train)] = [lab.color for lab in train]
    palette.setflags(write=False)
    return DatasetInfo(
        classes=tuple(lab.name for lab in train),
        palette=palette,
        splits=("train", "val", "test", "train_extra"),
    )


CITYSCAPES_INFO = _info()
"""19 train-id classes (road ... bicycle) with their official colours; 255 = ignore."""

_MODES = {
    # mode: (label folder, label file suffix, splits with labels)
    "fine": ("gtFine", "_gtFine_labelIds.png", ("train", "val", "test")),
    "coarse": ("gtCoarse", "_gtCoarse_labelIds.png", ("train", "val", "train_extra")),
}
_IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesSegmentation(PairedDataset):
    """Cityscapes (image, train-id mask) pairs; see the module docstring for the layout.

    ``mode="fine"`` reads ``gtFine`` (splits train, val, test), ``mode="coarse"`` reads
    ``gtCoarse`` (train, val, train_extra). Images without their label file go to ``missing``;
    with ``strict`` (the default) any such image is an error naming the expected label path.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        mode: str = "fine",
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.mode = mode
        if mode not in _MODES:
            raise DataError(f"Cityscapes mode {mode!r} is unknown; use 'fine' or 'coarse'")
        label_folder, label_suffix, splits = _MODES[mode]
        if split not in splits:
            raise DataError(
                f"Cityscapes {mode} annotations have no split {split!r}; "
                f"choose one of {', '.join(splits)}"
            )
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DataError(
                f"{image_dir}: image folder not found; root must hold leftImg8bit/{split}/<city>/ "
                "as in the official Cityscapes download"
            )
        label_dir = self.root / label_folder / split
        images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
        stems = [image.name[: -len(_IMAGE_SUFFIX)] for image in images]
        samples, missing = pair_files(
            (
                (image, label_dir / image.parent.name / f"{stem}{label_suffix}")
                for image, stem in zip(images, stems, strict=True)
            ),
            "a label file",
        )
        if not samples and not missing:
            raise DataError(f"{image_dir}: empty split (no <city>/*{_IMAGE_SUFFIX} images)")
        super().__init__(
            samples,
            CITYSCAPES_INFO,
            transforms=transforms,
            label_map=cityscapes_label_map(),
            missing=missing,
            strict=strict,
            where=image_dir,
        )
