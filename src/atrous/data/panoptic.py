"""A panoptic data set from a folder: the ``folder`` layout plus ``instances/<stem>.png``, a
16-bit map of instance numbers (0 = no instance), and ``thing_classes`` in ``classes.json``.

Items are ``(image, mask)`` with a ``[2, H, W]`` mask: semantic train ids (255 = ignore) and
instance numbers, so the DeepLab augmentations move both together. A thing-class pixel with
instance 0 is crowd. ``make_synthetic_dataset(..., panoptic=True)`` writes this layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import InfoDataset, map_labels, open_image, read_image, read_json, read_mask
from .cityscapes import CityscapesSegmentation, cityscapes_label_map
from .coco_format import read_coco_panoptic, read_segment_ids
from .folder import SegmentationFolder
from .info import IGNORE_INDEX, DatasetInfo


class PanopticFolder(SegmentationFolder):
    """:class:`SegmentationFolder` with instance maps (see the module docstring)."""

    def __init__(self, root: str | Path, split: str | None = None, **options: Any) -> None:
        super().__init__(root, split, **options)
        spec_path = self.root / "classes.json"
        spec = read_json(spec_path, "class list") if spec_path.is_file() else {}
        things = spec.get("thing_classes") if isinstance(spec, dict) else None
        if things is None:
            raise DataError(
                f"{spec_path}: a panoptic folder lists its thing_classes there "
                '({"classes": [...], "thing_classes": [class ids]})'
            )
        if not isinstance(things, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in things
        ):
            raise DataError(f"{spec_path}: thing_classes {things!r} is not a list of class ids")
        self.thing_classes = tuple(things)
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


CITYSCAPES_THINGS = tuple(
    range(11, 19)
)  # person, rider, car, truck, bus, train, motorcycle, bicycle


class CityscapesPanoptic(CityscapesSegmentation):
    """Cityscapes panoptic from ``gtFine/*_gtFine_instanceIds.png`` (cityscapesScripts
    conventions: ``label id * 1000 + instance`` for thing instances, the label id alone for stuff
    and for thing regions without an instance, which are crowd); items as :class:`PanopticFolder`'s,
    19 train ids, the 8 thing classes 11-18."""

    thing_classes = CITYSCAPES_THINGS

    def __init__(self, root: str | Path, split: str = "train", **options: Any) -> None:
        super().__init__(root, split, **options)
        self.samples = [
            (image, label.with_name(label.name.replace("_labelIds.png", "_instanceIds.png")))
            for image, label in self.samples
        ]
        missing = [label for _, label in self.samples if not label.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: instance file not found ({len(missing)} in all)")

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, path = self.samples[index]
        image = read_image(image_path)
        png = open_image(path, "instance file")
        if png.mode not in ("I", "I;16", "L", "P"):
            raise DataError(
                f"{path}: instance file has mode {png.mode!r}; expected a 16-bit PNG of "
                "label id * 1000 + instance"
            )
        raw = torch.from_numpy(np.array(png, dtype=np.int64))
        if raw.shape != image.shape[-2:]:
            raise DataError(
                f"{path}: size {tuple(raw.shape)} (HxW) differs from its image "
                f"{image_path.name} {tuple(image.shape[-2:])}"
            )
        label_id = torch.where(raw >= 1000, raw // 1000, raw)
        instance = torch.where(raw >= 1000, raw % 1000, torch.zeros_like(raw))
        semantic = map_labels(label_id, cityscapes_label_map(), path)
        return tv_tensors.Image(image), tv_tensors.Mask(torch.stack([semantic, instance]))


class COCOPanoptic(InfoDataset):
    """COCO panoptic (``annotations/panoptic_{split}2017.json`` + the RGB-encoded PNGs of
    ``annotations/panoptic_{split}2017/``, images in ``{split}2017/``): segment ids are
    ``R + 256 G + 256^2 B``; categories map to contiguous train ids in id order (133 for COCO);
    each image's thing segments are numbered 1, 2, ... per class; crowd segments get instance 0
    and unlabeled pixels 255. Items as :class:`PanopticFolder`'s."""

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
    ) -> None:
        self.root, self.transforms = Path(root), transforms
        spec = self.root / "annotations" / f"panoptic_{split}2017.json"
        data = read_coco_panoptic(spec)
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_index = {c["id"]: i for i, c in enumerate(categories)}
        self.thing_classes = tuple(i for i, c in enumerate(categories) if c.get("isthing"))
        palette = np.zeros((256, 3), dtype=np.uint8)
        for i, c in enumerate(categories[:256]):
            try:
                palette[i] = c.get("color", [0, 0, 0])
            except (TypeError, ValueError):
                raise DataError(
                    f"{spec}: category {c['id']} color {c['color']!r} is not [R, G, B]"
                ) from None
        self.info = DatasetInfo(classes=tuple(str(c["name"]) for c in categories), palette=palette)
        images = {im["id"]: im for im in data["images"]}
        self.items = []
        self.missing: list[str] = []
        for ann in data["annotations"]:
            for segment in ann["segments_info"]:
                if segment["category_id"] not in self.category_index:
                    raise DataError(
                        f"{spec}: image {ann['image_id']!r} ({ann['file_name']}) segment "
                        f"{segment['id']} has category_id {segment['category_id']!r}, which "
                        "'categories' does not list"
                    )
            image = self.root / f"{split}2017" / str(images[ann["image_id"]]["file_name"])
            png = self.root / "annotations" / f"panoptic_{split}2017" / str(ann["file_name"])
            if image.is_file() and png.is_file():
                self.items.append((image, png, ann["segments_info"]))
            else:
                self.missing.append(f"{image}: image or panoptic PNG {png.name} not found")
        if strict and self.missing:
            raise DataError(f"{self.missing[0]} ({len(self.missing)} in all)")
        self.samples = [(image, png) for image, png, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, png_path, segments = self.items[index]
        image = read_image(image_path)
        ids = torch.from_numpy(read_segment_ids(png_path, segments))
        if ids.shape != image.shape[-2:]:
            raise DataError(
                f"{png_path}: size {tuple(ids.shape)} (HxW) differs from its image "
                f"{image_path.name} {tuple(image.shape[-2:])}"
            )
        semantic = torch.full_like(ids, IGNORE_INDEX)
        instance = torch.zeros_like(ids)
        counters: dict[int, int] = {}
        for segment in sorted(segments, key=lambda s: s["id"]):
            cls = self.category_index[segment["category_id"]]
            where = ids == segment["id"]
            semantic[where] = cls
            if cls in self.thing_classes and not segment.get("iscrowd", 0):
                counters[cls] = counters.get(cls, 0) + 1
                instance[where] = counters[cls]
        return tv_tensors.Image(image), tv_tensors.Mask(torch.stack([semantic, instance]))

    def __getitem__(self, index: int) -> Any:
        image, mask = self.load(index)
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)
