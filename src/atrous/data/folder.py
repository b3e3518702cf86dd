"""A segmentation dataset read from a folder: ``images/`` + ``masks/`` with matching stems.

Layouts::

    root/                                   flat
      images/<stem>.jpg|.jpeg|.png
      masks/<stem>.png          class ids per pixel (palette PNGs are read by index), 255 = ignore
      train.txt, val.txt, ...   optional split files: one stem per line
      classes.json              optional: ["background", ...] or {"classes": [...], "palette": ...}

    root/                                   split folders (mmsegmentation style)
      images/<split>/<stem>.jpg|.jpeg|.png
      masks/<split>/<stem>.png

A flat folder without any split file still has splits "train" and "val": a fixed share of the
stems (``val_fraction``, chosen by a hash of the file name) is held out as "val".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._pairs import (
    IMAGE_SUFFIXES,
    PairedDataset,
    check_labels,
    pair_files,
    read_image,
    read_json,
    read_mask,
)
from .info import DatasetInfo
from .palette import voc_colormap

__all__ = [
    "SegmentationFolder",
    "check_labels",
    "hold_out",
    "load_info",
    "read_image",
    "read_mask",
]


def load_info(root: str | Path, num_classes: int | None = None) -> DatasetInfo:
    """Class names and palette from ``root/classes.json``, else ``num_classes`` numbered names."""
    path = Path(root) / "classes.json"
    if path.is_file():
        spec = read_json(path, "class list")
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
            given = _palette(spec["palette"], path)
            palette[: len(given)] = given
        return DatasetInfo(classes=classes, palette=palette)
    if num_classes is None:
        raise DataError(
            f"{root}: cannot tell the number of classes; write {path.name} "
            "(a JSON list of class names) or pass num_classes"
        )
    return DatasetInfo(classes=tuple(f"class_{i}" for i in range(num_classes)))


def _palette(given: object, path: Path) -> np.ndarray:
    """``classes.json``'s palette: ``[R, G, B]`` (0-255) for the first classes (up to 256)."""
    try:
        colours = np.asarray(given, dtype=np.float64)
    except (TypeError, ValueError):
        colours = np.zeros((0, 0))
    if (
        colours.ndim != 2
        or colours.shape[1:] != (3,)
        or not 0 < len(colours) <= 256
        or not np.all((colours >= 0) & (colours <= 255))
    ):
        raise DataError(
            f"{path}: palette must be a list of [R, G, B] colours (0-255), one per class"
        )
    return colours.astype(np.uint8)


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _split_folders(image_dir: Path) -> list[str]:
    """Sub-folders of ``images/`` that hold images: the splits of the mmseg-style layout."""
    return [
        d.name
        for d in sorted(image_dir.iterdir())
        if d.is_dir() and not d.name.startswith(".") and _images_in(d)
    ]


def _split_files(root: Path, images: dict[str, Path]) -> list[str]:
    """``*.txt`` files in ``root`` whose first line is an image stem (not a README)."""
    found = []
    for path in sorted(root.glob("*.txt")):
        try:
            first = next(line.strip() for line in path.read_text().splitlines() if line.strip())
        except (OSError, UnicodeDecodeError, StopIteration):
            continue
        if first in images:
            found.append(path.name)
    return found


def _stem_hash(stem: str) -> float:
    """A number in [0, 1) fixed by the stem; Python's ``hash`` of a str changes every run."""
    return int(hashlib.sha1(stem.encode()).hexdigest(), 16) / 16**40


def hold_out(stems: list[str], val_fraction: float) -> dict[str, list[str]]:
    """Split ``stems`` into ``{"train": [...], "val": [...]}`` without a split file.

    A stem is "val" when its hash is below ``val_fraction``, so adding images moves none of the
    others. With 2+ stems, val gets at least one (the smallest hash) and train keeps one.
    """
    ranked = sorted(stems, key=_stem_hash)
    val = [s for s in ranked if _stem_hash(s) < val_fraction]
    if not val and len(ranked) >= 2:
        val = ranked[:1]
    if val and len(val) == len(ranked):
        val = val[:-1]
    chosen = set(val)
    return {"train": sorted(s for s in stems if s not in chosen), "val": sorted(chosen)}


def _split_stems(
    root: Path, split: str | None, images: dict[str, Path], val_fraction: float, folders: list[str]
) -> tuple[list[str], str | None]:
    """The stems of ``split`` in a flat folder, and the hold-out message if one was made."""
    if split is None:
        return sorted(images), None
    split_file = root / f"{split}.txt"
    if split_file.is_file():
        try:
            text = split_file.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{split_file}: unreadable split file ({err})") from None
        stems = [line.strip() for line in text.splitlines() if line.strip()]
        missing = [s for s in stems if s not in images]
        if missing:
            raise DataError(
                f"{split_file}: {len(missing)} listed images not found in {root / 'images'} "
                f"(first: {missing[0]!r})"
            )
        return stems, None
    others = _split_files(root, images)
    if split in ("train", "val") and not others and not folders:
        splits = hold_out(list(images), val_fraction)
        if not splits[split]:
            raise DataError(
                f"{root}: only {len(images)} image; cannot hold out a {split!r} split "
                f"(add images or write {split_file.name})"
            )
        held = len(splits["val"])
        message = (
            f"no {split_file.name} in {root}: held out {held} of {len(images)} images as val "
            f"(val_fraction {val_fraction:g}, by a hash of the file name), "
            f"{len(images) - held} as train"
        )
        return splits[split], message
    hint = ""
    if others:
        hint = f"; split files here: {', '.join(others)}"
        if split in ("train", "val"):
            hint += f" (write {split_file.name} too, or remove them to hold out val)"
    if folders:
        hint += f"; split folders in images/: {', '.join(folders)}"
    raise DataError(f"{split_file}: split file for split {split!r} not found{hint}")


def _find_pairs(
    root: Path, split: str | None, val_fraction: float
) -> tuple[list[tuple[Path, Path]], str | None]:
    """``(image, expected mask)`` candidates of ``split`` in either layout, and the hold-out
    message when "train"/"val" were made without split files."""
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir():
        raise DataError(f"{root}: no images/ folder; expected images/ and masks/")
    folders, images = _split_folders(image_dir), _images_in(image_dir)
    if split in folders:  # images/<split>/ + masks/<split>/
        found = _images_in(image_dir / split)
        return [(found[s], mask_dir / split / f"{s}.png") for s in sorted(found)], None
    if folders and not images:
        if split is not None:
            raise DataError(
                f"{image_dir / split}: no folder for split {split!r} "
                f"(split folders: {', '.join(folders)})"
            )
        return [  # every pair of every split folder
            (path, mask_dir / name / f"{stem}.png")
            for name in folders
            for stem, path in _images_in(image_dir / name).items()
        ], None
    if not images:
        raise DataError(f"{image_dir}: empty data folder (no .jpg or .png images)")
    stems, held_out = _split_stems(root, split, images, val_fraction, folders)
    return [(images[s], mask_dir / f"{s}.png") for s in stems], held_out


class SegmentationFolder(PairedDataset):
    """(image, mask) pairs from a folder; see the module docstring for the layouts.

    ``split`` names a split file (``train`` reads ``train.txt``) or a sub-folder of
    ``images/``; None means every pair. Without any split file, "train" and "val" are a
    hold-out of ``val_fraction`` of the images, described in ``held_out`` (None otherwise) so
    that callers can say so. Pairing is checked up front; sizes and label values when an item
    is read, so that a bad file is named when training meets it. ``strict=False`` lists images
    without a mask in ``missing`` instead of raising (``atrous data check`` uses it).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        num_classes: int | None = None,
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
        val_fraction: float = 0.1,
    ) -> None:
        if not 0 < val_fraction < 1:
            raise DataError(f"val_fraction={val_fraction}: expected a share between 0 and 1")
        self.root = Path(root)
        self.split = split
        candidates, self.held_out = _find_pairs(self.root, split, val_fraction)
        info = load_info(self.root, num_classes)
        if not candidates:
            raise DataError(f"{self.root}: split {split!r} is empty")
        self.stems = [image.stem for image, _ in candidates]
        samples, missing = pair_files(candidates)
        super().__init__(
            samples, info, transforms=transforms, missing=missing, strict=strict, where=self.root
        )
