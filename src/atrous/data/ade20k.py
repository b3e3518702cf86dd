"""ADE20K as released for the MIT Scene Parsing benchmark (SceneParsing, 150 classes).

Layout (``root`` may hold ``ADEChallengeData2016/`` or be that folder)::

    root/ADEChallengeData2016/
      images/training/ADE_train_00000001.jpg      20210 images
      images/validation/ADE_val_00000001.jpg      2000 images
      annotations/training/ADE_train_00000001.png  8-bit class ids: 0 = "other", 1..150
      annotations/validation/ADE_val_00000001.png

Splits ``"train"`` and ``"val"`` read ``training/`` and ``validation/``. Raw id 0 ("other")
becomes the ignore label 255 and ids 1..150 become train ids 0..149, so the model has 150 logits;
the TF DeepLab reference instead keeps the raw ids with ``ignore_label=0`` (151 logits, one never
trained). A raw id above 150 is an error naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._pairs import IMAGE_SUFFIXES, PairedDataset, pair_files
from .info import IGNORE_INDEX, DatasetInfo
from .palette import voc_colormap

__all__ = ["ADE20K_CLASSES", "ADE20K_INFO", "ADE20K_LABEL_MAP", "ADE20KSegmentation"]

ADE20K_CLASSES = (
    *("wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane"),
    *("grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant"),
    *("curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror"),
    *("rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp"),
    *("bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers"),
    *("counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path"),
    *("stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river"),
    *("bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench"),
    *("countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar"),
    *("arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier"),
    *("awning", "streetlight", "booth", "television receiver", "airplane", "dirt track"),
    *("apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet"),
    *("poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer"),
    *("plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag"),
    *("minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave"),
    *("pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood"),
    *("sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate"),
    *("monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag"),
)
"""The 150 classes in the order of the benchmark's ``objectInfo150`` (train id = raw id - 1),
each named by the first name of its entry there."""

ADE20K_SPLITS = {"train": "training", "val": "validation"}
"""Split name -> the folder under ``images/`` and ``annotations/``."""


def _ade20k_palette() -> np.ndarray:
    """Train id ``k`` gets the VOC colormap colour of raw id ``k + 1``, so a raw annotation PNG
    viewed with the VOC palette and a predicted train-id mask coloured here look the same; the
    ignore label 255 keeps its VOC colour. Read-only, since the info record is frozen."""
    palette = voc_colormap()
    palette[: len(ADE20K_CLASSES)] = voc_colormap(len(ADE20K_CLASSES) + 1)[1:]
    palette.flags.writeable = False
    return palette


ADE20K_INFO = DatasetInfo(
    classes=ADE20K_CLASSES, palette=_ade20k_palette(), splits=tuple(ADE20K_SPLITS)
)

ADE20K_LABEL_MAP = torch.cat([torch.tensor([IGNORE_INDEX]), torch.arange(len(ADE20K_CLASSES))]).to(
    torch.int64
)
"""Raw id -> train id: 0 ("other") -> 255, 1..150 -> 0..149. Only 151 entries long, so a raw
value above 150 is reported by :func:`~atrous.data.map_labels` with the file's name."""


def _find_data_root(root: Path) -> Path:
    """``root/ADEChallengeData2016`` if it exists, else ``root`` itself if it has the layout."""
    nested = root / "ADEChallengeData2016"
    if nested.is_dir():
        return nested
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return root
    raise DataError(
        f"{root}: no ADEChallengeData2016/ folder (and no images/ + annotations/ in it); "
        "pass the folder the SceneParsing archive ADEChallengeData2016.zip was unpacked into"
    )


class ADE20KSegmentation(PairedDataset):
    """ADE20K SceneParsing (image, mask) pairs; see the module docstring for the layout.

    Masks come out with train ids 0..149 and 255 for "other". ``strict=False`` lists images
    without an annotation in ``missing`` instead of raising.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transforms: Callable[..., Any] | None = None,
        strict: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        if split not in ADE20K_SPLITS:
            raise DataError(
                f"{self.root}: unknown ADE20K split {split!r}; expected one of "
                f"{', '.join(map(repr, ADE20K_SPLITS))}"
            )
        data_root = _find_data_root(self.root)
        folder = ADE20K_SPLITS[split]
        image_dir = data_root / "images" / folder
        mask_dir = data_root / "annotations" / folder
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: image folder for split {split!r} not found")
        images = [p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"{image_dir}: empty data folder (no .jpg or .png images)")
        samples, missing = pair_files(
            ((image, mask_dir / f"{image.stem}.png") for image in images), "an annotation"
        )
        super().__init__(
            samples,
            ADE20K_INFO,
            transforms=transforms,
            label_map=ADE20K_LABEL_MAP,
            missing=missing,
            strict=strict,
            where=image_dir,
        )
