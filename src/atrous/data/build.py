"""One entry point for every dataset: ``build_dataset(name, root, split)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..errors import DataError
from .ade20k import ADE20KSegmentation
from .cityscapes import CityscapesSegmentation
from .context import PascalContextSegmentation
from .folder import SegmentationFolder
from .instances import COCOInstances
from .keypoints import COCOKeypoints
from .mirflickr import MIRFlickr
from .panoptic import CityscapesPanoptic, COCOPanoptic, PanopticFolder
from .person_part import cow_part, horse_part, person_part
from .voc import VOCSegmentation
from .vqa import COCOQA, DAQUAR, VQAJSON

DATASETS: dict[str, Callable[..., Dataset]] = {
    "folder": SegmentationFolder,
    "panoptic_folder": PanopticFolder,
    "cityscapes_panoptic": CityscapesPanoptic,
    "coco_panoptic": COCOPanoptic,
    "coco_keypoints": COCOKeypoints,
    "coco_instances": COCOInstances,
    "voc": VOCSegmentation,
    "cityscapes": CityscapesSegmentation,
    "ade20k": ADE20KSegmentation,
    "context": PascalContextSegmentation,
    "person_part": person_part,
    "horse_part": horse_part,
    "cow_part": cow_part,
    "mirflickr": MIRFlickr,
    "coco_qa": COCOQA,
    "vqa": VQAJSON,
    "daquar": DAQUAR,
}
"""Dataset names for configs and the CLI."""


def build_dataset(
    name: str,
    root: str | Path,
    split: str | None = "train",
    transforms: Callable[..., Any] | None = None,
    **options: Any,
) -> Dataset:
    """The dataset ``name`` in its official on-disk layout under ``root``.

    Items, without transforms, are ``(tv_tensors.Image uint8 3xHxW, tv_tensors.Mask int64 HxW)``
    of train ids with 255 = ignore; ``dataset.classes`` and ``dataset.palette`` name and colour
    the classes. ``options`` go to the dataset class (e.g. ``num_classes`` for ``folder``,
    ``strict=False`` to collect images without masks instead of raising).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    try:
        return DATASETS[name](root, split, transforms=transforms, **options)
    except TypeError as err:
        raise DataError(f"dataset {name!r}: {err}") from None
