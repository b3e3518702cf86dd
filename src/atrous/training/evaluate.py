"""The evaluation loop: a predictor over a dataset into a confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data import build_dataset
from ..errors import DataError
from ..inference import Predictor, resolve_device
from ..metrics import ConfusionMatrix


def evaluate(
    predictor: Predictor, dataset: Dataset, num_classes: int, *, progress: bool = True
) -> ConfusionMatrix:
    """Predict every ``(image, mask)`` item of ``dataset`` (uint8 image, no transforms) whole-image
    at its own size and accumulate the confusion matrix."""
    matrix = ConfusionMatrix(num_classes)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not progress):  # type: ignore[arg-type]
        image, mask = dataset[index]
        matrix.update(predictor.logits(image).argmax(0).cpu(), mask)
    return matrix


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    *,
    split: str | None = "val",
    dataset: str = "folder",
    device: str = "auto",
    progress: bool = True,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Evaluate a checkpoint on ``dataset`` (a name in ``atrous.data.DATASETS``) under
    ``data_root``; returns the metrics and the class names."""
    predictor = Predictor.from_checkpoint(checkpoint, device=resolve_device(device))
    classes = predictor.info.classes if predictor.info else ()
    options = {"num_classes": len(classes)} if dataset == "folder" else {}
    data = build_dataset(dataset, data_root, split, **options)
    if data.num_classes != len(classes):
        raise DataError(
            f"{data_root}: {dataset} has {data.num_classes} classes, the checkpoint "
            f"{checkpoint} predicts {len(classes)}"
        )
    result = evaluate(predictor, data, len(classes), progress=progress).compute()
    return result, classes
