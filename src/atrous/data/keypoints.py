"""COCO person keypoints (``annotations/person_keypoints_{split}2017.json`` + ``{split}2017/``)
read into ``(image, target)`` items for PersonLab (Papandreou et al. 2018), and its training
augmentation.

Coordinates are COCO's continuous pixel coordinates: pixel ``(row i, column j)`` is the square
``[j, j+1) x [i, i+1)``, its centre ``(j + 0.5, i + 0.5)``. Resizing a ``W``-wide image to
``W'`` maps ``x -> x * W' / W`` (the image resized with half-pixel centres, the masks with
``nearest-exact``), cropping at ``left`` maps ``x -> x - left``, and a left-right flip of a
``W``-wide image maps ``x -> W - x`` and swaps left and right keypoints (``FLIP_PERMUTATION``).
Every annotation is checked when the file is read, so a bad one fails at once, naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..errors import DataError
from ._coco import COCOImages
from ._pairs import read_json
from .info import IGNORE_INDEX, DatasetInfo
from .palette import voc_colormap
from .person_keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS

_PALETTE = voc_colormap()
_PALETTE[1] = _PALETTE[15]  # person wears VOC's person colour
KEYPOINTS_INFO = DatasetInfo(classes=("background", "person"), palette=_PALETTE)
"""Background and person: PersonLab's semantic classes."""

_DOWNLOAD = (
    "download the COCO 2017 train/val annotations (annotations_trainval2017.zip from "
    "cocodataset.org) and unzip them into the data root"
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rle_total(counts: str) -> int | None:
    """Sum of the run lengths in a compressed COCO RLE string, None if it is malformed (each
    count: 5-bit groups + 48, 0x20 = more follows, 0x10 of the last = negative, from the third
    count on a difference to the count two back)."""
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos == len(counts):
                return None
            code = ord(counts[pos]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos, shift = pos + 1, shift + 5
            if not more and code & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
    return sum(runs)


def _check_segmentation(segm: Any, height: int, width: int) -> str | None:
    """What is wrong with a polygon list or RLE for a ``height x width`` image, None if it
    decodes."""
    if isinstance(segm, list):
        for k, poly in enumerate(segm):
            if not isinstance(poly, list) or not all(_number(v) for v in poly):
                return f"polygon {k} is not a list of numbers"
            if len(poly) % 2:
                return f"polygon {k} has an odd number of coordinates ({len(poly)})"
        return None
    if not isinstance(segm, dict) or "size" not in segm or "counts" not in segm:
        return "is neither a list of polygons nor an RLE {'size': [h, w], 'counts': ...}"
    if list(segm["size"]) != [height, width]:
        return f"RLE size {segm['size']!r} differs from the image's [{height}, {width}]"
    counts = segm["counts"]
    if isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts):
        total = sum(counts)
    elif isinstance(counts, str):
        total = _rle_total(counts)
        if total is None:
            return "RLE counts string is malformed"
    else:
        return "RLE counts is neither a list of run lengths nor a compressed string"
    if total != height * width:
        return f"RLE run lengths sum to {total}, not height x width = {height * width}"
    return None


def _json_records(data: Any, path: Path) -> tuple[list, list, list]:
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(
            f"{path}: not a COCO keypoints file (a JSON object with lists 'images', "
            "'annotations' and 'categories')"
        )
    return data["images"], data["annotations"], data["categories"]


def _check_annotation(ann: Any, number: int, path: Path, images: dict[int, dict]) -> None:
    """Raise a :class:`DataError` naming the file and the annotation if ``ann`` cannot be read."""
    where = f"{path}: annotations[{number}]"
    if not isinstance(ann, dict) or "image_id" not in ann:
        raise DataError(f"{where} has no image_id")
    where += f" (id {ann.get('id')!r}, image {ann['image_id']!r})"
    if ann["image_id"] not in images:
        raise DataError(f"{where}: image id {ann['image_id']!r} is not in 'images'")
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) != 3 * NUM_KEYPOINTS or not all(map(_number, kps)):
        found = f"{len(kps)} values" if isinstance(kps, list) else repr(kps)
        raise DataError(
            f"{where}: keypoints must be {3 * NUM_KEYPOINTS} numbers (x, y, v for each of the "
            f"{NUM_KEYPOINTS} COCO keypoints), found {found}"
        )
    bad = [v for v in kps[2::3] if v not in (0, 1, 2)]
    if bad:
        raise DataError(f"{where}: keypoint visibility {bad[0]!r} is not 0, 1 or 2")
    if "segmentation" not in ann:
        raise DataError(f"{where}: no segmentation")
    image = images[ann["image_id"]]
    problem = _check_segmentation(ann["segmentation"], image["height"], image["width"])
    if problem:
        raise DataError(f"{where}: segmentation {problem}")
    if not _number(ann.get("area", 0)):
        raise DataError(f"{where}: area {ann['area']!r} is not a number")


def _check_image(image: Any, number: int, path: Path) -> None:
    fields = ("id", "file_name", "height", "width")
    if not isinstance(image, dict) or any(k not in image for k in fields):
        raise DataError(f"{path}: images[{number}] needs {', '.join(fields)}")
    if not all(isinstance(image[k], int) and image[k] > 0 for k in ("height", "width")):
        raise DataError(
            f"{path}: images[{number}] height/width {image['height']!r}/{image['width']!r} "
            "are not positive integers"
        )


class COCOKeypoints(COCOImages):
    """COCO person keypoints: items ``(tv_tensors.Image uint8 [3,H,W], target)`` with target
    ``image_id`` (int), ``keypoints`` float32 [P,17,3] (x, y, visibility 0/1/2, pixels as in the
    file), ``masks`` bool [P,H,W], ``iscrowd`` bool [P], ``area`` float32 [P] (the file's) and
    ``ignore`` bool [H,W] (crowd people and people without labelled keypoints, i.e.
    ``num_keypoints`` 0: PersonLab leaves them out of its losses), passed through
    ``transforms(image, target)`` when given.

    Split ``train`` keeps the images with a person annotation; any other split (``val``) keeps
    every image, as evaluation counts detections on images without people (``keep_empty``
    overrides). ``samples[i]`` is ``(image path, annotation file)``.
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
        self.info = KEYPOINTS_INFO
        path = self.root / "annotations" / f"person_keypoints_{split}2017.json"
        self.annotation_file = path
        if not path.is_file():
            raise DataError(f"{path}: keypoint annotations not found; {_DOWNLOAD}")
        images, annotations, categories = _json_records(read_json(path, "COCO keypoints"), path)
        person = [
            c.get("id") for c in categories if isinstance(c, dict) and c.get("name") == "person"
        ]
        if not person:
            names = [c.get("name") for c in categories if isinstance(c, dict)]
            raise DataError(f"{path}: no 'person' category (categories: {names})")
        for number, image in enumerate(images):
            _check_image(image, number, path)
        by_id = {image["id"]: image for image in images}
        people: dict[int, list[dict]] = {}
        for number, ann in enumerate(annotations):
            if isinstance(ann, dict) and ann.get("category_id") != person[0]:
                continue
            _check_annotation(ann, number, path, by_id)
            people.setdefault(ann["image_id"], []).append(ann)
        self._keep(split, images, people, keep_empty, "images with a person annotation")

    def load(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        """Item ``index`` without transforms."""
        record, anns, image, masks = self._read(index)
        keypoints = torch.tensor([ann["keypoints"] for ann in anns], dtype=torch.float32).reshape(
            len(anns), NUM_KEYPOINTS, 3
        )
        iscrowd = torch.tensor([bool(ann.get("iscrowd", 0)) for ann in anns], dtype=torch.bool)
        unlabelled = (keypoints[..., 2] == 0).all(dim=1)  # num_keypoints == 0
        mask_tensor = torch.from_numpy(masks)
        ignore = (mask_tensor & (iscrowd | unlabelled)[:, None, None]).any(dim=0)
        target = {
            "image_id": int(record["id"]),
            "keypoints": keypoints,
            "masks": tv_tensors.Mask(mask_tensor),
            "iscrowd": iscrowd,
            "area": torch.tensor([float(ann.get("area", 0)) for ann in anns], dtype=torch.float32),
            "ignore": tv_tensors.Mask(ignore),
        }
        return image, target


def hflip(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mirror an item left-right: image, masks and ignore flipped, keypoint ``x -> W - x`` with
    left and right keypoints swapped; unlabelled (v = 0) keypoints stay (0, 0, 0)."""
    width = image.shape[-1]
    target = dict(target)
    kps = target["keypoints"].clone()
    kps[..., 0] = width - kps[..., 0]
    kps = kps[:, list(FLIP_PERMUTATION)]
    kps[kps[..., 2] == 0] = 0
    target["keypoints"] = kps
    for key in ("masks", "ignore"):
        target[key] = tv_tensors.Mask(F.horizontal_flip(target[key].as_subclass(torch.Tensor)))
    return tv_tensors.Image(F.horizontal_flip(image.as_subclass(torch.Tensor))), target


def _resize_mask(mask: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Nearest-exact (pixel centres) resize of a bool ``[..., H, W]`` mask."""
    out = F.resize(mask[None].to(torch.uint8), size, interpolation=InterpolationMode.NEAREST_EXACT)
    return out[0].bool()


class KeypointTrainTransforms:
    """PersonLab's training augmentation as a callable ``(image, target) -> (image, target)``:
    random rescale in ``scale_range``, a random ``crop_size`` square (the image placed at random
    in it when smaller; padding is 0 after normalisation, i.e. the mean colour, and False in
    masks), left-right flip with probability 0.5, and normalisation to a float32 image.

    Keypoints follow the module's coordinate convention and stay float; ones that leave the
    crop keep their coordinates and visibility, unlabelled ones (v = 0) are (0, 0, 0). ``area``
    is scaled with the image; ``P`` does not change. Randomness comes from torch's global RNG.
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
        kps = target["keypoints"].clone()
        masks = target["masks"].as_subclass(torch.Tensor)
        ignore = target["ignore"].as_subclass(torch.Tensor)
        if size != [h, w]:
            pixels = F.resize(pixels, size, antialias=True)
            masks, ignore = _resize_mask(masks, size), _resize_mask(ignore, size)
            kps[..., 0] *= size[1] / w
            kps[..., 1] *= size[0] / h
            target["area"] = target["area"] * (size[0] * size[1] / (h * w))
        c = self.crop_size
        top, left = (self._offset(n) for n in size)
        pixels = F.crop(pixels, top, left, c, c)
        target["masks"] = tv_tensors.Mask(F.crop(masks, top, left, c, c))
        target["ignore"] = tv_tensors.Mask(F.crop(ignore[None], top, left, c, c)[0])
        kps[..., 0] -= left
        kps[..., 1] -= top
        kps[kps[..., 2] == 0] = 0
        target["keypoints"] = kps
        out = tv_tensors.Image(pixels)
        if self.hflip and float(torch.rand(())) < 0.5:
            out, target = hflip(out, target)
        return out, target

    def _offset(self, length: int) -> int:
        """A random crop start along a side of ``length``: inside the image when it is longer
        than the crop, else negative (the image at a random place in the padded crop)."""
        slack = length - self.crop_size
        return int(torch.randint(min(0, slack), max(0, slack) + 1, ()))


def person_semantic(target: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``[H, W]`` person/background mask of a target: 1 on people, 255 on crowd (where no
    person is), else 0 (what the person mIoU scores and ``atrous data check`` counts)."""
    masks, crowd = target["masks"].bool(), target["iscrowd"].bool()
    h, w = masks.shape[-2:]
    semantic = torch.zeros(h, w, dtype=torch.int64)
    if masks.shape[0]:
        semantic[masks[~crowd].any(0)] = 1
        semantic[masks[crowd].any(0) & (semantic == 0)] = IGNORE_INDEX
    return semantic
