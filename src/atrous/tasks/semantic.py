"""Semantic segmentation: a class per pixel, trained by cross-entropy (class weights, auxiliary
outputs, hard-pixel mining) and scored by the confusion matrix (mIoU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..metrics import ConfusionMatrix
from .base import PANOPTIC_DATASETS, StepLoss, Task, all_reduce_, labelled_pixels
from .losses import segmentation_loss


class SemanticEvaluator:
    """The confusion matrix: mIoU, per-class IoU and accuracies, and the matrix itself."""

    def __init__(self, num_classes: int) -> None:
        self.matrix = ConfusionMatrix(num_classes)

    def update(self, prediction: Any) -> None:
        self.matrix.update(prediction.labels, prediction.mask)

    def reset(self) -> None:
        self.matrix.reset()

    def merge(self, other: SemanticEvaluator) -> SemanticEvaluator:
        self.matrix.merge(other.matrix)
        return self

    def all_reduce(self, device: torch.device) -> None:
        all_reduce_([self.matrix.matrix], device)

    def compute(self) -> dict[str, Any]:
        return {**self.matrix.compute(), "confusion_matrix": self.matrix.matrix.tolist()}


class SemanticTask(Task):
    """Masks ``[N, H, W]`` of class ids (255 ignored) -> per-pixel cross-entropy."""

    name = "semantic"

    def __init__(
        self, *, class_weights: Sequence[float] | None = None, aux_weight: float = 1.0
    ) -> None:
        self.class_weights = class_weights
        self.aux_weight = aux_weight

    @classmethod
    def from_recipe(cls, cfg: Any) -> SemanticTask:
        return cls(class_weights=cfg.train.class_weights, aux_weight=cfg.train.aux_weight)

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.name == "panoptic_deeplab":
            problems.append("model.name = panoptic_deeplab trains with task: panoptic")
        if cfg.data.supervision != "full":
            problems.append(
                f"data.supervision = {cfg.data.supervision} trains with task: weak, not {cls.name}"
            )
        if cfg.data.dataset in PANOPTIC_DATASETS:
            problems.append(
                f"data.dataset = {cfg.data.dataset} holds panoptic targets (task: panoptic)"
            )
        return problems

    def targets(self, outputs: Any, masks: Tensor) -> Tensor:
        """The labels a batch trains on (the masks themselves)."""
        return masks

    def loss(self, outputs: Any, masks: Tensor, *, top_k_percent: float = 1.0) -> StepLoss:
        targets = self.targets(outputs, masks)
        value = segmentation_loss(
            outputs,
            targets,
            top_k_percent=top_k_percent,
            class_weights=self.class_weights,
            aux_weight=self.aux_weight,
        )
        return StepLoss(value, labelled_pixels(targets))

    def evaluator(self, predictor: Any, num_classes: int) -> SemanticEvaluator:
        return SemanticEvaluator(num_classes)


class SemanticAndAPEvaluator:
    """The semantic confusion matrix beside a COCO AP accumulator (``ap``, with ``update``,
    ``merge``, ``all_reduce``, ``compute``) and the seconds spent per image on the task's own
    decoding: what PersonLab's and MaskLab's evaluators share; subclasses write ``update``."""

    def __init__(self, predictor: Any, num_classes: int, ap: Any) -> None:
        self.predictor, self.ap = predictor, ap
        self.semantic = SemanticEvaluator(num_classes)
        self.seconds, self.images = 0.0, 0

    def reset(self) -> None:
        self.semantic.reset()
        self.ap.reset()
        self.seconds, self.images = 0.0, 0

    def merge(self, other: SemanticAndAPEvaluator) -> SemanticAndAPEvaluator:
        self.semantic.merge(other.semantic)
        self.ap.merge(other.ap)
        self.seconds += other.seconds
        self.images += other.images
        return self

    def all_reduce(self, device: torch.device) -> None:
        self.semantic.all_reduce(device)
        self.ap.all_reduce(device)

    def compute(self) -> dict[str, Any]:
        return {
            **self.semantic.compute(),
            **self.ap.compute(),
            "seconds_per_image": self.seconds / max(self.images, 1),
        }
