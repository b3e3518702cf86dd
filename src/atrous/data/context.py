"""PASCAL-Context in the common 60-class setting: the 59 most frequent classes + background.

PASCAL-Context labels every pixel of the PASCAL VOC 2010 images with one of 459 classes; the
usual benchmark keeps 59 of them and folds the rest into "background". Layout::

    root/VOCdevkit/VOC2010/
      JPEGImages/<id>.jpg                      the VOC 2010 images
      ImageSets/SegmentationContext/train.txt  split lists (here or in context_root)
    context_root/                              default: root/PASCAL-Context
      trainval/<id>.mat      MATLAB file holding ``LabelMap``, HxW ids in the 459-class set
      labels.txt             "<id>: <name>", one line per class of the 459-class set
      59_labels.txt          "<id>: <name>" for the 59 kept classes, ids in the 459-class set
      train.txt, val.txt     split lists: one image id (e.g. 2008_000002) per line

The kept ids become train ids 1..59 in the order of ``59_labels.txt``; every other id, and 0,
becomes 0 (background). Nothing is ignored (255) in this setting.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.io import loadmat
from scipy.io.matlab import MatReadError
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import PairedDataset, pair_files
from .info import DatasetInfo
from .palette import voc_colormap

__all__ = [
    "CONTEXT_SPLITS",
    "PascalContextSegmentation",
    "context_label_map",
    "read_context_label",
]

CONTEXT_SPLITS = ("train", "val")
"""The splits PASCAL-Context ships (4998 and 5105 images)."""

_LABEL_LINE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*?)\s*$")
_MAT_ERRORS = (
    *(OSError, ValueError, TypeError, LookupError, MatReadError, zlib.error),
    NotImplementedError,  # MATLAB v7.3 (HDF5) files, which scipy cannot read
)
"""What ``loadmat`` raises on a corrupt or truncated file (garbage bytes give an IndexError)."""


def _read_label_file(path: Path) -> dict[int, str]:
    """``{id: name}`` in file order from lines ``"<id>: <name>"``; blank lines are skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(
            f"{path}: label file not found; it comes with the PASCAL-Context annotations "
            "(pass context_root if they are not in root/PASCAL-Context)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable label file ({err})") from None
    labels: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LABEL_LINE.match(line)
        if match is None:
            raise DataError(f"{path}:{number}: expected '<id>: <name>', got {line.strip()!r}")
        label_id, name = int(match[1]), match[2]
        if label_id in labels:
            raise DataError(f"{path}:{number}: id {label_id} is listed twice")
        labels[label_id] = name
    if not labels:
        raise DataError(f"{path}: empty label file")
    return labels


def context_label_map(context_root: str | Path) -> tuple[tuple[str, ...], torch.Tensor]:
    """Class names and the raw id -> train id lookup table from the two label files.

    The table is as long as the largest id of ``labels.txt`` + 1, so a ``LabelMap`` value
    outside the 459-class set is reported with the ``.mat`` file's name.
    """
    context_root = Path(context_root)
    full = _read_label_file(context_root / "labels.txt")
    kept_path = context_root / "59_labels.txt"
    kept = _read_label_file(kept_path)
    unknown = [i for i in kept if i not in full]
    if unknown:
        raise DataError(
            f"{kept_path}: ids {unknown[:10]} are not in {context_root / 'labels.txt'}; "
            "the two files must come from the same PASCAL-Context release"
        )
    lut = torch.zeros(max(full) + 1, dtype=torch.int64)
    lut[list(kept)] = torch.arange(1, len(kept) + 1)
    return ("background", *kept.values()), lut


def read_context_label(path: Path) -> tv_tensors.Mask:
    """The ``LabelMap`` of a PASCAL-Context ``.mat`` file as an int64 ``HxW`` mask."""
    try:
        contents = loadmat(path, variable_names=["LabelMap"])
    except _MAT_ERRORS as err:
        raise DataError(
            f"{path}: unreadable .mat label file ({type(err).__name__}: {err})"
        ) from None
    label = contents.get("LabelMap")
    if not isinstance(label, np.ndarray) or label.ndim != 2:
        found = "absent" if label is None else f"shape {getattr(label, 'shape', '?')}"
        raise DataError(f"{path}: expected a 2-D 'LabelMap' array of class ids ({found})")
    integral = np.issubdtype(label.dtype, np.integer) or (
        np.issubdtype(label.dtype, np.floating) and np.all(label == np.round(label))
    )
    if not integral:
        raise DataError(f"{path}: 'LabelMap' holds {label.dtype} values, not class ids")
    return tv_tensors.Mask(torch.from_numpy(label.astype(np.int64)))


def _find_voc(root: Path) -> Path:
    """The VOC 2010 folder: ``root/VOCdevkit/VOC2010``, ``root/VOC2010`` or ``root`` itself."""
    for voc in (root / "VOCdevkit" / "VOC2010", root / "VOC2010", root):
        if (voc / "JPEGImages").is_dir():
            return voc
    raise DataError(
        f"{root}: no VOCdevkit/VOC2010/JPEGImages/ folder; PASCAL-Context uses the PASCAL VOC "
        "2010 images (VOCtrainval_03-May-2010.tar)"
    )


def _split_ids(context_root: Path, voc: Path, split: str) -> tuple[Path, list[str]]:
    """Image ids of ``split`` from ``context_root/<split>.txt``, else the VOC ImageSets copy."""
    candidates = (
        context_root / f"{split}.txt",
        voc / "ImageSets" / "SegmentationContext" / f"{split}.txt",
    )
    for split_file in candidates:
        if split_file.is_file():
            try:
                text = split_file.read_text()
            except (OSError, UnicodeDecodeError) as err:
                raise DataError(f"{split_file}: unreadable split file ({err})") from None
            ids = [line.strip() for line in text.splitlines() if line.strip()]
            if not ids:
                raise DataError(f"{split_file}: split {split!r} is empty")
            return split_file, ids
    raise DataError(
        f"{candidates[0]}: split file for split {split!r} not found (nor {candidates[1]}); "
        f"PASCAL-Context ships {', '.join(map(repr, CONTEXT_SPLITS))}"
    )


class PascalContextSegmentation(PairedDataset):
    """PASCAL-Context (image, mask) pairs, 60 classes; see the module docstring for the layout.

    The class names and label table are read from ``labels.txt`` and ``59_labels.txt`` when the
    dataset is built. ``strict=False`` lists images without a ``.mat`` file in ``missing``
    instead of raising.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        context_root: str | Path | None = None,
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.context_root = (
            self.root / "PASCAL-Context" if context_root is None else Path(context_root)
        )
        if not self.context_root.is_dir():
            raise DataError(
                f"{self.context_root}: PASCAL-Context folder not found; pass context_root= the "
                "folder holding trainval/, labels.txt and 59_labels.txt"
            )
        voc = _find_voc(self.root)
        classes, lut = context_label_map(self.context_root)
        info = DatasetInfo(classes=classes, palette=voc_colormap(), splits=CONTEXT_SPLITS)
        split_file, self.ids = _split_ids(self.context_root, voc, split)
        image_dir, label_dir = voc / "JPEGImages", self.context_root / "trainval"
        absent = [i for i in self.ids if not (image_dir / f"{i}.jpg").is_file()]
        if absent:
            raise DataError(
                f"{split_file}: {len(absent)} listed images not found in {image_dir} "
                f"(first: {absent[0]!r})"
            )
        samples, missing = pair_files(
            ((image_dir / f"{i}.jpg", label_dir / f"{i}.mat") for i in self.ids), "a label map"
        )
        super().__init__(
            samples,
            info,
            transforms=transforms,
            read_label=read_context_label,
            label_map=lut,
            missing=missing,
            strict=strict,
            where=split_file,
        )
