"""PASCAL VOC 2012 segmentation, with the SBD masks that make DeepLab's ``train_aug`` set.

Layout, as the archives unpack (``root`` may also be ``VOCdevkit/VOC2012`` itself)::

    root/
      VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png          palette PNGs: index = class id, 255 = object borders
        ImageSets/Segmentation/{train,val,trainval}.txt
      benchmark_RELEASE/dataset/            SBD (Hariharan et al. 2011), only for train_aug
        img/<id>.jpg
        cls/<id>.mat                        struct GTcls, field Segmentation: uint8 class ids
        train.txt, val.txt

``train_aug`` is SBD train + SBD val + VOC train minus VOC val: 10,582 images on the real data,
the training set of DeepLab v1-v3+ (v1 paper, section 5 "Dataset"). Where VOC has a mask for an
id, its PNG (with the border 255s) is used; otherwise the SBD ``.mat``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.io import loadmat
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import PairedDataset, read_mask
from .info import DatasetInfo
from .palette import voc_colormap

__all__ = ["VOC_CLASSES", "VOC_INFO", "VOCSegmentation", "read_sbd_mask", "read_voc_label"]

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""Background + the 20 VOC object classes in the devkit's order (class id = index)."""

VOC_INFO = DatasetInfo(
    classes=VOC_CLASSES, palette=voc_colormap(), splits=("train", "val", "trainval", "train_aug")
)

_VOC_SPLITS = ("train", "val", "trainval")
_SBD_NAME = "benchmark_RELEASE"


# --- readers -------------------------------------------------------------------------------


def read_sbd_mask(path: str | Path) -> tv_tensors.Mask:
    """Read ``GTcls.Segmentation`` from an SBD ``cls/<id>.mat`` file as an int64 ``HxW`` mask."""
    try:
        mat = loadmat(path, struct_as_record=False, squeeze_me=False, variable_names=["GTcls"])
    except Exception as err:  # scipy raises anything from IndexError to MatReadError on bad bytes
        raise DataError(f"{path}: unreadable .mat file ({type(err).__name__}: {err})") from None
    if "GTcls" not in mat:
        raise DataError(
            f"{path}: no 'GTcls' variable; expected an SBD cls/*.mat file (struct GTcls with a "
            "Segmentation field)"
        )
    struct = np.asarray(mat["GTcls"]).reshape(-1)
    segmentation = getattr(struct[0], "Segmentation", None) if struct.size else None
    if segmentation is None:
        raise DataError(f"{path}: struct GTcls has no 'Segmentation' field")
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or not np.issubdtype(segmentation.dtype, np.integer):
        raise DataError(
            f"{path}: GTcls.Segmentation is {segmentation.dtype} with shape "
            f"{segmentation.shape}; expected an HxW array of integer class ids"
        )
    return tv_tensors.Mask(torch.from_numpy(segmentation.astype(np.int64)))


def read_voc_label(path: Path) -> tv_tensors.Mask:
    """A VOC PNG or an SBD ``.mat``, by suffix (``train_aug`` mixes both)."""
    return read_sbd_mask(path) if Path(path).suffix.lower() == ".mat" else read_mask(path)


# --- finding the files ---------------------------------------------------------------------


def _voc_dir(root: Path) -> Path:
    """``VOCdevkit/VOC2012`` under ``root``, or ``root`` itself if it is that folder."""
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if candidate.is_dir():
            return candidate
    if any((root / name).exists() for name in ("JPEGImages", "SegmentationClass", "ImageSets")):
        return root
    return root / "VOCdevkit" / "VOC2012"


def _sbd_dir(root: Path, voc: Path, sbd_root: str | Path | None) -> Path:
    """The SBD ``dataset/`` folder: from ``sbd_root`` if given, else beside or under ``root``."""
    if sbd_root is not None:
        base = Path(sbd_root)
        tried = [base / _SBD_NAME / "dataset", base / "dataset", base]
    else:
        bases = dict.fromkeys([root / _SBD_NAME, voc.parent.parent / _SBD_NAME])
        tried = [base / "dataset" for base in bases]
    for candidate in tried:
        if (candidate / "cls").is_dir() and (candidate / "img").is_dir():
            return candidate
    looked = ", ".join(str(p) for p in tried)
    raise DataError(
        f"split 'train_aug' needs the SBD masks (benchmark_RELEASE/dataset/{{img,cls}}); "
        f"not found in {looked}. Unpack benchmark.tgz beside VOCdevkit or pass sbd_root"
    )


def _read_ids(split_file: Path, split: str) -> list[str]:
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file for split {split!r} not found")
    try:
        lines = split_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{split_file}: unreadable split file ({err})") from None
    return list(dict.fromkeys(line.split()[0] for line in lines if line.strip()))


def _stems(folder: Path, suffix: str) -> set[str]:
    """File stems in ``folder`` with ``suffix``; one directory listing, not a stat per id."""
    if not folder.is_dir():
        return set()
    return {name[: -len(suffix)] for name in os.listdir(folder) if name.endswith(suffix)}


def _check_images(ids: Iterable[str], images: set[str], split_file: Path, folder: Path) -> None:
    absent = [i for i in ids if i not in images]
    if absent:
        raise DataError(
            f"{split_file}: {len(absent)} listed image(s) not found in {folder} "
            f"(first: {absent[0]!r})"
        )


# --- the dataset ---------------------------------------------------------------------------


class VOCSegmentation(PairedDataset):
    """PASCAL VOC 2012 (splits ``train``, ``val``, ``trainval``) and ``train_aug`` with SBD.

    ``root`` holds ``VOCdevkit/`` (or is ``VOCdevkit/VOC2012``); ``sbd_root`` holds
    ``benchmark_RELEASE`` (default: looked for under ``root`` and beside ``VOCdevkit``), and is
    only needed for ``train_aug``. Ids listed without an image are an error naming the split
    file; images without a mask go to ``missing`` (an error unless ``strict=False``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
        sbd_root: str | Path | None = None,
    ) -> None:
        if split not in VOC_INFO.splits:
            raise DataError(
                f"unknown PASCAL VOC split {split!r}; choose from {', '.join(VOC_INFO.splits)}"
            )
        self.root = Path(root)
        self.split = split
        self.voc_dir = _voc_dir(self.root)
        jpeg_dir = self.voc_dir / "JPEGImages"
        if not jpeg_dir.is_dir():
            raise DataError(
                f"{jpeg_dir}: folder not found; expected PASCAL VOC 2012 as unpacked "
                "(root/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation})"
            )
        self.sbd_dir: Path | None = None
        if split == "train_aug":
            self.sbd_dir = _sbd_dir(self.root, self.voc_dir, sbd_root)
            self.ids, samples, missing = self._train_aug()
        else:
            self.ids, samples, missing = self._voc_split(split)
        super().__init__(
            samples,
            VOC_INFO,
            transforms=transforms,
            read_label=read_voc_label,
            missing=missing,
            strict=strict,
            where=self.voc_dir,
        )

    def _voc_split(self, split: str) -> tuple[list[str], list[tuple[Path, Path]], list[str]]:
        jpeg_dir, mask_dir = self.voc_dir / "JPEGImages", self.voc_dir / "SegmentationClass"
        split_file = self.voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        ids = _read_ids(split_file, split)
        _check_images(ids, _stems(jpeg_dir, ".jpg"), split_file, jpeg_dir)
        masks = _stems(mask_dir, ".png")
        samples, missing = [], []
        for i in ids:
            image, mask = jpeg_dir / f"{i}.jpg", mask_dir / f"{i}.png"
            if i in masks:
                samples.append((image, mask))
            else:
                missing.append(f"{image}: image without a mask (expected {mask})")
        return ids, samples, missing

    def _train_aug(self) -> tuple[list[str], list[tuple[Path, Path]], list[str]]:
        assert self.sbd_dir is not None
        voc_sets = self.voc_dir / "ImageSets" / "Segmentation"
        jpeg_dir, mask_dir = self.voc_dir / "JPEGImages", self.voc_dir / "SegmentationClass"
        img_dir, cls_dir = self.sbd_dir / "img", self.sbd_dir / "cls"
        voc_images, voc_masks = _stems(jpeg_dir, ".jpg"), _stems(mask_dir, ".png")
        sbd_images, sbd_masks = _stems(img_dir, ".jpg"), _stems(cls_dir, ".mat")

        voc_val = set(_read_ids(voc_sets / "val.txt", "val"))
        listed: dict[str, Path] = {}  # id -> the split file that first listed it
        for split_file, image_dir, images in (
            (self.sbd_dir / "train.txt", img_dir, sbd_images),
            (self.sbd_dir / "val.txt", img_dir, sbd_images),
            (voc_sets / "train.txt", jpeg_dir, voc_images),
        ):
            ids = _read_ids(split_file, split_file.stem)
            _check_images(ids, images | voc_images, split_file, image_dir)
            for i in ids:
                listed.setdefault(i, split_file)
        ids = sorted(i for i in listed if i not in voc_val)

        samples, missing = [], []
        for i in ids:
            if i in voc_masks:  # the VOC PNG, with its 255 borders, over SBD's label
                image = jpeg_dir / f"{i}.jpg" if i in voc_images else img_dir / f"{i}.jpg"
                samples.append((image, mask_dir / f"{i}.png"))
                continue
            image = img_dir / f"{i}.jpg" if i in sbd_images else jpeg_dir / f"{i}.jpg"
            if i in sbd_masks:
                samples.append((image, cls_dir / f"{i}.mat"))
            else:
                missing.append(
                    f"{image}: image without a mask (listed in {listed[i]}; expected "
                    f"{mask_dir / f'{i}.png'} or {cls_dir / f'{i}.mat'})"
                )
        return ids, samples, missing
