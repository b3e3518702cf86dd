"""What an evaluation collects, one accumulator per kind: each takes every image's
:class:`Prediction` in ``update`` and gives its numbers (or picture rows) in ``compute``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ..inference.predictor import Refiner
from ..metrics import ConfusionMatrix, TrimapIoU
from ..tasks import SemanticEvaluator


@dataclass
class Prediction:
    """One evaluated image: its uint8 ``image`` ``[3,H,W]``, ``mask`` ``[H,W]``, the predictor's
    ``scores`` ``[K,H,W]`` (on its device), the ``labels`` ``[H,W]`` (CPU) and, filled in by
    :class:`Refinement` accumulators, ``refined`` labels by refinement name."""

    index: int
    name: str
    image: Tensor
    mask: Tensor
    scores: Tensor
    labels: Tensor
    refined: dict[str, Tensor] = field(default_factory=dict)
    target: Tensor | None = None  # the task's whole target (panoptic: [2, H, W])


class Accumulator(Protocol):
    def update(self, prediction: Prediction) -> None: ...

    def compute(self) -> Any: ...


Confusion = SemanticEvaluator
"""The confusion matrix accumulator (the semantic task's evaluator)."""


class Trimap:
    """mIoU within bands of ``widths`` pixels around object boundaries (DeepLab v2, Sec. 4.1)."""

    def __init__(self, num_classes: int, widths: Sequence[int]) -> None:
        self.trimap = TrimapIoU(num_classes, widths=tuple(widths))

    def update(self, prediction: Prediction) -> None:
        self.trimap.update(prediction.labels, prediction.mask)

    def compute(self) -> dict[str, float]:
        """Band mIoU by width (keys are the widths as strings, as in the JSON report)."""
        return {str(w): m for w, m in self.trimap.compute()["miou"].items()}


class PerImage:
    """One ``{"image", "miou", "pixel_accuracy"}`` record per image, worst first."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.records: list[dict[str, Any]] = []

    def update(self, prediction: Prediction) -> None:
        single = ConfusionMatrix(self.num_classes)
        single.update(prediction.labels, prediction.mask)
        result = single.compute()
        self.records.append(
            {
                "image": prediction.name,
                "miou": result["miou"],
                "pixel_accuracy": result["pixel_accuracy"],
            }
        )

    def compute(self) -> list[dict[str, Any]]:
        return sorted(self.records, key=lambda r: (r["miou"] != r["miou"], r["miou"]))


class Refinement:
    """The same predictions after ``refiner`` (dense CRF, domain transform): its own confusion
    matrix and trimap bands, and the time it took per image. Its labels go into
    ``prediction.refined[name]`` for accumulators after it (the example picture)."""

    def __init__(
        self, name: str, refiner: Refiner, num_classes: int, widths: Sequence[int] = ()
    ) -> None:
        self.name, self.refiner = name, refiner
        self.confusion = Confusion(num_classes)
        self.trimap = Trimap(num_classes, widths) if widths else None
        self.seconds, self.images = 0.0, 0

    def update(self, prediction: Prediction) -> None:
        probs = prediction.scores.float().softmax(0)
        start = time.perf_counter()
        with torch.inference_mode():
            refined = self.refiner(prediction.image.to(probs.device), probs)
        self.seconds += time.perf_counter() - start
        self.images += 1
        labels = refined.argmax(0).cpu()
        prediction.refined[self.name] = labels
        refined_prediction = Prediction(
            prediction.index, prediction.name, prediction.image, prediction.mask, refined, labels
        )
        self.confusion.update(refined_prediction)
        if self.trimap is not None:
            self.trimap.update(refined_prediction)

    def compute(self) -> dict[str, Any]:
        result = self.confusion.compute()
        del result["confusion_matrix"]
        if self.trimap is not None:
            result["trimap"] = self.trimap.compute()
        return {**result, "seconds_per_image": self.seconds / max(self.images, 1)}


class Examples:
    """``(image, mask, prediction, *refined predictions)`` arrays of the first ``limit``
    images, for :func:`atrous.evaluation.comparison_grid`."""

    def __init__(self, limit: int = 6) -> None:
        self.limit = limit
        self.rows: list[tuple[np.ndarray, ...]] = []

    def update(self, prediction: Prediction) -> None:
        if len(self.rows) >= self.limit:
            return
        refined = [labels.numpy() for labels in prediction.refined.values()]
        self.rows.append(
            (
                prediction.image.permute(1, 2, 0).numpy(),
                np.asarray(prediction.mask),
                prediction.labels.numpy(),
                *refined,
            )
        )

    def compute(self) -> list[tuple[np.ndarray, ...]]:
        return self.rows
