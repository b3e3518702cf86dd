"""COCO instance segmentation (``annotations/instances_{split}2017.json`` + ``{split}2017/``)
read into ``(image, target)`` items for MaskLab (Chen et al. 2018), and its training
augmentation.

Categories become contiguous labels ``1..C`` in the order of their sorted COCO ids (0 is
background); ``category_ids[label - 1]`` maps a label back, to write COCO results. Boxes use
COCO's continuous pixel coordinates (see :mod:`atrous.data.keypoints`): a mask covering columns
``x0..x1`` has the box ``[x0, x1 + 1)``. Every annotation is checked when the file is read, so
a bad one fails at once, naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as F

from ..errors import DataError
from ._pairs import read_json
from .info import IGNORE_INDEX, DatasetInfo
from .keypoints import (
    _DOWNLOAD,
    COCOImages,
    _check_image,
    _check_segmentation,
    _number,
    _resize_mask,
)
from .palette import voc_colormap

INSTANCE_KEYS = ("masks", "labels", "iscrowd", "area")
"""The per-instance fields of a target besides ``boxes`` (one entry per instance, in step)."""


def _json_records(data: Any, path: Path) -> tuple[list, list, list]:
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(
            f"{path}: not a COCO instances file (a JSON object with lists 'images', "
            "'annotations' and 'categories')"
        )
    return data["images"], data["annotations"], data["categories"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(categories: list, path: Path) -> dict[int, str]:
    """``{category id: name}`` sorted by id; a malformed or repeated category is an error."""
    names: dict[int, str] = {}
    for number, cat in enumerate(categories):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cid) or not isinstance(cat.get("name"), str):
            raise DataError(f"{path}: categories[{number}] needs an integer id and a name")
        if cid in names:
            raise DataError(f"{path}: categories[{number}]: category id {cid} appears twice")
        names[cid] = cat["name"]
    if not names:
        raise DataError(f"{path}: no categories")
    return dict(sorted(names.items()))


def _check_annotation(
    ann: Any, number: int, path: Path, images: dict[int, dict], categories: dict[int, str]
) -> None:
    """Raise a :class:`DataError` naming the file and the annotation if ``ann`` cannot be read."""
    where = f"{path}: annotations[{number}]"
    if not isinstance(ann, dict) or "image_id" not in ann:
        raise DataError(f"{where} has no image_id")
    where += f" (id {ann.get('id')!r}, image {ann['image_id']!r})"
    if not _is_int(ann["image_id"]) or ann["image_id"] not in images:
        raise DataError(f"{where}: image id {ann['image_id']!r} is not in 'images'")
    category = ann.get("category_id")
    if not _is_int(category) or category not in categories:
        raise DataError(
            f"{where}: unknown category_id {category!r} (categories: "
            f"{', '.join(map(str, categories))})"
        )
    bbox = ann.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(_number(v) and math.isfinite(v) for v in bbox)
        or bbox[2] < 0
        or bbox[3] < 0
    ):
        raise DataError(
            f"{where}: bbox {bbox!r} is not [x, y, width, height] (4 finite numbers, width and "
            "height >= 0)"
        )
    if ann.get("iscrowd", 0) not in (0, 1):
        raise DataError(f"{where}: iscrowd {ann['iscrowd']!r} is not 0 or 1")
    if "segmentation" not in ann:
        raise DataError(f"{where}: no segmentation")
    image = images[ann["image_id"]]
    problem = _check_segmentation(ann["segmentation"], image["height"], image["width"])
    if problem:
        raise DataError(f"{where}: segmentation {problem}")
    if not _number(ann.get("area", 0)):
        raise DataError(f"{where}: area {ann['area']!r} is not a number")


class COCOInstances(COCOImages):
    """COCO instance segmentation: items ``(tv_tensors.Image uint8 [3,H,W], target)`` with
    target ``image_id`` (int), ``boxes`` (``tv_tensors.BoundingBoxes`` float32 [P,4] XYXY, the
    file's ``bbox``), ``labels`` int64 [P] (1..C), ``masks`` (``tv_tensors.Mask`` bool
    [P,H,W]), ``iscrowd`` bool [P] and ``area`` float32 [P] (the file's), passed through
    ``transforms(image, target)`` when given. Crowd regions stay, flagged, as in COCO.

    Split ``train`` keeps the images with an annotation; any other split (``val``) keeps every
    image, as evaluation counts detections on empty images too (``keep_empty`` overrides).
    ``samples[i]`` is ``(image path, annotation file)``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        transforms: Callable[..., Any] | None = None,
        *,
        keep_empty: bool | None = None,
    ) -> None:
        split = split or "train"
        self.root, self.split, self.transforms = Path(root), split, transforms
        path = self.root / "annotations" / f"instances_{split}2017.json"
        self.annotation_file = path
        if not path.is_file():
            raise DataError(f"{path}: instance annotations not found; {_DOWNLOAD}")
        images, annotations, categories = _json_records(read_json(path, "COCO instances"), path)
        names = _categories(categories, path)
        self.category_ids: tuple[int, ...] = tuple(names)
        """``category_ids[label - 1]``: the COCO category id of contiguous label ``label``."""
        count = len(names) + 1
        self.info = DatasetInfo(
            classes=("background", *names.values()), palette=voc_colormap(max(256, count))
        )
        self._labels = {cid: label for label, cid in enumerate(self.category_ids, 1)}
        by_id: dict[int, dict] = {}
        for number, image in enumerate(images):
            _check_image(image, number, path)
            if not _is_int(image["id"]):
                raise DataError(f"{path}: images[{number}]: id {image['id']!r} is not an integer")
            if image["id"] in by_id:
                raise DataError(f"{path}: images[{number}]: image id {image['id']!r} repeats")
            by_id[image["id"]] = image
        objects: dict[int, list[dict]] = {}
        for number, ann in enumerate(annotations):
            _check_annotation(ann, number, path, by_id, names)
            objects.setdefault(ann["image_id"], []).append(ann)
        self._keep(split, images, objects, keep_empty, "images with an annotation")

    def load(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        """Item ``index`` without transforms."""
        record, anns, image, masks = self._read(index)
        h, w = record["height"], record["width"]
        xywh = torch.tensor([ann["bbox"] for ann in anns], dtype=torch.float32).reshape(-1, 4)
        target = {
            "image_id": int(record["id"]),
            "boxes": tv_tensors.BoundingBoxes(
                torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1),
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=(h, w),
            ),
            "labels": torch.tensor(
                [self._labels[ann["category_id"]] for ann in anns], dtype=torch.int64
            ),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "iscrowd": torch.tensor(
                [bool(ann.get("iscrowd", 0)) for ann in anns], dtype=torch.bool
            ),
            "area": torch.tensor([float(ann.get("area", 0)) for ann in anns], dtype=torch.float32),
        }
        return image, target


def instance_semantic(target: dict[str, Any]) -> torch.Tensor:
    """The ``[H, W]`` int64 class map of a target: each non-crowd instance's label on its
    pixels (where instances overlap, the smaller one's, as it is the one in front), 255 on crowd
    pixels no such instance covers, else 0 (MaskLab's semantic target and its mIoU)."""
    masks = target["masks"].as_subclass(torch.Tensor).bool()
    labels, crowd = target["labels"], target["iscrowd"].bool()
    semantic = torch.zeros(masks.shape[-2:], dtype=torch.int64)
    if not masks.shape[0]:
        return semantic
    things = (~crowd).nonzero().flatten()
    sizes = masks[things].flatten(1).sum(1)
    for k in things[torch.argsort(sizes, descending=True, stable=True)].tolist():
        semantic[masks[k]] = int(labels[k])
    semantic[masks[crowd].any(0) & (semantic == 0)] = IGNORE_INDEX
    return semantic


def instance_hflip(
    image: torch.Tensor, target: dict[str, Any]
) -> tuple[tv_tensors.Image, dict[str, Any]]:
    """Mirror an item left-right: the image and every ``tv_tensors.Mask`` of the target
    flipped, every ``tv_tensors.BoundingBoxes`` mapped ``x -> W - x`` (corners swapped)."""
    target = dict(target)
    for key, value in target.items():
        if isinstance(value, (tv_tensors.Mask, tv_tensors.BoundingBoxes)):
            target[key] = F.horizontal_flip(value)
    return tv_tensors.Image(F.horizontal_flip(image.as_subclass(torch.Tensor))), target


def mask_boxes(masks: torch.Tensor) -> tv_tensors.BoundingBoxes:
    """The XYXY boxes of bool ``[P, H, W]`` masks in continuous pixel coordinates:
    ``[xmin, ymin, xmax + 1, ymax + 1]`` over each mask's pixels (masks must be non-empty)."""
    masks = masks.as_subclass(torch.Tensor)
    boxes = masks_to_boxes(masks).to(torch.float32) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    return tv_tensors.BoundingBoxes(
        boxes.reshape(-1, 4),
        format=tv_tensors.BoundingBoxFormat.XYXY,
        canvas_size=tuple(masks.shape[-2:]),
    )


class InstanceTrainTransforms:
    """MaskLab's training augmentation as a callable ``(image, target) -> (image, target)``:
    random rescale in ``scale_range``, a random ``crop_size`` square (the image placed at random
    in it when smaller; padding is 0 after normalisation, i.e. the mean colour, and False in
    masks), left-right flip with probability 0.5, and normalisation to a float32 image.

    Instances whose mask is empty after the crop are dropped from every per-instance field
    (:data:`INSTANCE_KEYS`); ``boxes`` are recomputed from the masks (:func:`mask_boxes`), so box
    and mask always agree. ``area`` is scaled with the image (not cut by the crop); other keys
    pass through. Randomness comes from torch's global RNG.
    """

    def __init__(
        self,
        crop_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
    ) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"need 0 < scale_range[0] <= scale_range[1], got {scale_range}")
        self.crop_size, self.scale_range, self.hflip = crop_size, tuple(scale_range), hflip
        self.mean, self.std = list(mean), list(std)

    def __call__(
        self, image: torch.Tensor, target: dict[str, Any]
    ) -> tuple[tv_tensors.Image, dict[str, Any]]:
        target = dict(target)
        h, w = image.shape[-2:]
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        size = [max(1, round(h * scale)), max(1, round(w * scale))]
        pixels = F.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)
        pixels = F.normalize(pixels, self.mean, self.std)
        masks = target["masks"].as_subclass(torch.Tensor).bool()
        if size != [h, w]:
            pixels = F.resize(pixels, size, antialias=True)
            masks = _resize_mask(masks, size)
            target["area"] = target["area"] * (size[0] * size[1] / (h * w))
        c = self.crop_size
        top, left = (self._offset(n) for n in size)
        pixels = F.crop(pixels, top, left, c, c)
        masks = F.crop(masks, top, left, c, c)
        keep = masks.flatten(1).any(1)
        for key in INSTANCE_KEYS[1:]:
            target[key] = target[key][keep]
        target["masks"] = tv_tensors.Mask(masks[keep])
        target["boxes"] = mask_boxes(target["masks"])
        out = tv_tensors.Image(pixels)
        if self.hflip and float(torch.rand(())) < 0.5:
            out, target = instance_hflip(out, target)
        return out, target

    def _offset(self, length: int) -> int:
        """A random crop start along a side of ``length``: inside the image when it is longer
        than the crop, else negative (the image at a random place in the padded crop)."""
        slack = length - self.crop_size
        return int(torch.randint(min(0, slack), max(0, slack) + 1, ()))
