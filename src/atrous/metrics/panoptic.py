"""Panoptic metrics on id maps (``class * label_divisor + instance``): Panoptic Quality (Kirillov
et al., 2019) and Parsing Covering (DeeperLab, Yang et al., 2019), with deeplab2's semantics.

Segments are the distinct ids of a map. Void is the ``ignore_label`` category (instance 0);
crowd is a GT segment of a thing class with instance 0 (no instance: the Cityscapes and COCO
"iscrowd" regions) or of the ``ignore_label`` category with an instance. Both accumulate per
class over images, as ``ConfusionMatrix`` does, with no Python loop over pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _as_batch(ids: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(ids) if isinstance(ids, np.ndarray) else ids)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold panoptic ids (integers), not {t.dtype}")
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(f"{name} must be [H, W] or [N, H, W], got {tuple(t.shape)}")
    return t.to(torch.int64).cpu()


def _pairs(gt: Tensor, pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct (gt id, pred id) pairs of one image and their pixel counts."""
    offset = int(max(int(gt.max()), int(pred.max()))) + 1
    keys, counts = torch.unique(gt.reshape(-1) * offset + pred.reshape(-1), return_counts=True)
    return keys // offset, keys % offset, counts


class _Panoptic:
    def __init__(
        self,
        num_classes: int,
        *,
        ignore_label: int = 255,
        label_divisor: int = 1000,
        thing_classes: Iterable[int] | None = None,
    ) -> None:
        if label_divisor < 1:
            raise ValueError(f"label_divisor must be positive, got {label_divisor}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.label_divisor = label_divisor
        self.thing_classes = frozenset(int(c) for c in (thing_classes or ()))
        self.reset()

    def _check(self, pred: Any, target: Any) -> tuple[Tensor, Tensor]:
        p, t = _as_batch(pred, "pred"), _as_batch(target, "target")
        if p.shape != t.shape:
            raise ValueError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
        for name, ids in (("pred", p), ("target", t)):
            classes = ids // self.label_divisor
            outside = (classes < 0) | (classes >= self.num_classes)
            bad = classes[(classes != self.ignore_label) & outside]
            if bad.numel():
                raise ValueError(
                    f"{name} holds classes {sorted(set(bad.unique().tolist()))[:5]} outside "
                    f"[0, {self.num_classes}) and the ignore label {self.ignore_label} (ids are "
                    f"class * {self.label_divisor} + instance)"
                )
        return p, t

    def _split(self, results: Sequence[float], classes: Sequence[int]) -> dict[str, float]:
        def mean(subset: list[int]) -> float:
            values = [results[c] for c in subset]
            return float(np.mean(values)) if values else 0.0

        things = [c for c in classes if c in self.thing_classes]
        stuff = [c for c in classes if c not in self.thing_classes]
        return {"all": mean(list(classes)), "things": mean(things), "stuff": mean(stuff)}


class PanopticQuality(_Panoptic):
    """PQ = SQ x RQ per class: a predicted and a GT segment of one class match when their IoU
    is above 0.5 (the void segment left out of the union); unmatched GT segments are FN (not
    void or crowd), unmatched predictions FP unless more than half of them lies on void or on
    crowd of their class. ``compute()`` averages over the classes with any TP, FN or FP."""

    def reset(self) -> None:
        n = self.num_classes
        self.iou = torch.zeros(n, dtype=torch.float64)
        self.tp = torch.zeros(n, dtype=torch.int64)
        self.fn = torch.zeros(n, dtype=torch.int64)
        self.fp = torch.zeros(n, dtype=torch.int64)

    def update(self, pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> None:
        """Add panoptic id maps ``[H, W]`` or ``[N, H, W]`` (torch or numpy)."""
        p, t = self._check(pred, target)
        for pi, ti in zip(p, t, strict=True):
            self._image(pi, ti)

    def _image(self, pred: Tensor, gt: Tensor) -> None:
        d, void = self.label_divisor, self.ignore_label * self.label_divisor
        gt_ids, gt_pos = torch.unique(gt, return_inverse=True)
        gt_area = torch.bincount(gt_pos.reshape(-1), minlength=len(gt_ids))
        pred_ids, pred_pos = torch.unique(pred, return_inverse=True)
        pred_area = torch.bincount(pred_pos.reshape(-1), minlength=len(pred_ids))
        pair_gt, pair_pred, inter = _pairs(gt_pos, pred_pos)
        gt_cls, pred_cls = gt_ids // d, pred_ids // d
        gt_crowd = (gt_cls == self.ignore_label) & (gt_ids != void)
        if self.thing_classes:
            things = torch.tensor(sorted(self.thing_classes))
            gt_crowd |= torch.isin(gt_cls, things) & (gt_ids % d == 0)
        gt_void = gt_ids == void
        # each predicted segment's overlap with void, and with crowd of its own class
        on_void = torch.zeros(len(pred_ids), dtype=torch.int64)
        on_void.index_add_(0, pair_pred, inter * gt_void[pair_gt])
        same = gt_cls[pair_gt] == pred_cls[pair_pred]
        on_crowd = torch.zeros(len(pred_ids), dtype=torch.int64)
        on_crowd.index_add_(0, pair_pred, inter * (gt_crowd[pair_gt] & same))
        # matching: same class, GT neither void nor crowd, prediction not void
        pred_real = pred_cls[pair_pred] != self.ignore_label
        candidate = same & ~gt_void[pair_gt] & ~gt_crowd[pair_gt] & pred_real
        union = gt_area[pair_gt] + pred_area[pair_pred] - inter - on_void[pair_pred]
        iou = inter.double() / union.clamp_min(1).double()
        match = candidate & (iou > 0.5)
        cls = gt_cls[pair_gt][match]
        self.iou.index_add_(0, cls, iou[match])
        self.tp.index_add_(0, cls, torch.ones_like(cls))
        gt_matched = torch.zeros(len(gt_ids), dtype=torch.bool)
        gt_matched[pair_gt[match]] = True
        pred_matched = torch.zeros(len(pred_ids), dtype=torch.bool)
        pred_matched[pair_pred[match]] = True
        fn = ~gt_matched & ~gt_void & ~gt_crowd & (gt_cls != self.ignore_label)
        self.fn.index_add_(0, gt_cls[fn], torch.ones(int(fn.sum()), dtype=torch.int64))
        ignored = (on_void + on_crowd).double() / pred_area.double() > 0.5
        fp = ~pred_matched & ~ignored & (pred_cls != self.ignore_label)
        self.fp.index_add_(0, pred_cls[fp], torch.ones(int(fp.sum()), dtype=torch.int64))

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add another accumulator's counts (e.g. from another process)."""
        for name in ("iou", "tp", "fn", "fp"):
            getattr(self, name).add_(getattr(other, name))
        return self

    def compute(self) -> dict[str, Any]:
        """``{"pq", "sq", "rq"}`` (means over valid classes), ``"things"`` / ``"stuff"``
        breakdowns with the same keys, and per-class lists ``"per_class": {"pq", "sq", "rq",
        "tp", "fn", "fp"}`` (valid or not) and ``"valid"`` (class ids averaged over)."""
        tp, fn, fp = self.tp.double(), self.fn.double(), self.fp.double()
        sq = torch.where(tp > 0, self.iou / tp.clamp_min(1), torch.zeros_like(tp))
        denom = tp + 0.5 * fn + 0.5 * fp
        rq = torch.where(denom > 0, tp / denom.clamp_min(1e-12), torch.zeros_like(tp))
        pq = sq * rq
        valid = [
            c for c in range(self.num_classes)
            if c != self.ignore_label and int(self.tp[c] + self.fn[c] + self.fp[c]) > 0
        ]  # fmt: skip
        parts = {k: self._split(v.tolist(), valid) for k, v in (("pq", pq), ("sq", sq), ("rq", rq))}
        result: dict[str, Any] = {k: parts[k]["all"] for k in ("pq", "sq", "rq")}
        result["things"] = {k: parts[k]["things"] for k in ("pq", "sq", "rq")}
        result["stuff"] = {k: parts[k]["stuff"] for k in ("pq", "sq", "rq")}
        result["per_class"] = {
            "pq": pq.tolist(), "sq": sq.tolist(), "rq": rq.tolist(),
            "tp": self.tp.tolist(), "fn": self.fn.tolist(), "fp": self.fp.tolist(),
        }  # fmt: skip
        result["valid"] = valid
        return result


class ParsingCovering(_Panoptic):
    """Parsing Covering (DeeperLab): per class, the area-weighted mean over GT segments of their
    best IoU with a predicted segment of the same class; PC is the mean over classes with GT
    area. Void and crowd pixels (GT class ``ignore_label``) are dropped from both maps; with
    ``normalize_by_image_size`` each image's areas are divided by its pixel count."""

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_label: int = 255,
        label_divisor: int = 1000,
        normalize_by_image_size: bool = True,
        thing_classes: Iterable[int] | None = None,
    ) -> None:
        self.normalize_by_image_size = normalize_by_image_size
        super().__init__(
            num_classes,
            ignore_label=ignore_label,
            label_divisor=label_divisor,
            thing_classes=thing_classes,
        )

    def reset(self) -> None:
        self.covered = torch.zeros(self.num_classes, dtype=torch.float64)
        self.area = torch.zeros(self.num_classes, dtype=torch.float64)

    def update(self, pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> None:
        """Add panoptic id maps ``[H, W]`` or ``[N, H, W]`` (torch or numpy)."""
        p, t = self._check(pred, target)
        for pi, ti in zip(p, t, strict=True):
            self._image(pi, ti)

    def _image(self, pred: Tensor, gt: Tensor) -> None:
        d = self.label_divisor
        keep = gt // d != self.ignore_label
        gt, pred = gt[keep], pred[keep]
        if gt.numel() == 0:
            return
        gt_ids, gt_pos = torch.unique(gt, return_inverse=True)
        gt_area = torch.bincount(gt_pos, minlength=len(gt_ids))
        pred_ids, pred_pos = torch.unique(pred, return_inverse=True)
        pred_area = torch.bincount(pred_pos, minlength=len(pred_ids))
        pair_gt, pair_pred, inter = _pairs(gt_pos, pred_pos)
        same = gt_ids[pair_gt] // d == pred_ids[pair_pred] // d
        iou = inter.double() / (gt_area[pair_gt] + pred_area[pair_pred] - inter).double()
        best = torch.zeros(len(gt_ids), dtype=torch.float64)
        best.scatter_reduce_(0, pair_gt[same], iou[same], reduce="amax")
        scale = float(keep.numel()) if self.normalize_by_image_size else 1.0
        cls = gt_ids // d
        self.covered.index_add_(0, cls, best * gt_area.double() / scale)
        self.area.index_add_(0, cls, gt_area.double() / scale)

    def merge(self, other: ParsingCovering) -> ParsingCovering:
        self.covered.add_(other.covered)
        self.area.add_(other.area)
        return self

    def compute(self) -> dict[str, Any]:
        """``{"pc"}`` (mean over classes with GT area), ``"things"`` / ``"stuff"`` breakdowns,
        ``"per_class"`` covering and ``"valid"`` class ids."""
        ratio = self.covered / self.area.clamp_min(1e-10)
        covering = torch.where(self.area > 1e-10, ratio, torch.zeros_like(self.area))
        valid = [c for c in range(self.num_classes) if c != self.ignore_label and self.area[c] > 0]
        parts = self._split(covering.tolist(), valid)
        return {
            "pc": parts["all"],
            "things": {"pc": parts["things"]},
            "stuff": {"pc": parts["stuff"]},
            "per_class": covering.tolist(),
            "valid": valid,
        }
