"""A panoptic data set from a folder: the ``folder`` layout plus ``instances/<stem>.png``, a
16-bit map of instance numbers (0 = no instance), and ``thing_classes`` in ``classes.json``.

Items are ``(image, mask)`` with a ``[2, H, W]`` mask: semantic train ids (255 = ignore) and
instance numbers, so the DeepLab augmentations move both together. A thing-class pixel with
instance 0 is crowd. ``make_synthetic_dataset(..., panoptic=True)`` writes this layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import read_mask
from .folder import SegmentationFolder


class PanopticFolder(SegmentationFolder):
    """:class:`SegmentationFolder` with instance maps (see the module docstring)."""

    def __init__(self, root: str | Path, split: str | None = None, **options: Any) -> None:
        super().__init__(root, split, **options)
        spec_path = self.root / "classes.json"
        spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
        things = spec.get("thing_classes") if isinstance(spec, dict) else None
        if things is None:
            raise DataError(f"{spec_path}: a panoptic folder lists its thing_classes there")
        self.thing_classes = tuple(int(c) for c in things)
        bad = [c for c in self.thing_classes if not 0 <= c < self.num_classes]
        if bad:
            raise DataError(f"{spec_path}: thing_classes {bad} outside [0, {self.num_classes})")

    def instance_path(self, index: int) -> Path:
        mask = self.samples[index][1]
        relative = mask.relative_to(self.root / "masks")
        return self.root / "instances" / relative

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image, semantic = super().load(index)
        path = self.instance_path(index)
        if not path.is_file():
            raise DataError(f"{path}: instance map not found for {self.samples[index][0].name}")
        instance = read_mask(path)
        if instance.shape != semantic.shape:
            raise DataError(
                f"{path}: instance map size {tuple(instance.shape)} differs from the mask "
                f"{tuple(semantic.shape)}"
            )
        return image, tv_tensors.Mask(torch.stack([semantic, instance]))
