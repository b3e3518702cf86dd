"""The evaluation loop: a predictor over a dataset into a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data import build_dataset
from ..errors import DataError
from ..inference import Predictor, resolve_device
from ..metrics import ConfusionMatrix, TrimapIoU


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    num_classes: int,
    *,
    progress: bool = True,
    trimap: TrimapIoU | None = None,
    per_image: list[dict[str, Any]] | None = None,
) -> ConfusionMatrix:
    """Predict every ``(image, mask)`` item of ``dataset`` (uint8 image, no transforms) at its
    own size, the way ``predictor`` is set up (scales, flip, sliding window), and accumulate
    the confusion matrix. ``trimap`` also accumulates boundary-band IoU; ``per_image`` gets one
    ``{"image", "miou", "pixel_accuracy"}`` record per image (to find the worst ones)."""
    matrix = ConfusionMatrix(num_classes)
    samples = getattr(dataset, "samples", None)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not progress):  # type: ignore[arg-type]
        image, mask = dataset[index]
        pred = predictor.logits(image).argmax(0).cpu()
        matrix.update(pred, mask)
        if trimap is not None:
            trimap.update(pred, mask)
        if per_image is not None:
            single = ConfusionMatrix(num_classes)
            single.update(pred, mask)
            scores = single.compute()
            name = str(samples[index][0]) if samples is not None else str(index)
            per_image.append(
                {"image": name, "miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]}
            )
    return matrix


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    *,
    split: str | None = "val",
    dataset: str = "folder",
    device: str = "auto",
    progress: bool = True,
    trimap_widths: Sequence[int] = (),
    per_image: bool = False,
    **predictor_options: Any,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Evaluate a checkpoint on ``dataset`` (a name in ``atrous.data.DATASETS``) under
    ``data_root``; returns the metrics and the class names.

    ``predictor_options`` (scales, flip, output_stride, crop, stride) set up the
    :class:`Predictor`. The result holds ``ConfusionMatrix.compute()``'s keys, the
    ``confusion_matrix`` itself, ``trimap`` (band mIoU per width) when ``trimap_widths`` is
    given, and ``per_image`` records, worst first, when asked.
    """
    predictor = Predictor.from_checkpoint(
        checkpoint, device=resolve_device(device), **predictor_options
    )
    classes = predictor.info.classes if predictor.info else ()
    options = {"num_classes": len(classes)} if dataset == "folder" else {}
    data = build_dataset(dataset, data_root, split, **options)
    if data.num_classes != len(classes):
        raise DataError(
            f"{data_root}: {dataset} has {data.num_classes} classes, the checkpoint "
            f"{checkpoint} predicts {len(classes)}"
        )
    trimap = TrimapIoU(len(classes), widths=tuple(trimap_widths)) if trimap_widths else None
    images: list[dict[str, Any]] | None = [] if per_image else None
    matrix = evaluate(
        predictor, data, len(classes), progress=progress, trimap=trimap, per_image=images
    )
    result = {**matrix.compute(), "confusion_matrix": matrix.matrix.tolist()}
    if trimap is not None:
        result["trimap"] = {str(w): m for w, m in trimap.compute()["miou"].items()}
    if images is not None:
        result["per_image"] = sorted(images, key=lambda r: (r["miou"] != r["miou"], r["miou"]))
    return result, classes
