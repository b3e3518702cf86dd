"""MaskLab (Chen et al., CVPR 2018): instance segmentation from detected boxes, semantic and
direction features. Training targets are each image's semantic map (crowd ignored), direction
bins from the instance masks (:func:`atrous.models.direction_pooling.direction_targets`) and
the non-crowd instances for the detector and mask head; the loss adds the detector's (RPN
objectness and box, classifier and box regression), semantic and direction cross-entropy and
the mask head's BCE. Scored by COCO mask AP (``main_metric``) and box AP through pycocotools,
beside the semantic mIoU.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import default_collate

from ..data import build_dataset
from ..data.info import IGNORE_INDEX
from ..data.instances import InstanceTrainTransforms, instance_semantic
from ..metrics.instances import InstanceAP
from ..models.direction_pooling import NUM_DIRECTIONS, NUM_DISTANCES, direction_targets
from .base import StepLoss, Task, labelled_pixels
from .semantic import SemanticAndAPEvaluator

INSTANCE_DATASETS = ("coco_instances",)
"""Data sets whose items are ``(image, instances)`` (see :class:`atrous.data.COCOInstances`)."""
LOSS_WEIGHTS = {"detector": 1.0, "semantic": 1.0, "direction": 1.0, "mask": 1.0}
"""Weights of the loss terms (chosen: the paper's are unknown, recalled, unverified)."""

__all__ = ["INSTANCE_DATASETS", "LOSS_WEIGHTS", "MaskLabEvaluator", "MaskLabTask", "encode"]


def encode(
    target: dict[str, Any],
    *,
    num_directions: int = NUM_DIRECTIONS,
    num_distances: int = NUM_DISTANCES,
) -> dict[str, Any]:
    """One image's training targets from its instances (``boxes``, ``labels``, ``masks``,
    ``iscrowd``): ``semantic`` ``[H,W]`` (255 on crowd), ``direction`` ``[H,W]`` bins (255 off
    instances and where they overlap) and the non-crowd ``instances`` for the detector."""
    crowd = target["iscrowd"].bool()
    masks = target["masks"].as_subclass(Tensor).bool()[~crowd]
    return {
        "semantic": instance_semantic(target),
        "direction": direction_targets(
            masks, num_directions=num_directions, num_distances=num_distances
        ),
        "instances": {
            "boxes": target["boxes"].as_subclass(Tensor).float()[~crowd],
            "labels": target["labels"].long()[~crowd],
            "masks": masks,
        },
    }


class EncodeTargets:
    """The training transform: the instance augmentation, then :func:`encode` (picklable,
    so data-loader workers can run it)."""

    def __init__(self, augment: Any, num_directions: int, num_distances: int) -> None:
        self.augment, self.bins = augment, (num_directions, num_distances)

    def __call__(self, image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict]:
        image, target = self.augment(image, target)
        d, r = self.bins
        return image, encode(target, num_directions=d, num_distances=r)


def collate(batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[Tensor, dict[str, Any]]:
    """Images and dense targets stacked; each image's instances kept as a list (their
    counts differ)."""
    images = default_collate([image for image, _ in batch])
    targets = {
        "semantic": torch.stack([t["semantic"] for _, t in batch]),
        "direction": torch.stack([t["direction"] for _, t in batch]),
        "instances": [t["instances"] for _, t in batch],
    }
    return images, targets


def masklab_loss(
    outputs: dict[str, Any], targets: dict[str, Any], weights: dict[str, float] = LOSS_WEIGHTS
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of the terms, and each term (the detector's four summed)."""
    terms = {
        "detector": sum(outputs["losses"].values()),
        "semantic": F.cross_entropy(
            outputs["semantic"].float(), targets["semantic"], ignore_index=IGNORE_INDEX
        ),
    }
    direction = targets["direction"]
    terms["direction"] = (
        F.cross_entropy(outputs["direction"].float(), direction, ignore_index=IGNORE_INDEX)
        if (direction != IGNORE_INDEX).any()
        else outputs["direction"].sum() * 0.0
    )
    logits, truth = outputs["mask_logits"], outputs["mask_targets"]
    terms["mask"] = (
        F.binary_cross_entropy_with_logits(logits.float(), truth.float())
        if len(logits)
        else logits.sum() * 0.0
    )
    total = sum(weights[key] * value for key, value in terms.items())
    return total, terms


class MaskLabEvaluator(SemanticAndAPEvaluator):
    """Semantic mIoU (the predictor's scores) and COCO mask and box AP of the model's
    detections; ``gt_boxes`` runs the mask head on the ground-truth boxes instead (the head's
    ceiling: box AP is then 1 by construction)."""

    def __init__(self, predictor: Any, num_classes: int, *, gt_boxes: bool = False) -> None:
        super().__init__(predictor, num_classes, InstanceAP(num_classes))
        self.gt_boxes = gt_boxes

    def update(self, prediction: Any) -> None:
        self.semantic.update(prediction)
        start = time.perf_counter()
        model, target = self.predictor.model, prediction.target
        x = self.predictor.normalize(prediction.image).unsqueeze(0).to(self.predictor.device)
        with torch.no_grad():
            if self.gt_boxes:
                keep = ~target["iscrowd"].bool()
                boxes = target["boxes"].as_subclass(Tensor)[keep].to(x.device)
                found = model.segment_boxes(x, [boxes], [target["labels"][keep].to(x.device)])
            else:
                found = model(x)["detections"]
        detections = {key: value.cpu() for key, value in found[0].items()}
        self.seconds += time.perf_counter() - start
        self.images += 1
        size = (int(prediction.image.shape[-2]), int(prediction.image.shape[-1]))
        image_id = int(target.get("image_id", prediction.index))
        self.ap.update(image_id, size, target, detections)


class MaskLabTask(Task):
    """MaskLab: detector, semantic, direction and mask losses on :func:`encode`'s targets;
    scored by mask AP (``main_metric``), box AP and mIoU."""

    name = "masklab"
    main_metric = "mask_ap"

    def __init__(
        self, num_directions: int = NUM_DIRECTIONS, num_distances: int = NUM_DISTANCES
    ) -> None:
        self.num_directions, self.num_distances = num_directions, num_distances

    @classmethod
    def from_recipe(cls, cfg: Any) -> MaskLabTask:
        options = cfg.model.builder_kwargs()
        return cls(
            num_directions=int(options.get("num_directions", NUM_DIRECTIONS)),
            num_distances=int(options.get("num_distances", NUM_DISTANCES)),
        )

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.name != "masklab":
            problems.append(f"task: masklab trains model.name = masklab, not {cfg.model.name}")
        if cfg.data.dataset not in INSTANCE_DATASETS:
            problems.append(
                f"task: masklab reads an instance data set ({', '.join(INSTANCE_DATASETS)}), "
                f"not data.dataset = {cfg.data.dataset}"
            )
        return problems

    def train_dataset(self, cfg: Any, transforms: Any, options: dict[str, Any]) -> Any:
        d = cfg.data
        augment = InstanceTrainTransforms(
            d.crop_size, mean=d.mean, std=d.std, scale_range=d.scale_range, hflip=d.hflip
        )
        encode_targets = EncodeTargets(augment, self.num_directions, self.num_distances)
        return build_dataset(d.dataset, d.root, d.train_split, encode_targets, **options)

    def bind(self, model: Any) -> None:
        self.num_directions = int(getattr(model, "num_directions", self.num_directions))
        self.num_distances = int(getattr(model, "num_distances", self.num_distances))

    def collate(self, batch: list[Any]) -> Any:
        return collate(batch)

    def forward(self, net: Any, images: Tensor, targets: Any) -> Any:
        return net(images, targets["instances"])

    def split_target(self, mask: Any) -> tuple[Tensor, Any]:
        return instance_semantic(mask), mask

    def loss(self, outputs: Any, masks: Any, *, top_k_percent: float = 1.0) -> StepLoss:
        value, _ = masklab_loss(outputs, masks)
        return StepLoss(value, labelled_pixels(masks["semantic"]))

    def evaluator(self, predictor: Any, num_classes: int) -> MaskLabEvaluator:
        return MaskLabEvaluator(predictor, num_classes)
