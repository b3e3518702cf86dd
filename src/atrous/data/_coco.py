"""What the COCO-format readers (:mod:`.keypoints`, :mod:`.instances`) share: decoding a
``segmentation``, the kept images of a split as pickled per-image blobs, and reading an image
with its annotations' masks."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import InfoDataset, read_image


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or compressed RLE) as a bool ``HxW`` array;
    polygons of fewer than 3 points cover nothing (COCO has a few)."""
    if isinstance(segm, list):
        polys = [[float(v) for v in p] for p in segm if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(polys, height, width))
    elif isinstance(segm["counts"], list):
        rle = coco_mask.frPyObjects(segm, height, width)
    else:
        rle = segm
    with warnings.catch_warnings():  # pycocotools' decoder under NumPy 2 warns on each call
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


class COCOImages(InfoDataset):
    """What the COCO readers share: the kept images of a split, one pickled ``(image record,
    annotations)`` blob per image, and reading an image with its annotations' masks decoded.
    Subclasses read and check the annotation file, then call :meth:`_keep`."""

    root: Path
    annotation_file: Path

    def _keep(
        self,
        split: str,
        images: list[dict],
        annotations: dict[int, list[dict]],
        keep_empty: bool | None,
        which: str,
    ) -> None:
        """Keep the images with annotations (``train``) or all of them (other splits, as
        evaluation counts detections on empty images; ``keep_empty`` overrides); refuse a
        missing image folder or image. ``which`` names the annotated images in the error."""
        path = self.annotation_file
        keep_empty = split != "train" if keep_empty is None else keep_empty
        kept = [image for image in images if keep_empty or image["id"] in annotations]
        if not kept:
            raise DataError(f"{path}: no {'images' if keep_empty else which} (empty dataset)")
        folder = self.root / f"{split}2017"
        if not folder.is_dir():
            raise DataError(
                f"{folder}: image folder not found; download the COCO 2017 {split} images "
                f"({split}2017.zip from cocodataset.org) and unzip them into the data root"
            )
        self.samples = [(folder / str(image["file_name"]), path) for image in kept]
        # One pickled blob per image: DataLoader workers touch no Python object per annotation
        # (their reference counts would copy the whole JSON into every worker).
        self.items = [
            pickle.dumps(
                (image, annotations.get(image["id"], [])), protocol=pickle.HIGHEST_PROTOCOL
            )
            for image in kept
        ]
        for image_path, _ in self.samples:
            if not image_path.is_file():
                raise DataError(f"{image_path}: image not found (listed in {path})")

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> tuple[dict, list[dict], tv_tensors.Image, np.ndarray]:
        """Image ``index``'s record, annotations, image (its size checked against the file's)
        and the annotations' masks, bool ``[P, H, W]``."""
        record, anns = pickle.loads(self.items[index])
        image_path = self.samples[index][0]
        image = read_image(image_path)
        h, w = record["height"], record["width"]
        if tuple(image.shape[-2:]) != (h, w):
            raise DataError(
                f"{image_path}: image is {image.shape[-2]}x{image.shape[-1]} (HxW, EXIF "
                f"orientation applied) but {self.annotation_file} says {h}x{w}"
            )
        masks = np.zeros((len(anns), h, w), dtype=bool)
        for k, ann in enumerate(anns):
            try:
                masks[k] = decode_segmentation(ann["segmentation"], h, w)
            except (ValueError, TypeError) as err:
                raise DataError(
                    f"{self.annotation_file}: annotation {ann.get('id')!r} (image "
                    f"{record['id']!r}): segmentation does not decode ({err})"
                ) from None
        return record, anns, image, masks

    def __getitem__(self, index: int) -> Any:
        image, target = self.load(index)
        return self.transforms(image, target) if self.transforms is not None else (image, target)
