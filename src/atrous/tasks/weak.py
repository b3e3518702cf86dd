"""Weak and semi-supervised training by EM (Papandreou et al., ICCV 2015): a folder of images
with boxes or image-level labels (some with masks), whose labels the E-step estimates from the
network's own scores at every step (:mod:`.em`); evaluated as semantic segmentation."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data.palette import save_palette_png
from ..data.transforms import eval_transforms
from ..data.weak import METHODS, WeakFolder
from .em import bbox_seg, weak_targets
from .semantic import SemanticTask


@dataclasses.dataclass(frozen=True)
class EMSettings:
    """The E-step's settings (the recipe's ``weak:`` section; defaults: the Caffe layers')."""

    method: str = "em_fixed"
    bg_bias: float = 1.0
    fg_bias: float = 2.0
    bg_portion: float = 0.2
    fg_portion: float = 0.2
    suppress_others: bool = True
    margin: float = 1e-5
    iterations: int = 1


class WeakTask(SemanticTask):
    """``[N, 2, H, W]`` weak masks (:class:`atrous.data.weak.WeakFolder`: label or
    :data:`~atrous.data.weak.ESTIMATE`, and the classes the E-step may assign) -> the E-step's
    labels -> the semantic loss. ``save_estimates`` images' estimates are written at every
    checkpoint."""

    name = "weak"

    def __init__(
        self,
        em: EMSettings = EMSettings(),
        *,
        class_weights: Any = None,
        aux_weight: float = 1.0,
        save_estimates: int = 0,
        mean: Any = None,
        std: Any = None,
    ) -> None:
        super().__init__(class_weights=class_weights, aux_weight=aux_weight)
        self.em, self.save_estimates = em, save_estimates
        self.mean, self.std = mean, std
        self.dataset: WeakFolder | None = None

    @classmethod
    def from_recipe(cls, cfg: Any) -> WeakTask:
        names = {f.name for f in dataclasses.fields(EMSettings)}
        em = EMSettings(**{k: v for k, v in dataclasses.asdict(cfg.weak).items() if k in names})
        return cls(
            em, class_weights=cfg.train.class_weights, aux_weight=cfg.train.aux_weight,
            save_estimates=cfg.train.save_estimates, mean=cfg.data.mean, std=cfg.data.std,
        )  # fmt: skip

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.data.supervision == "full":
            problems.append(
                "task: weak needs data.supervision = boxes, image_labels or mixed, not full"
            )
        if cfg.data.dataset != "folder":
            problems.append(
                f"task: weak reads the folder layout, not data.dataset = {cfg.data.dataset}"
            )
        if cfg.model.name == "panoptic_deeplab":
            problems.append("task: weak trains a semantic model, not panoptic_deeplab")
        if cfg.weak.method not in METHODS:
            problems.append(
                f"weak.method = {cfg.weak.method!r}: expected one of {', '.join(METHODS)}"
            )
        return problems

    def train_dataset(self, cfg: Any, transforms: Any, options: dict[str, Any]) -> Dataset:
        d, w = cfg.data, cfg.weak
        self.dataset = WeakFolder(
            d.root, d.train_split, supervision=d.supervision, method=w.method, boxes=d.boxes,
            image_labels=d.image_labels, strong_fraction=d.strong_fraction,
            strong_repeat=w.strong_repeat, num_classes=d.num_classes, val_fraction=d.val_fraction,
            transforms=transforms, bbox_seg=None,
        )  # fmt: skip
        # Bbox-Seg's dense CRF sits above data (refine), so the task hands it to the dataset.
        self.dataset.bbox_seg = partial(bbox_seg, num_classes=self.dataset.num_classes)
        return self.dataset

    def targets(self, outputs: Any, masks: Tensor) -> Tensor:
        logits = outputs["out"] if isinstance(outputs, dict) else outputs
        return weak_targets(logits, masks, self.em, self.em.method)

    def on_checkpoint(self, model: nn.Module, out_dir: Path, step: int, device: Any) -> None:
        if self.save_estimates and self.dataset is not None:
            save_estimates(model, self.dataset, self, out_dir, step, device)


def save_estimates(
    model: nn.Module, dataset: WeakFolder, task: WeakTask, out_dir: Path, step: int, device: Any
) -> list[Path]:
    """The E-step estimates of the first ``task.save_estimates`` weak training images (whole,
    unaugmented) under the current weights, as palette PNGs in ``estimates/step_<step>/``.
    The model is back in its training mode (and BN state) afterwards."""
    weak = [i for i, s in enumerate(dataset.stems) if s not in dataset.strong]
    out = Path(out_dir) / "estimates" / f"step_{step:06d}"
    out.mkdir(parents=True, exist_ok=True)
    normalize = eval_transforms(mean=task.mean, std=task.std)
    modes = {module: module.training for module in model.modules()}
    written = []
    model.eval()
    with torch.no_grad():
        for index in weak[: task.save_estimates]:
            image, mask = dataset.load(index)
            logits = model(normalize(image).unsqueeze(0).to(device))
            labels = task.targets(logits, mask.unsqueeze(0).to(device))
            written.append(out / f"{dataset.stems[index]}.png")
            save_palette_png(labels[0].cpu().numpy(), dataset.palette, written[-1])
    for module, training in modes.items():  # frozen BN stays frozen
        module.train(training)
    return written
