"""Panoptic parsing with Panoptic-DeepLab (Cheng et al., CVPR 2020): ``[N, 2, H, W]`` (semantic,
instance) masks -> semantic, centre and offset targets and loss (:mod:`.panoptic_targets`);
outputs -> panoptic ids (:mod:`.panoptic_decode`); PQ / SQ / RQ and Parsing Covering, reduced
across processes, beside the semantic confusion matrix."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..metrics import PanopticQuality, ParsingCovering
from .base import PANOPTIC_DATASETS, StepLoss, Task, all_reduce_, labelled_pixels
from .panoptic_decode import predict_panoptic
from .panoptic_targets import (
    CENTER_WEIGHT,
    OFFSET_WEIGHT,
    SIGMA,
    SMALL_AREA,
    SMALL_WEIGHT,
    panoptic_loss,
    panoptic_targets,
)
from .semantic import SemanticEvaluator

POSTPROCESS_KEYS = ("threshold", "nms_kernel", "top_k", "stuff_area")
"""The ``panoptic:`` recipe keys that go to :func:`.panoptic_from_outputs`, not to training."""


def panoptic_ids(mask: Tensor, label_divisor: int = 1000, void_label: int = 255) -> Tensor:
    """A ``[2, H, W]`` panoptic mask (semantic, instance) -> ``[H, W]`` ids ``class * divisor +
    instance``, void as ``void_label * divisor``."""
    semantic, instance = mask[0].long(), mask[1].long()
    ids = semantic * label_divisor + instance
    return torch.where(
        semantic == void_label, torch.full_like(ids, void_label * label_divisor), ids
    )


class PanopticScores:
    """PQ / SQ / RQ and Parsing Covering of a Panoptic-DeepLab (``predictor.model``) against
    each prediction's ``target`` (``[2, H, W]`` masks); ``options`` go to the post-processing
    (threshold, nms_kernel, top_k, stuff_area)."""

    def __init__(self, predictor: Any, num_classes: int, **options: Any) -> None:
        model = predictor.model
        self.predictor, self.options = predictor, options
        self.divisor = model.label_divisor
        things = model.thing_classes
        self.pq = PanopticQuality(num_classes, label_divisor=self.divisor, thing_classes=things)
        self.pc = ParsingCovering(num_classes, label_divisor=self.divisor, thing_classes=things)
        self.seconds, self.images = 0.0, 0

    def update(self, prediction: Any) -> None:
        start = time.perf_counter()
        x = self.predictor.normalize(prediction.image).unsqueeze(0).to(self.predictor.device)
        pan = predict_panoptic(self.predictor.model, x, **self.options)[0].cpu()
        self.seconds += time.perf_counter() - start
        self.images += 1
        target = panoptic_ids(prediction.target, self.divisor)
        self.pq.update(pan, target)
        self.pc.update(pan, target)

    def reset(self) -> None:
        self.pq.reset()
        self.pc.reset()
        self.seconds, self.images = 0.0, 0

    def merge(self, other: PanopticScores) -> PanopticScores:
        self.pq.merge(other.pq)
        self.pc.merge(other.pc)
        self.seconds += other.seconds
        self.images += other.images
        return self

    def all_reduce(self, device: torch.device) -> None:
        pq, pc = self.pq, self.pc
        all_reduce_([pq.iou, pq.tp, pq.fn, pq.fp, pc.covered, pc.area], device)

    def compute(self) -> dict[str, Any]:
        pq, pc = self.pq.compute(), self.pc.compute()
        return {
            "pq": pq["pq"], "sq": pq["sq"], "rq": pq["rq"],
            "things": {**pq["things"], "pc": pc["things"]["pc"]},
            "stuff": {**pq["stuff"], "pc": pc["stuff"]["pc"]},
            "pc": pc["pc"], "per_class_pq": pq["per_class"]["pq"],
            "seconds_per_image": self.seconds / max(self.images, 1),
        }  # fmt: skip


class PanopticEvaluator:
    """The semantic confusion matrix (mIoU) with the panoptic scores under ``"panoptic"``."""

    def __init__(self, predictor: Any, num_classes: int, **options: Any) -> None:
        self.semantic = SemanticEvaluator(num_classes)
        self.panoptic = PanopticScores(predictor, num_classes, **options)

    def update(self, prediction: Any) -> None:
        self.semantic.update(prediction)
        self.panoptic.update(prediction)

    def reset(self) -> None:
        self.semantic.reset()
        self.panoptic.reset()

    def merge(self, other: PanopticEvaluator) -> PanopticEvaluator:
        self.semantic.merge(other.semantic)
        self.panoptic.merge(other.panoptic)
        return self

    def all_reduce(self, device: torch.device) -> None:
        self.semantic.all_reduce(device)
        self.panoptic.all_reduce(device)

    def compute(self) -> dict[str, Any]:
        return {**self.semantic.compute(), "panoptic": self.panoptic.compute()}


class PanopticTask(Task):
    """Panoptic-DeepLab: hard-pixel mined semantic loss + centre MSE + offset L1 on targets
    made from ``[N, 2, H, W]`` masks; scored by mIoU, PQ and Parsing Covering."""

    name = "panoptic"
    main_metric = "panoptic.pq"

    def __init__(
        self,
        thing_classes: Any = None,
        *,
        sigma: float = SIGMA,
        small_area: int = SMALL_AREA,
        small_weight: float = SMALL_WEIGHT,
        center_weight: float = CENTER_WEIGHT,
        offset_weight: float = OFFSET_WEIGHT,
        postprocess: Mapping[str, Any] | None = None,
    ) -> None:
        """Targets (``sigma``, ``small_area``, ``small_weight``) and loss weights as
        :func:`.panoptic_targets` and :func:`.panoptic_loss` take them; ``postprocess``
        (threshold, nms_kernel, top_k, stuff_area) goes to the evaluator's post-processing."""
        self.thing_classes = None if thing_classes is None else tuple(thing_classes)
        self.targets = {"sigma": sigma, "small_area": small_area, "small_weight": small_weight}
        self.weights = {"center_weight": center_weight, "offset_weight": offset_weight}
        self.postprocess = dict(postprocess or {})

    @classmethod
    def from_recipe(cls, cfg: Any) -> PanopticTask:
        """The recipe's ``panoptic:`` section (targets, loss weights, post-processing)."""
        options = dataclasses.asdict(cfg.panoptic)
        post = {key: options.pop(key) for key in POSTPROCESS_KEYS}
        return cls(**options, postprocess=post)

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.name != "panoptic_deeplab":
            problems.append(
                f"task: panoptic trains model.name = panoptic_deeplab, not {cfg.model.name}"
            )
        if cfg.data.dataset not in PANOPTIC_DATASETS:
            problems.append(
                f"task: panoptic reads a panoptic data set ({', '.join(PANOPTIC_DATASETS)}), "
                f"not data.dataset = {cfg.data.dataset}"
            )
        return problems

    def model_options(self, dataset: Any) -> dict[str, Any]:
        return {"thing_classes": list(dataset.thing_classes)}

    def bind(self, model: Any) -> None:
        self.thing_classes = tuple(model.thing_classes)  # a recipe may set its own

    def split_target(self, mask: Tensor) -> tuple[Tensor, Tensor]:
        return mask[0], mask

    def loss(self, outputs: Any, masks: Tensor, *, top_k_percent: float = 1.0) -> StepLoss:
        if self.thing_classes is None:
            raise ValueError("the panoptic task needs thing_classes (bind it to its model)")
        targets = panoptic_targets(masks, self.thing_classes, **self.targets)
        value = panoptic_loss(outputs, targets, top_k_percent=top_k_percent, **self.weights)
        return StepLoss(value, labelled_pixels(targets["semantic"]))

    def evaluator(self, predictor: Any, num_classes: int) -> PanopticEvaluator:
        return PanopticEvaluator(predictor, num_classes, **self.postprocess)
