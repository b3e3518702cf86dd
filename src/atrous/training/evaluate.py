"""The evaluation loop: a predictor over a dataset into a confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data import build_dataset
from ..errors import DataError
from ..evaluation import crf_grid_search
from ..inference import Predictor, comparison_grid, resolve_device
from ..inference.predictor import Refiner
from ..metrics import ConfusionMatrix, TrimapIoU


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    num_classes: int,
    *,
    progress: bool = True,
    trimap: TrimapIoU | None = None,
    per_image: list[dict[str, Any]] | None = None,
    refined: Mapping[str, RefinedScores] | None = None,
    examples: list[tuple[np.ndarray, ...]] | None = None,
    max_examples: int = 6,
) -> ConfusionMatrix:
    """Predict every ``(image, mask)`` item of ``dataset`` (uint8 image, no transforms) at its
    own size, the way ``predictor`` is set up (scales, flip, sliding window), and accumulate
    the confusion matrix. ``trimap`` also accumulates boundary-band IoU; ``per_image`` gets one
    ``{"image", "miou", "pixel_accuracy"}`` record per image (to find the worst ones).
    ``refined`` scores refinements (CRF, domain transform) of the same predictions: each entry
    accumulates what its refiner makes of every image's probabilities. ``examples`` collects
    ``(image, mask, prediction, *refined predictions)`` arrays for the first ``max_examples``
    images, to draw with :func:`atrous.inference.comparison_grid`."""
    matrix = ConfusionMatrix(num_classes)
    samples = getattr(dataset, "samples", None)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not progress):  # type: ignore[arg-type]
        image, mask = dataset[index]
        scores = predictor.logits(image)
        pred = scores.argmax(0).cpu()
        matrix.update(pred, mask)
        if trimap is not None:
            trimap.update(pred, mask)
        if per_image is not None:
            single = ConfusionMatrix(num_classes)
            single.update(pred, mask)
            result = single.compute()
            name = str(samples[index][0]) if samples is not None else str(index)
            per_image.append(
                {"image": name, "miou": result["miou"], "pixel_accuracy": result["pixel_accuracy"]}
            )
        preds = [pred]
        if refined:
            probs = scores.float().softmax(0)
            image_on_device = image.to(scores.device)
        for entry in (refined or {}).values():
            start = time.perf_counter()
            with torch.inference_mode():
                refined_probs = entry.refiner(image_on_device, probs)
            entry.seconds += time.perf_counter() - start
            preds.append(refined_probs.argmax(0).cpu())
            entry.update(preds[-1], mask)
        if examples is not None and len(examples) < max_examples:
            picture = image.permute(1, 2, 0).numpy()
            examples.append((picture, np.asarray(mask), *(p.numpy() for p in preds)))
    return matrix


@dataclass
class RefinedScores:
    """Metrics of one refinement: its ``refiner`` (:data:`atrous.inference.Refiner`) and the
    accumulators its labels go into."""

    refiner: Refiner
    matrix: ConfusionMatrix
    trimap: TrimapIoU | None = None
    seconds: float = 0.0  # total time spent refining

    def update(self, pred: torch.Tensor, mask: torch.Tensor) -> None:
        self.matrix.update(pred, mask)
        if self.trimap is not None:
            self.trimap.update(pred, mask)

    def compute(self) -> dict[str, Any]:
        return _metrics(self.matrix, self.trimap)


def _metrics(matrix: ConfusionMatrix, trimap: TrimapIoU | None) -> dict[str, Any]:
    """``matrix.compute()``, plus band mIoU by width under ``trimap`` when there is one."""
    result = matrix.compute()
    if trimap is not None:
        result["trimap"] = {str(w): m for w, m in trimap.compute()["miou"].items()}
    return result


def _checkpoint_and_data(
    checkpoint: str | Path,
    data_root: str | Path,
    split: str | None,
    dataset: str,
    device: str,
    predictor_options: dict[str, Any],
) -> tuple[Predictor, Any, tuple[str, ...]]:
    """A predictor for the checkpoint and the split to score it on, checked to agree on the
    number of classes."""
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
    return predictor, data, classes


def search_crf_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    *,
    split: str | None = "val",
    dataset: str = "folder",
    images: int = 100,
    device: str = "auto",
    backend: str = "auto",
    grid: Mapping[str, Sequence[float]] | None = None,
    progress: bool = True,
    **predictor_options: Any,
) -> dict[str, Any]:
    """The DeepLab v1/v2 CRF cross-validation: predict the first ``images`` of ``split`` once
    and score every combination of ``grid`` (default: the papers', ``atrous.refine.GRID``).
    Returns ``{"results": [{params..., "miou"}, ...] best first, "miou_without_crf": ...}``."""
    predictor, data, classes = _checkpoint_and_data(
        checkpoint, data_root, split, dataset, device, predictor_options
    )
    plain = ConfusionMatrix(len(classes))

    def samples() -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for index in range(min(images, len(data))):
            image, mask = data[index]
            probs = predictor.predict_proba(image)
            plain.update(probs.argmax(0), mask)
            yield image, probs, mask

    results = crf_grid_search(
        samples(),
        len(classes),
        grid=dict(grid) if grid is not None else None,
        backend=backend,
        progress=progress,
    )
    return {"results": results, "miou_without_crf": plain.compute()["miou"]}


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
    refiners: Mapping[str, Refiner] | None = None,
    picture: str | Path | None = None,
    **predictor_options: Any,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Evaluate a checkpoint on ``dataset`` (a name in ``atrous.data.DATASETS``) under
    ``data_root``; returns the metrics and the class names.

    ``predictor_options`` (scales, flip, output_stride, crop, stride) set up the
    :class:`Predictor`. The result holds ``ConfusionMatrix.compute()``'s keys, the
    ``confusion_matrix`` itself, ``trimap`` (band mIoU per width) when ``trimap_widths`` is
    given, ``per_image`` records, worst first, when asked, and under ``refined`` the same
    metrics (and ``seconds_per_image``) for each of ``refiners`` applied to the predictions.
    ``picture`` writes a PNG of the first images: image | ground truth | prediction | each
    refinement.
    """
    predictor, data, classes = _checkpoint_and_data(
        checkpoint, data_root, split, dataset, device, predictor_options
    )
    trimap = TrimapIoU(len(classes), widths=tuple(trimap_widths)) if trimap_widths else None
    images: list[dict[str, Any]] | None = [] if per_image else None
    refined = {
        name: RefinedScores(
            refiner,
            ConfusionMatrix(len(classes)),
            TrimapIoU(len(classes), widths=tuple(trimap_widths)) if trimap_widths else None,
        )
        for name, refiner in (refiners or {}).items()
    }
    examples: list[tuple[np.ndarray, ...]] | None = [] if picture is not None else None
    matrix = evaluate(
        predictor,
        data,
        len(classes),
        progress=progress,
        trimap=trimap,
        per_image=images,
        refined=refined,
        examples=examples,
    )
    if picture is not None and examples:
        palette = predictor.info.palette if predictor.info else None
        Image.fromarray(comparison_grid(examples, palette)).save(picture)
    result = {**_metrics(matrix, trimap), "confusion_matrix": matrix.matrix.tolist()}
    if refined:
        result["refined"] = {
            name: {**entry.compute(), "seconds_per_image": entry.seconds / max(len(data), 1)}
            for name, entry in refined.items()
        }
    if images is not None:
        result["per_image"] = sorted(images, key=lambda r: (r["miou"] != r["miou"], r["miou"]))
    return result, classes
