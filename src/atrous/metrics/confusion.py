"""Confusion-matrix segmentation metrics: mIoU, per-class IoU, pixel/mean accuracy, fwIoU."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data.info import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates a ``num_classes x num_classes`` confusion matrix (rows: target, cols: pred).

    ``update`` takes class-id tensors of equal shape; target pixels equal to ``ignore_index``
    are skipped. Counting uses one ``bincount`` over ``num_classes * target + pred``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a prediction/target pair of class-id tensors (any equal shape)."""
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError("update() takes class ids (integer tensors), not scores")
        n = self.num_classes
        target = target.reshape(-1).to(device=self.matrix.device, dtype=torch.int64)
        pred = pred.reshape(-1).to(device=self.matrix.device, dtype=torch.int64)
        if target.numel() == 0:
            return
        valid = target != self.ignore_index
        # Ignored pixels go to an extra bin: no boolean indexing, one pass for bincount.
        for name, ids in (("target", torch.where(valid, target, 0)), ("prediction", pred)):
            low, high = torch.aminmax(ids)
            if low < 0 or high >= n:
                bad = sorted(torch.unique(ids[(ids < 0) | (ids >= n)]).tolist())[:10]
                raise ValueError(f"{name} holds class ids {bad} outside [0, {n})")
        index = torch.where(valid, n * target + pred, n * n)
        self.matrix += torch.bincount(index, minlength=n * n + 1)[: n * n].reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts (e.g. from another worker) into this one."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def compute(self) -> dict[str, Any]:
        """Metrics as plain Python numbers.

        ``iou[c]`` is NaN for a class absent from both prediction and target, and
        ``accuracy[c]`` (recall) is NaN for a class absent from the target; the means skip NaNs.
        ``fw_iou`` weights each class's IoU by its share of target pixels.
        """
        m = self.matrix.double()
        tp, gt, pr = m.diag(), m.sum(1), m.sum(0)
        total = m.sum()
        iou = tp / (gt + pr - tp)  # 0/0 -> NaN for classes absent from both
        acc = tp / gt
        freq = gt / total
        present = gt > 0
        return {
            "miou": _nanmean(iou),
            "iou": iou.tolist(),
            "pixel_accuracy": (tp.sum() / total).item() if total > 0 else math.nan,
            "mean_accuracy": _nanmean(acc),
            "accuracy": acc.tolist(),
            "fw_iou": (freq[present] * iou[present]).sum().item() if total > 0 else math.nan,
            "num_pixels": int(total.item()),
        }


def _nanmean(values: torch.Tensor) -> float:
    valid = ~values.isnan()
    return values[valid].mean().item() if valid.any() else math.nan
