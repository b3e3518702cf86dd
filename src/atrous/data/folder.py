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
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import pil_to_tensor

from ..errors import DataError
from .info import IGNORE_INDEX, DatasetInfo
from .palette import voc_colormap

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_MASK_MODES = ("P", "L", "I", "I;16")


def read_image(path: str | Path) -> tv_tensors.Image:
    """Decode an image file to a uint8 ``3xHxW`` RGB tensor, naming the file if it cannot be read.

    PIL rather than torchvision.io, whose decoders are deprecated since torchvision 0.29.
    """
    try:
        with Image.open(path) as img:
            return tv_tensors.Image(pil_to_tensor(img.convert("RGB")))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from None


def read_mask(path: str | Path) -> tv_tensors.Mask:
    """Read a class-id PNG to an int64 ``HxW`` mask.

    PIL, not torchvision.io, because torchvision expands palette PNGs to RGB colours and we need
    the palette indices, which are the class ids.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in _MASK_MODES:
                raise DataError(
                    f"{path}: mask has mode {img.mode!r}; expected one class id per pixel "
                    f"(a palette or grayscale PNG, modes {', '.join(_MASK_MODES)}), "
                    "not a colour image"
                )
            array = np.array(img, dtype=np.int64)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: unreadable mask ({err})") from None
    return tv_tensors.Mask(torch.from_numpy(array))


def check_labels(mask: torch.Tensor, num_classes: int, path: str | Path) -> None:
    """Raise if ``mask`` holds values outside ``[0, num_classes)`` and the ignore label 255."""
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX) | (mask < 0)
    if bad.any():
        values = sorted(torch.unique(mask[bad]).tolist())
        shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
        raise DataError(
            f"{path}: label values {shown} are outside [0, {num_classes}) and the ignore label "
            f"{IGNORE_INDEX}"
        )


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


class SegmentationFolder(Dataset):
    """(image, mask) pairs from a folder; see the module docstring for the layout.

    Items are ``(tv_tensors.Image uint8 3xHxW, tv_tensors.Mask int64 HxW)`` passed through
    ``transforms(image, mask)`` when given. Pairing is checked up front; sizes and label values
    when an item is read, so that a bad file is named when training meets it.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        num_classes: int | None = None,
        transforms: Callable[..., Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        if not image_dir.is_dir():
            raise DataError(f"{self.root}: no images/ folder; expected images/ and masks/")
        images = {
            p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        if not images:
            raise DataError(f"{image_dir}: empty data folder (no .jpg or .png images)")
        self.info = load_info(self.root, num_classes)
        self.stems = _split_stems(self.root, split, images)
        if not self.stems:
            raise DataError(f"{self.root}: split {split!r} is empty")
        self.samples: list[tuple[Path, Path]] = []
        for stem in self.stems:
            mask_path = mask_dir / f"{stem}.png"
            if not mask_path.is_file():
                raise DataError(f"{images[stem]}: image without a mask (expected {mask_path})")
            self.samples.append((images[stem], mask_path))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def palette(self) -> np.ndarray:
        return self.info.palette

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Read and check item ``index`` without transforms."""
        image_path, mask_path = self.samples[index]
        image, mask = read_image(image_path), read_mask(mask_path)
        if image.shape[-2:] != mask.shape[-2:]:
            raise DataError(
                f"{mask_path}: mask size {tuple(mask.shape[-2:])} (HxW) differs from its image "
                f"{image_path.name} {tuple(image.shape[-2:])}"
            )
        check_labels(mask, self.num_classes, mask_path)
        return image, mask

    def __getitem__(self, index: int) -> Any:
        image, mask = self.load(index)
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask
