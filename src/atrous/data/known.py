"""Class names and colours for a model whose checkpoint does not carry them (a converted TF zoo
checkpoint): chosen by the number of classes of the data sets the zoo trains on, or read from a
names file."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .ade20k import ADE20K_CLASSES
from .cityscapes import CITYSCAPES_INFO
from .info import DatasetInfo
from .voc import VOC_CLASSES

KNOWN: dict[int, DatasetInfo] = {
    len(VOC_CLASSES): DatasetInfo(classes=VOC_CLASSES),
    CITYSCAPES_INFO.num_classes: CITYSCAPES_INFO,
    # The TF reference's ADE20K models predict 151 classes: 0 is "other" (ignored in training).
    len(ADE20K_CLASSES) + 1: DatasetInfo(classes=("other", *ADE20K_CLASSES)),
}


def known_classes(num_classes: int, names_file: str | Path | None = None) -> DatasetInfo:
    """The classes of ``names_file`` (one name a line), else VOC (21), Cityscapes (19) or
    ADE20K (151) by ``num_classes``, else ``class_0``, ``class_1``, ..."""
    if names_file is not None:
        path = Path(names_file)
        try:
            names = [n.strip() for n in path.read_text().splitlines() if n.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the class names ({err})") from None
        if len(names) != num_classes:
            raise ConfigError(f"{path}: {len(names)} class names for {num_classes} classes")
        return DatasetInfo(classes=tuple(names))
    if num_classes in KNOWN:
        return KNOWN[num_classes]
    return DatasetInfo(classes=tuple(f"class_{i}" for i in range(num_classes)))
