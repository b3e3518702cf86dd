"""What every dataset shares: readers that name the bad file, and a dataset of (image, mask) pairs.

Dataset classes (folder, VOC, Cityscapes, ...) only find their pairs and know their label
mapping; reading, mapping, checking and transforms happen here.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import pil_to_tensor

from ..errors import DataError
from .info import IGNORE_INDEX, DatasetInfo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_MASK_MODES = ("P", "L", "I", "I;16")
_ORIENTATION = 0x0112  # EXIF tag
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError)
"""What Pillow raises on a corrupt or truncated file, its EXIF block included."""
_RAISE_LIMIT = (
    "if it really is this large: atrous --max-image-pixels N (0: no limit) on the command line, "
    "PIL.Image.MAX_IMAGE_PIXELS in Python"
)


@contextmanager
def _pillow(path: str | Path, what: str) -> Iterator[Image.Image]:
    """``Image.open(path)``, any failure (missing, corrupt, a decompression bomb) a
    :class:`DataError` naming the file. Pillow refuses images over twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` and only warns between once and twice; both are refused here,
    so that no worker prints a warning and then spends minutes and gigabytes decoding."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            img = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except Image.DecompressionBombError as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
        raise DataError(
            f"{path}: {what} of {size} is over Pillow's decompression-bomb limit "
            f"PIL.Image.MAX_IMAGE_PIXELS = {limit:,} ({_RAISE_LIMIT})"
        ) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS) as err:
        raise DataError(f"{path}: unreadable {what} ({err})") from None
    with img:
        if limit is not None and img.width * img.height > limit:
            raise DataError(
                f"{path}: {what} of {img.width}x{img.height} = {img.width * img.height:,} "
                f"pixels is over Pillow's decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS = "
                f"{limit:,} ({_RAISE_LIMIT})"
            )
        yield img


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 = as stored) of an open image."""
    value = img.getexif().get(_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """Decode an image file as it displays: EXIF orientation applied (a phone photo taken
    upright is upright, with its displayed width and height), the file closed; any problem a
    :class:`DataError` naming the file. ``what`` names the kind of file in messages."""
    with _pillow(path, what) as img:
        try:
            img.load()
            if _orientation(img) != 1:
                ImageOps.exif_transpose(img, in_place=True)
        except _DECODE_ERRORS as err:
            raise DataError(f"{path}: unreadable {what} ({err})") from None
        return img


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """``(height, width)`` of an image file as it displays (EXIF orientation 5-8 swap the two),
    without decoding its pixels where the format allows."""
    with _pillow(path, what) as img:
        try:
            turned = _orientation(img) >= 5
        except _DECODE_ERRORS as err:
            raise DataError(f"{path}: unreadable {what} ({err})") from None
        return (img.width, img.height) if turned else (img.height, img.width)


def read_image(path: str | Path) -> tv_tensors.Image:
    """Decode an image file to a uint8 ``3xHxW`` RGB tensor as it displays (EXIF orientation
    applied), naming the file if it cannot be read (see :func:`open_image`).

    PIL rather than torchvision.io, whose decoders are deprecated since torchvision 0.29.
    """
    img = open_image(path)
    return tv_tensors.Image(pil_to_tensor(img if img.mode == "RGB" else img.convert("RGB")))


def read_mask(path: str | Path) -> tv_tensors.Mask:
    """Read a class-id PNG to an int64 ``HxW`` mask, as it displays (a mask that carries an
    EXIF orientation is turned like an image that does).

    PIL, not torchvision.io, because torchvision expands palette PNGs to RGB colours and we need
    the palette indices, which are the class ids.
    """
    img = open_image(path, "mask")
    if img.mode not in _MASK_MODES:
        raise DataError(
            f"{path}: mask has mode {img.mode!r}; expected one class id per pixel "
            f"(a palette or grayscale PNG, modes {', '.join(_MASK_MODES)}), not a colour image"
        )
    return tv_tensors.Mask(torch.from_numpy(np.array(img, dtype=np.int64)))


def read_json(path: str | Path, what: str) -> Any:
    """The JSON document in ``path``; a missing, unreadable or malformed file is a
    :class:`DataError` naming it (``what`` says what the file should hold)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are both
        raise DataError(f"{path}: cannot read {what} ({err})") from None


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


def map_labels(mask: torch.Tensor, lut: torch.Tensor, path: str | Path) -> torch.Tensor:
    """Raw label ids -> train ids through a lookup table (e.g. Cityscapes ids, ADE20K shift)."""
    if mask.numel() and (mask.min() < 0 or mask.max() >= len(lut)):
        bad = sorted(torch.unique(mask[(mask < 0) | (mask >= len(lut))]).tolist())[:10]
        raise DataError(f"{path}: raw label values {bad} are outside the label table")
    return lut[mask]


def pair_files(
    candidates: Iterable[tuple[Path, Path]], what: str = "a mask"
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Split ``(image, expected mask)`` candidates into the pairs whose mask exists and one
    message per image without it (for :class:`PairedDataset`'s ``missing``)."""
    samples, missing = [], []
    for image, mask in candidates:
        if mask.is_file():
            samples.append((image, mask))
        else:
            missing.append(f"{image}: image without {what} (expected {mask})")
    return samples, missing


class InfoDataset(Dataset):
    """A dataset whose ``classes``, ``palette`` and ``num_classes`` come from its ``info``."""

    info: DatasetInfo

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def palette(self) -> np.ndarray:
        return self.info.palette

    @property
    def num_classes(self) -> int:
        return self.info.num_classes


class PairedDataset(InfoDataset):
    """``(image path, mask path)`` pairs read as ``(tv_tensors.Image uint8 3xHxW,
    tv_tensors.Mask int64 HxW)`` and passed through ``transforms(image, mask)`` when given.

    ``read_label`` reads a mask file (PNG by default), ``label_map`` (a lookup table) maps raw
    ids to train ids with 255 = ignore. Each item is checked when read: the mask's size must
    equal the image's and its values lie in ``[0, num_classes)`` or 255, else a
    :class:`DataError` names the file. ``missing`` lists images whose mask was not found; with
    ``strict`` (the default) a non-empty list is an error.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        info: DatasetInfo,
        *,
        transforms: Callable[..., Any] | None = None,
        read_label: Callable[[Path], torch.Tensor] = read_mask,
        label_map: torch.Tensor | None = None,
        missing: Sequence[str] = (),
        strict: bool = True,
        where: str | Path = "",
    ) -> None:
        self.samples = list(samples)
        self.info = info
        self.transforms = transforms
        self.read_label = read_label
        self.label_map = label_map
        self.missing = list(missing)
        if strict and self.missing:
            raise DataError(f"{self.missing[0]} ({len(self.missing)} image(s) in all)")
        if not self.samples and not self.missing:
            raise DataError(f"{where}: empty dataset (no image/mask pairs found)")

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Read, map and check item ``index`` without transforms."""
        image_path, mask_path = self.samples[index]
        image, mask = read_image(image_path), self.read_label(mask_path)
        if self.label_map is not None:
            mask = map_labels(mask, self.label_map, mask_path)
        if image.shape[-2:] != mask.shape[-2:]:
            raise DataError(
                f"{mask_path}: mask size {tuple(mask.shape[-2:])} (HxW) differs from its image "
                f"{image_path.name} {tuple(image.shape[-2:])}"
            )
        check_labels(mask, self.num_classes, mask_path)
        return tv_tensors.Image(image), tv_tensors.Mask(mask)

    def __getitem__(self, index: int) -> Any:
        image, mask = self.load(index)
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask
