"""A segmentation dataset read from a folder: ``images/`` + ``masks/`` with matching stems.

Layout::

    root/
      images/<stem>.jpg|.jpeg|.png
      masks/<stem>.png          class ids per pixel (palette PNGs are read by index), 255 = ignore
      train.txt, val.txt, ...   optional split files: one stem per line
      classes.json              optional: ["background", ...] or {"classes": [...], "palette": ...}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._pairs import IMAGE_SUFFIXES, PairedDataset, check_labels, pair_files, read_image, read_mask
from .info import DatasetInfo
from .palette import voc_colormap

__all__ = ["SegmentationFolder", "check_labels", "load_info", "read_image", "read_mask"]


def load_info(root: str | Path, num_classes: int | None = None) -> DatasetInfo:
    """Class names and palette from ``root/classes.json``, else ``num_classes`` numbered names."""
    path = Path(root) / "classes.json"
    if path.is_file():
        try:
            spec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: unreadable class list ({err})") from None
        if isinstance(spec, list):
            spec = {"classes": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("classes"), list):
            raise DataError(f"{path}: expected a list of class names or {{'classes': [...]}}")
        classes = tuple(str(c) for c in spec["classes"])
        if num_classes is not None and num_classes != len(classes):
            raise DataError(
                f"{path}: lists {len(classes)} classes but num_classes={num_classes} was asked for"
            )
        palette = voc_colormap()
        if "palette" in spec:
            given = np.asarray(spec["palette"], dtype=np.uint8).reshape(-1, 3)
            palette[: len(given)] = given
        return DatasetInfo(classes=classes, palette=palette)
    if num_classes is None:
        raise DataError(
            f"{root}: cannot tell the number of classes; write {path.name} "
            "(a JSON list of class names) or pass num_classes"
        )
    return DatasetInfo(classes=tuple(f"class_{i}" for i in range(num_classes)))


def _split_stems(root: Path, split: str | None, images: dict[str, Path]) -> list[str]:
    if split is None:
        return sorted(images)
    split_file = root / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file for split {split!r} not found")
    stems = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    missing = [s for s in stems if s not in images]
    if missing:
        raise DataError(
            f"{split_file}: {len(missing)} listed images not found in {root / 'images'} "
            f"(first: {missing[0]!r})"
        )
    return stems


class SegmentationFolder(PairedDataset):
    """(image, mask) pairs from a folder; see the module docstring for the layout.

    Pairing is checked up front; sizes and label values when an item is read, so that a bad
    file is named when training meets it. ``strict=False`` lists images without a mask in
    ``missing`` instead of raising (``atrous data check`` uses it).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        num_classes: int | None = None,
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        if not image_dir.is_dir():
            raise DataError(f"{self.root}: no images/ folder; expected images/ and masks/")
        images = {
            p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        if not images:
            raise DataError(f"{image_dir}: empty data folder (no .jpg or .png images)")
        info = load_info(self.root, num_classes)
        self.stems = _split_stems(self.root, split, images)
        if not self.stems:
            raise DataError(f"{self.root}: split {split!r} is empty")
        samples, missing = pair_files((images[s], mask_dir / f"{s}.png") for s in self.stems)
        super().__init__(
            samples, info, transforms=transforms, missing=missing, strict=strict, where=self.root
        )
