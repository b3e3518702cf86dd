"""PersonLab (Papandreou et al., ECCV 2018): bottom-up person pose and instance segmentation.
:func:`encode` makes one image's training targets from its people (:mod:`.personlab_targets`),
:func:`decode` turns one image's fields back into people (:mod:`.personlab_decode`); the task
trains on COCO person keypoints (``data.dataset: coco_keypoints``) and is scored by COCO
keypoint AP (OKS) and person mask AP through pycocotools, beside the person/background mIoU.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from ..data import build_dataset
from ..data.keypoints import KeypointTrainTransforms, person_semantic
from ..metrics.keypoints import PersonAP
from .base import StepLoss, Task
from .personlab_decode import decode
from .personlab_targets import LOSS_WEIGHTS, RADIUS, encode, personlab_loss
from .semantic import SemanticAndAPEvaluator

KEYPOINT_DATASETS = ("coco_keypoints",)
"""Data sets whose items are ``(image, people)`` (see :class:`atrous.data.COCOKeypoints`)."""

__all__ = [
    "KEYPOINT_DATASETS", "LOSS_WEIGHTS", "PersonLabEvaluator", "PersonLabTask", "RADIUS",
    "decode", "encode", "people_of", "person_semantic", "personlab_loss",
]  # fmt: skip


def people_of(target: dict[str, Tensor]) -> list[dict[str, Any]]:
    """A data set's target (``keypoints`` ``[P,K,3]``, ``masks`` ``[P,H,W]``, ``iscrowd``
    ``[P]``) -> :func:`encode`'s list of people."""
    return [
        {"keypoints": points, "mask": mask, "crowd": bool(crowd)}
        for points, mask, crowd in zip(
            target["keypoints"], target["masks"], target["iscrowd"], strict=True
        )
    ]


class EncodeTargets:
    """The training transform: the keypoint augmentation, then :func:`encode` (a picklable
    callable, so data-loader workers can run it)."""

    def __init__(self, augment: Any, radius: float) -> None:
        self.augment, self.radius = augment, radius

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict]:
        image, target = self.augment(image, target)
        size = (int(image.shape[-2]), int(image.shape[-1]))
        ignore = target.get("ignore")
        return image, encode(people_of(target), size, self.radius, ignore=ignore)


class PersonLabEvaluator(SemanticAndAPEvaluator):
    """Person/background mIoU (the predictor's semantic scores) and COCO keypoint and mask AP
    of the people :func:`decode` finds in the model's fields; ``options`` go to ``decode``."""

    def __init__(self, predictor: Any, num_classes: int, **options: Any) -> None:
        super().__init__(predictor, num_classes, PersonAP())
        self.options = options

    def update(self, prediction: Any) -> None:
        self.semantic.update(prediction)
        start = time.perf_counter()
        model = self.predictor.model
        x = self.predictor.normalize(prediction.image).unsqueeze(0).to(self.predictor.device)
        with torch.no_grad():
            fields = model(x)
        people = decode(
            {key: value[0] for key, value in fields.items()},
            radius=getattr(model, "radius", RADIUS), **self.options,
        )  # fmt: skip
        self.seconds += time.perf_counter() - start
        self.images += 1
        target = prediction.target
        size = (int(prediction.image.shape[-2]), int(prediction.image.shape[-1]))
        image_id = int(target.get("image_id", prediction.index))
        self.ap.update(image_id, size, target, people)


class PersonLabTask(Task):
    """PersonLab: heatmap and segmentation logistic losses, short / mid / long L1 offset losses
    on :func:`encode`'s targets; scored by keypoint AP (``main_metric``), mask AP and mIoU."""

    name = "personlab"
    main_metric = "keypoint_ap"

    def __init__(self, radius: float = RADIUS) -> None:
        self.radius = radius

    @classmethod
    def from_recipe(cls, cfg: Any) -> PersonLabTask:
        return cls(radius=float(cfg.model.radius))

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.name != "personlab":
            problems.append(f"task: personlab trains model.name = personlab, not {cfg.model.name}")
        if cfg.data.dataset not in KEYPOINT_DATASETS:
            problems.append(
                f"task: personlab reads a keypoint data set ({', '.join(KEYPOINT_DATASETS)}), "
                f"not data.dataset = {cfg.data.dataset}"
            )
        return problems

    def train_dataset(self, cfg: Any, transforms: Any, options: dict[str, Any]) -> Any:
        d = cfg.data
        augment = KeypointTrainTransforms(
            d.crop_size, mean=d.mean, std=d.std, scale_range=d.scale_range, hflip=d.hflip
        )
        return build_dataset(
            d.dataset, d.root, d.train_split, EncodeTargets(augment, self.radius), **options
        )

    def bind(self, model: Any) -> None:
        self.radius = float(getattr(model, "radius", self.radius))

    def split_target(self, mask: Any) -> tuple[Tensor, Any]:
        return person_semantic(mask), mask

    def loss(self, outputs: Any, masks: Any, *, top_k_percent: float = 1.0) -> StepLoss:
        value, _ = personlab_loss(outputs, masks, radius=self.radius)
        return StepLoss(value, masks["heatmap_weight"].sum())

    def evaluator(self, predictor: Any, num_classes: int) -> PersonLabEvaluator:
        return PersonLabEvaluator(predictor, num_classes)
