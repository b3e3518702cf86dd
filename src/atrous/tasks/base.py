"""What a task is: the part of training and evaluation that differs between kinds of training.

A task turns a batch's annotations into training targets and a loss, turns model outputs into
predictions, and makes the evaluator that scores them. The training step and the evaluation
loop call a task; they never look at a model's attributes or a tensor's rank to decide what
they are doing (detectron2's meta-architectures return their own losses and evaluators;
deeplab2 builds losses and evaluators per task from one config).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from ..data import build_dataset
from ..data.info import IGNORE_INDEX

PANOPTIC_DATASETS = ("panoptic_folder", "cityscapes_panoptic", "coco_panoptic")
"""Data sets whose targets are ``[2, H, W]`` (semantic, instance) masks."""


@dataclass
class StepLoss:
    """A training step's loss and its labelled-pixel count (a 0-d tensor, read on the host
    only under data parallelism, where each rank's loss is weighted by its share)."""

    loss: Tensor
    pixels: Tensor


class Evaluator(Protocol):
    """An accumulator over evaluated images: ``update`` per image, ``compute`` the numbers,
    ``merge`` another's counts, ``all_reduce`` the counts of every process (under DDP)."""

    def update(self, prediction: Any) -> None: ...

    def compute(self) -> dict[str, Any]: ...

    def merge(self, other: Any) -> Any: ...

    def all_reduce(self, device: torch.device) -> None: ...


def all_reduce_(tensors: list[Tensor], device: torch.device) -> None:
    """Sum ``tensors`` in place over every process of the default group (a no-op in one
    process). Each travels through ``device`` (Gloo reduces CPU tensors, NCCL CUDA ones)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for tensor in tensors:
        moved = tensor.to(device)
        dist.all_reduce(moved)
        tensor.copy_(moved.to(tensor.device))


class Task:
    """The semantic defaults every task starts from; subclasses override what differs.

    ``name`` is the recipe's ``task:`` value, ``main_metric`` the (dotted) key of its
    evaluator's result that a run is judged by (``best.pt``, early stopping)."""

    name: ClassVar[str] = ""
    main_metric: ClassVar[str] = "miou"

    @classmethod
    def from_recipe(cls, cfg: Any) -> Task:
        """The task as a recipe (:class:`atrous.config.Config`) sets it up."""
        return cls()

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        """What in a recipe contradicts this task (its model or data), one line each."""
        return []

    # -- data ---------------------------------------------------------------------------------
    def train_dataset(self, cfg: Any, transforms: Any, options: dict[str, Any]) -> Dataset:
        """The augmented training split."""
        d = cfg.data
        return build_dataset(d.dataset, d.root, d.train_split, transforms, **options)

    def model_options(self, dataset: Any) -> dict[str, Any]:
        """Builder options the training data decides (beside ``num_classes``)."""
        return {}

    def bind(self, model: nn.Module) -> None:
        """Take what the task needs from the model it trains (once, after it is built)."""

    def split_target(self, mask: Tensor) -> tuple[Tensor, Tensor]:
        """A data set's target -> (the ``[H, W]`` semantic mask, the task's whole target)."""
        return mask, mask

    def collate(self, batch: list[Any]) -> Any:
        """A list of training items -> one batch (default: torch's ``default_collate``; a task
        whose targets differ in size per image, e.g. MaskLab's instances, keeps them listed)."""
        return default_collate(batch)

    # -- training -----------------------------------------------------------------------------
    def forward(self, net: nn.Module, images: Tensor, targets: Any) -> Any:
        """The training forward pass (default ``net(images)``; a detector also takes the
        targets, as torchvision's detection models do)."""
        return net(images)

    def loss(self, outputs: Any, masks: Tensor, *, top_k_percent: float = 1.0) -> StepLoss:
        raise NotImplementedError

    def on_checkpoint(self, model: nn.Module, out_dir: Path, step: int, device: Any) -> None:
        """Anything the task writes beside a checkpoint (weak: the E-step estimates)."""

    # -- evaluation ---------------------------------------------------------------------------
    def evaluator(self, predictor: Any, num_classes: int) -> Evaluator:
        raise NotImplementedError


def labelled_pixels(semantic: Tensor) -> Tensor:
    """How many pixels of a ``[N, H, W]`` semantic target are labelled (0-d, on its device)."""
    return (semantic != IGNORE_INDEX).sum()
