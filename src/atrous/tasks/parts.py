"""Part parsing (HAZN, Xia et al. ECCV 2016): ``[N, 3, H, W]`` targets (part labels, object ids,
part-instance ids) -> part cross-entropy plus the object and part scale losses of the two
Auto-Zoom Nets (:mod:`atrous.models.auto_zoom`); scored by part mIoU, overall and by object
size (the paper's XS..XL breakdown, :data:`atrous.data.person_part.SIZE_BUCKETS`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..data.info import IGNORE_INDEX
from ..data.person_part import SIZE_BUCKETS, object_size_buckets
from ..metrics import ConfusionMatrix
from ..models.auto_zoom import scale_loss, scale_targets
from .base import StepLoss, Task, all_reduce_, labelled_pixels
from .losses import segmentation_loss
from .semantic import SemanticEvaluator

PART_DATASETS = ("person_part", "horse_part", "cow_part")
"""Data sets whose targets are ``[3, H, W]`` (part labels, object ids, part-instance ids)."""
SCALE_KEYS = {"object_scale": 1, "part_scale": 2}
"""A HAZN's scale-head outputs and the target channel holding their instance ids."""
LOSS_WEIGHTS = {"parts": 1.0, "object_scale": 1.0, "part_scale": 1.0}
"""Weights of the part cross-entropy and the two scale losses (chosen: equal; the paper's
weights: unknown)."""
BOX_WEIGHT = 10.0
"""Weight of the box regression inside each scale loss, against its confidence BCE (chosen: the
box channels are fractions of the image side, about 0.1, where smooth-L1 is quadratic and tiny;
on the synthetic parts it fell to 0.001-0.003 in 30 Adam steps against a BCE of 0.6, so 10 keeps
it from vanishing from the sum; the paper's: unknown)."""

__all__ = [
    "BOX_WEIGHT", "LOSS_WEIGHTS", "PART_DATASETS", "PartsEvaluator", "PartsTask", "parts_loss",
]  # fmt: skip


def _scale_targets(ids: Tensor) -> dict[str, Tensor]:
    """:func:`scale_targets` of each ``[H, W]`` id map of ``ids`` ``[N, H, W]``, stacked; 255
    (the train transforms' padding) is no instance and ignored."""
    per_image = []
    for one in ids.as_subclass(Tensor).long():
        pad = one == IGNORE_INDEX
        per_image.append(scale_targets(one.masked_fill(pad, 0), ignore=pad))
    return {key: torch.stack([t[key] for t in per_image]) for key in per_image[0]}


def parts_loss(
    outputs: Any,
    masks: Tensor,
    *,
    weights: dict[str, float] | None = None,
    box_weight: float = BOX_WEIGHT,
    top_k_percent: float = 1.0,
    aux_weight: float = 1.0,
) -> Tensor:
    """``weights["parts"]`` times the cross-entropy of the part logits (``outputs["out"]``,
    auxiliary logits as :func:`.losses.segmentation_loss` takes them, or a plain logits
    tensor) against ``masks[:, 0]`` (255 ignored), plus, for each scale output a HAZN gives,
    its weight times :func:`scale_loss` (``box_weight``) on :func:`scale_targets` of the
    object ids (``masks[:, 1]``) or part-instance ids (``masks[:, 2]``)."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    semantic = masks[:, 0].long()
    if not isinstance(outputs, dict):
        return w["parts"] * segmentation_loss(outputs, semantic, top_k_percent=top_k_percent)
    logits = {key: value for key, value in outputs.items() if key not in SCALE_KEYS}
    total = w["parts"] * segmentation_loss(
        logits, semantic, top_k_percent=top_k_percent, aux_weight=aux_weight
    )
    for key, channel in SCALE_KEYS.items():
        if key in outputs:
            targets = _scale_targets(masks[:, channel])
            total = total + w[key] * scale_loss(outputs[key], targets, box_weight=box_weight)
    return total


class PartsEvaluator:
    """:class:`SemanticEvaluator`'s numbers (part mIoU over the whole image, background counted
    as a class, as Person-Part's 7-class mIoU is) plus, per object size bucket of
    :data:`SIZE_BUCKETS` (an object's area over its image's area, from the target's object ids):

    - ``miou_by_size[bucket]``: the mean over the part classes (background excluded) of the IoU
      from the confusion matrix of the pixels that belong to the bucket's objects (channel 1 of
      the target; the prediction there against the part label, 255 skipped); classes absent
      from both are skipped. Part predictions outside every object count in no bucket.
    - ``iou_by_size[bucket]``: that matrix's IoU per class, indexed by label (0, background on
      the objects' own pixels, is listed but not in the mean).
    - ``objects_by_size[bucket]``: how many objects fell in the bucket.

    A bucket without objects gives ``nan`` (and ``nan`` IoUs); every bucket is always listed."""

    def __init__(self, num_classes: int) -> None:
        self.semantic = SemanticEvaluator(num_classes)
        self.by_size = {name: ConfusionMatrix(num_classes) for name in SIZE_BUCKETS}
        self.objects = torch.zeros(len(SIZE_BUCKETS), dtype=torch.int64)

    def update(self, prediction: Any) -> None:
        self.semantic.update(prediction)
        target = prediction.target
        if target is None or target.ndim != 3 or target.shape[0] < 2:
            raise ValueError("PartsEvaluator needs each prediction's [3, H, W] target (task parts)")
        objects = target[1].as_subclass(Tensor)
        buckets = object_size_buckets(objects)
        labels, semantic = prediction.labels, prediction.mask.as_subclass(Tensor)
        names = list(SIZE_BUCKETS)
        for name in names:
            ids = [i for i, bucket in buckets.items() if bucket == name]
            if not ids:
                continue
            self.objects[names.index(name)] += len(ids)
            inside = torch.isin(objects, torch.tensor(ids, dtype=objects.dtype))
            self.by_size[name].update(labels[inside], semantic[inside])

    def reset(self) -> None:
        self.semantic.reset()
        for matrix in self.by_size.values():
            matrix.reset()
        self.objects.zero_()

    def merge(self, other: PartsEvaluator) -> PartsEvaluator:
        self.semantic.merge(other.semantic)
        for name, matrix in self.by_size.items():
            matrix.merge(other.by_size[name])
        self.objects += other.objects
        return self

    def all_reduce(self, device: torch.device) -> None:
        self.semantic.all_reduce(device)
        all_reduce_([*(m.matrix for m in self.by_size.values()), self.objects], device)

    def compute(self) -> dict[str, Any]:
        miou, iou = {}, {}
        for name, matrix in self.by_size.items():
            per_class = matrix.compute()["iou"]
            parts = [v for v in per_class[1:] if not math.isnan(v)]
            iou[name] = per_class
            miou[name] = sum(parts) / len(parts) if parts else math.nan
        return {
            **self.semantic.compute(),
            "miou_by_size": miou,
            "iou_by_size": iou,
            "objects_by_size": dict(zip(SIZE_BUCKETS, self.objects.tolist(), strict=True)),
        }


class PartsTask(Task):
    """Part parsing on :data:`PART_DATASETS`: :func:`parts_loss` (part cross-entropy, and a
    HAZN's object and part scale losses), scored by :class:`PartsEvaluator`. Any semantic
    model trains on the part logits alone (the benchmark's FCN and attention-to-scale rows)."""

    name = "parts"
    main_metric = "miou"

    def __init__(
        self, *, weights: dict[str, float] | None = None, box_weight: float = BOX_WEIGHT
    ) -> None:
        unknown = sorted(set(weights or {}) - set(LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weights {unknown}; available: {sorted(LOSS_WEIGHTS)}")
        self.weights = {**LOSS_WEIGHTS, **(weights or {})}
        self.box_weight = box_weight
        self.aux_weight = 1.0

    @classmethod
    def from_recipe(cls, cfg: Any) -> PartsTask:
        task = cls()
        task.aux_weight = float(cfg.train.aux_weight)
        return task

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.name in ("panoptic_deeplab", "personlab", "masklab"):
            problems.append(
                f"task: parts trains hazn or a semantic model, not model.name = {cfg.model.name}"
            )
        if cfg.data.dataset not in PART_DATASETS:
            problems.append(
                f"task: parts reads a part data set ({', '.join(PART_DATASETS)}), "
                f"not data.dataset = {cfg.data.dataset}"
            )
        return problems

    def split_target(self, mask: Tensor) -> tuple[Tensor, Tensor]:
        return mask[0], mask

    def loss(self, outputs: Any, masks: Tensor, *, top_k_percent: float = 1.0) -> StepLoss:
        if masks.ndim != 4 or masks.shape[1] != 3:
            raise ValueError(
                f"task parts trains on [N, 3, H, W] targets (parts, objects, part instances), "
                f"got {tuple(masks.shape)}"
            )
        value = parts_loss(
            outputs, masks, weights=self.weights, box_weight=self.box_weight,
            top_k_percent=top_k_percent, aux_weight=self.aux_weight,
        )  # fmt: skip
        return StepLoss(value, labelled_pixels(masks[:, 0]))

    def evaluator(self, predictor: Any, num_classes: int) -> PartsEvaluator:
        return PartsEvaluator(num_classes)
