"""Boundary ("trimap") mIoU: mIoU counted only in a band around ground-truth object boundaries.

DeepLab v2 (Chen et al., TPAMI 2017, Sec. 4.1 and Fig. 5; already in DeepLab v1, Sec. 5) measures
how sharp the predicted boundaries are by computing mIoU over the pixels that lie within a narrow
band of width ``w`` (1 to 40 pixels) around object boundaries, a protocol first used by Kohli et
al. (CVPR 2009). On PASCAL VOC the boundary is marked by the 5-pixel-wide "void" (255) outlines of
the ground truth, so the band there is the labelled pixels close to the void outlines.

Definitions used here (``ignore_index`` marks void pixels):

* A *boundary pixel* is a non-void pixel with a 4-neighbour (inside the image) carrying another
  label. With ``void_as_boundary=True`` (the default, the DeepLab/VOC protocol) a void
  neighbour counts as another label, so labelled pixels touching a void outline are boundary
  pixels; with ``void_as_boundary=False`` void neighbours are skipped and only changes between
  two non-void labels make a boundary. The image border is not a boundary.
* The *band* of width ``w >= 1`` is the set of non-void pixels whose Chebyshev (chessboard)
  distance to the nearest boundary pixel is ``< w``: the boundary pixels dilated by a
  ``(2w-1) x (2w-1)`` square. Width 1 is the boundary pixels themselves, and ``band(w)`` is a
  subset of ``band(w+1)``. Void pixels are never in the band. An image with no boundary pixel
  (one label everywhere) has an empty band.

The band is grown by repeated 3x3 max-pool dilations in torch into one capped distance map, so
all widths up to 40 cost 39 cheap pooling passes per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from ..data.info import IGNORE_INDEX
from .confusion import ConfusionMatrix

# DeepLab v2 Fig. 5 plots trimap widths from 1 to 40 pixels.
DEFAULT_WIDTHS: tuple[int, ...] = tuple(range(1, 41))


def _as_batch(target: torch.Tensor, name: str = "target") -> torch.Tensor:
    target = torch.as_tensor(target)
    if target.is_floating_point():
        raise TypeError(f"{name} must hold class ids (an integer tensor), not {target.dtype}")
    if target.dim() == 2:
        return target.unsqueeze(0)
    if target.dim() == 3:
        return target
    raise ValueError(f"{name} must be [H,W] or [N,H,W], got shape {tuple(target.shape)}")


def boundary_pixels(
    target: torch.Tensor, ignore_index: int = IGNORE_INDEX, void_as_boundary: bool = True
) -> torch.Tensor:
    """Boundary pixels (see the module docstring) of an ``[H,W]`` or ``[N,H,W]`` label map."""
    batch = _as_batch(target)
    valid = batch != ignore_index
    edge = torch.zeros_like(valid)
    # Compare each pixel with its right (dim 2) and lower (dim 1) neighbour; a label change
    # marks both of its ends (void ends are never marked).
    for dim in (2, 1):
        n = batch.shape[dim]
        a, b = batch.narrow(dim, 0, n - 1), batch.narrow(dim, 1, n - 1)
        va, vb = valid.narrow(dim, 0, n - 1), valid.narrow(dim, 1, n - 1)
        differ = a != b
        if not void_as_boundary:
            differ &= va & vb
        edge.narrow(dim, 0, n - 1).logical_or_(differ & va)
        edge.narrow(dim, 1, n - 1).logical_or_(differ & vb)
    return edge.reshape(torch.as_tensor(target).shape)


def _boundary_distance(
    batch: torch.Tensor, max_width: int, ignore_index: int, void_as_boundary: bool
) -> torch.Tensor:
    """Chessboard distance of each pixel of ``batch`` ([N,H,W]) to the nearest boundary pixel,
    capped at ``max_width``; void pixels get ``max_width``. ``band(w) = distance < w``."""
    reached = boundary_pixels(batch, ignore_index, void_as_boundary).unsqueeze(1).float()
    dist = (reached == 0).long()
    for _ in range(max_width - 1):
        if bool(reached.all()):
            break
        # One 3x3 dilation raises the covered Chebyshev radius by one pixel.
        reached = F.max_pool2d(reached, kernel_size=3, stride=1, padding=1)
        dist += reached == 0
    dist = dist.squeeze(1)
    return dist.masked_fill_(batch == ignore_index, max_width)


def _check_widths(widths: Iterable[int]) -> tuple[int, ...]:
    ws = tuple(sorted({int(w) for w in widths}))
    if not ws or ws[0] < 1:
        raise ValueError(f"trimap widths must be integers >= 1, got {list(widths)}")
    return ws


def trimap_band(
    target: torch.Tensor,
    width: int,
    ignore_index: int = IGNORE_INDEX,
    void_as_boundary: bool = True,
) -> torch.Tensor:
    """Pixels of ``target`` ([H,W] or [N,H,W]) within ``width`` of a label boundary.

    Returns a bool tensor of the same shape: non-void pixels whose chessboard distance to the
    nearest boundary pixel is ``< width`` (see the module docstring for the exact definition and
    for ``void_as_boundary``).
    """
    if int(width) < 1:
        raise ValueError(f"trimap width must be >= 1, got {width}")
    batch = _as_batch(target)
    band = _boundary_distance(batch, int(width), ignore_index, void_as_boundary) < int(width)
    return band.reshape(torch.as_tensor(target).shape)


class TrimapIoU:
    """mIoU within trimap bands of several widths (DeepLab v2 Sec. 4.1, Fig. 5).

    Keeps one :class:`ConfusionMatrix` per width, counting only the pixels inside that width's
    band: the counts of ``ConfusionMatrix.update(pred, target)`` with the pixels outside the band
    set to ``ignore_index`` in a copy of the target, done here in one ``bincount``. ``pred`` and
    ``target`` are class-id tensors of shape ``[H,W]`` or ``[N,H,W]``.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Iterable[int] = DEFAULT_WIDTHS,
        ignore_index: int = IGNORE_INDEX,
        void_as_boundary: bool = True,
    ) -> None:
        self.num_classes = num_classes
        self.widths = _check_widths(widths)
        self.ignore_index = ignore_index
        self.void_as_boundary = void_as_boundary
        self.matrices = {w: ConfusionMatrix(num_classes, ignore_index) for w in self.widths}

    def reset(self) -> None:
        for cm in self.matrices.values():
            cm.reset()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a prediction/target pair (``[H,W]`` or ``[N,H,W]`` class ids)."""
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}"
            )
        pred, target = _as_batch(pred, "prediction"), _as_batch(target)
        n, k = self.num_classes, len(self.widths)
        # Bands are nested, so each pixel gets the index of the first width whose band holds it
        # (k: none) and one bincount over (level, target, pred) serves every width; a cumulative
        # sum over levels gives the band-restricted confusion matrix of each width.
        dist = _boundary_distance(target, self.widths[-1], self.ignore_index, self.void_as_boundary)
        bounds = torch.tensor(self.widths, device=dist.device)
        level = torch.searchsorted(bounds, dist, right=True)  # first width w with dist < w
        keep = level < k
        t, p, lv = target[keep].long(), pred[keep].long(), level[keep]
        for name, ids in (("target", t), ("prediction", p)):
            if ids.numel() and (ids.min() < 0 or ids.max() >= n):
                bad = sorted(torch.unique(ids[(ids < 0) | (ids >= n)]).tolist())[:10]
                raise ValueError(f"{name} holds class ids {bad} outside [0, {n})")
        counts = torch.bincount((lv * n + t) * n + p, minlength=k * n * n)
        counts = counts.reshape(k, n, n).cumsum(0)
        for i, w in enumerate(self.widths):
            cm = self.matrices[w]
            cm.matrix += counts[i].to(cm.matrix.device)

    def merge(self, other: TrimapIoU) -> TrimapIoU:
        """Add another accumulator's counts (same classes and widths) into this one."""
        if other.widths != self.widths or other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge TrimapIoU({other.num_classes} classes, widths {other.widths}) "
                f"into TrimapIoU({self.num_classes} classes, widths {self.widths})"
            )
        for w in self.widths:
            self.matrices[w].merge(other.matrices[w])
        return self

    def compute(self) -> dict[str, Any]:
        """Per-width results as plain Python values.

        ``{"widths": [w, ...], "miou": {w: miou}, "iou": {w: [per-class IoU]},
        "num_pixels": {w: pixels counted}}``; NaN conventions follow
        :meth:`ConfusionMatrix.compute` (NaN mIoU for a width with no counted pixel).
        """
        results = {w: cm.compute() for w, cm in self.matrices.items()}
        return {
            "widths": list(self.widths),
            "miou": {w: r["miou"] for w, r in results.items()},
            "iou": {w: r["iou"] for w, r in results.items()},
            "num_pixels": {w: r["num_pixels"] for w, r in results.items()},
        }
