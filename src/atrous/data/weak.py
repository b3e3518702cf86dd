"""A weakly or semi-supervised training set: a folder of images (the ``folder`` layout; masks
only where they exist) with image-level labels or boxes (:mod:`.boxes`).

Items are ``(image, mask)`` with a ``[2, H, W]`` mask that the DeepLab augmentations move as one:
channel 0 holds the label to train on (a strong mask, a Bbox-Rect / Bbox-Seg label) or
:data:`ESTIMATE` where the E-step decides; channel 1 the classes the E-step may assign there, as
bits (bit c = class c; background always). Padding is 255 (ignore) in both channels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import IMAGE_SUFFIXES, InfoDataset, check_labels, read_image, read_mask
from .boxes import Box, bbox_rect, box_allowed, read_boxes, read_image_labels
from .folder import _split_stems, load_info
from .info import IGNORE_INDEX

ESTIMATE = 254
"""Channel-0 value of the pixels whose label the E-step estimates."""
METHODS = ("rect", "seg", "em_fixed", "em_adapt")
SUPERVISION = ("boxes", "image_labels", "mixed")


def _strong(stem: str, fraction: float) -> bool:
    """Whether ``stem`` keeps its full mask in mixed supervision: a stable hash below
    ``fraction`` (so the strong subset is the same every run)."""
    value = int(hashlib.sha1(stem.encode()).hexdigest(), 16) / 16**40
    return value < fraction


class WeakFolder(InfoDataset):
    """See the module docstring. ``supervision`` is ``boxes`` / ``image_labels`` (every image
    weak) or ``mixed`` (a ``strong_fraction`` of the images with masks, the rest weak, from
    ``boxes`` if given else ``image_labels``); ``method`` is ``rect`` or ``seg`` (boxes, fixed
    labels) or ``em_fixed`` / ``em_adapt`` (the E-step at every step). ``bbox_seg`` makes the
    Bbox-Seg label of ``(image, boxes)`` (computed once per image and kept). Strong images are
    drawn ``strong_repeat`` times per epoch (the batch ratio of mixed training)."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        *,
        supervision: str,
        method: str,
        boxes: str | Path | Mapping[str, Sequence[Box]] | None = None,
        image_labels: str | Path | Mapping[str, Sequence[int]] | None = None,
        strong_fraction: float = 0.1,
        strong_repeat: int = 1,
        num_classes: int | None = None,
        val_fraction: float = 0.1,
        transforms: Callable[..., Any] | None = None,
        bbox_seg: Callable[[torch.Tensor, Sequence[Box]], np.ndarray] | None = None,
    ) -> None:
        self.root = Path(root)
        if supervision not in SUPERVISION:
            raise DataError(
                f"supervision {supervision!r}: expected one of {', '.join(SUPERVISION)}"
            )
        if method not in METHODS:
            raise DataError(f"weak method {method!r}: expected one of {', '.join(METHODS)}")
        self.info = load_info(self.root, num_classes)
        if self.info.num_classes > 62:
            raise DataError(f"{self.root}: weak labels hold at most 62 classes as bits")
        folder = self.root / "images"
        if not folder.is_dir():
            raise DataError(f"{folder}: no images/ folder (a weak data set keeps its images there)")
        images = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        if not images:
            raise DataError(f"{folder}: no .jpg or .png images")
        self.stems, self.held_out = _split_stems(self.root, split, images, val_fraction, [])
        self.images = [images[s] for s in self.stems]
        classes = self.info.classes
        self.boxes = (
            read_boxes(boxes, classes) if isinstance(boxes, (str, Path)) else dict(boxes or {})
        )
        labels = image_labels
        self.image_labels = (
            read_image_labels(labels, classes)
            if isinstance(labels, (str, Path))
            else dict(labels or {})
        )
        kind = (
            "boxes"
            if supervision == "boxes" or (supervision == "mixed" and self.boxes)
            else "image_labels"
        )
        if kind == "boxes" and not self.boxes:
            raise DataError(f"{self.root}: supervision {supervision!r} needs boxes")
        if kind == "image_labels" and not self.image_labels:
            raise DataError(f"{self.root}: supervision {supervision!r} needs image labels")
        if method in ("rect", "seg") and kind != "boxes":
            raise DataError(f"weak method {method!r} needs boxes")
        self.kind, self.method, self.supervision = kind, method, supervision
        self.strong = {
            s for s in self.stems if supervision == "mixed" and _strong(s, strong_fraction)
        }
        for stem in self.strong:
            if not (self.root / "masks" / f"{stem}.png").is_file():
                raise DataError(f"{self.root / 'masks' / stem}.png: a strong image needs its mask")
        missing = [
            s
            for s in self.stems
            if s not in self.strong
            and s not in (self.boxes if kind == "boxes" else self.image_labels)
        ]
        if missing:
            raise DataError(
                f"{self.root}: {len(missing)} weak images have no {kind} (first: {missing[0]!r})"
            )
        self.transforms, self.bbox_seg = transforms, bbox_seg
        self._seg_cache: dict[str, np.ndarray] = {}
        strong_index = [i for i, s in enumerate(self.stems) if s in self.strong]
        self.order = list(range(len(self.stems))) + strong_index * max(0, strong_repeat - 1)

    def __len__(self) -> int:
        return len(self.order)

    def _bits(self, classes: Sequence[int]) -> int:
        return int(sum(1 << c for c in {0, *classes}))

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Item ``index`` (of the images, not the epoch order) without transforms."""
        stem, image = self.stems[index], read_image(self.images[index])
        h, w = image.shape[-2:]
        label = torch.full((h, w), ESTIMATE, dtype=torch.int64)
        bits = torch.zeros((h, w), dtype=torch.int64)
        if stem in self.strong:
            path = self.root / "masks" / f"{stem}.png"
            label = read_mask(path)
            if label.shape != (h, w):
                raise DataError(
                    f"{path}: mask size {tuple(label.shape)} (HxW) differs from its image "
                    f"{self.images[index].name} {(h, w)}"
                )
            check_labels(label, self.num_classes, path)  # no value silently becomes ignore
        elif self.kind == "image_labels":
            bits.fill_(self._bits(self.image_labels[stem]))
        elif self.method == "rect":
            label = torch.from_numpy(bbox_rect(self.boxes[stem], h, w).astype(np.int64))
        elif self.method == "seg":
            if stem not in self._seg_cache:
                if self.bbox_seg is None:
                    raise DataError("weak method 'seg' needs a bbox_seg function (the dense CRF)")
                self._seg_cache[stem] = self.bbox_seg(image, self.boxes[stem])
            label = torch.from_numpy(self._seg_cache[stem].astype(np.int64))
        else:  # EM with boxes: background, and each box's class inside it
            allowed = box_allowed(self.boxes[stem], h, w, self.num_classes)
            weights = torch.tensor([1 << c for c in range(self.num_classes)], dtype=torch.int64)
            bits = (torch.from_numpy(allowed).to(torch.int64) * weights[:, None, None]).sum(0)
        label[(label >= self.num_classes) & (label != ESTIMATE)] = IGNORE_INDEX
        return tv_tensors.Image(image), tv_tensors.Mask(torch.stack([label, bits]))

    def __getitem__(self, index: int) -> Any:
        image, mask = self.load(self.order[index])
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask


def allowed_classes(bits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[N, H, W]`` class bits -> ``[N, C, H, W]`` bool."""
    shifts = torch.arange(num_classes, device=bits.device).view(1, -1, 1, 1)
    return (bits.unsqueeze(1) >> shifts) & 1 == 1
