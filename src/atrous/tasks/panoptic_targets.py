"""Panoptic-DeepLab's training targets and losses (Cheng et al., CVPR 2020; the deeplab2 and
detectron2 conventions).

Targets come from ``[N, 2, H, W]`` masks: channel 0 the semantic train ids (255 = void), channel
1 the instance ids (0 = none). A thing instance is a (thing class, instance > 0) region; a thing
pixel with instance 0 is crowd. Centre heatmap: a Gaussian (sigma 8, a window of 6 sigma + 3
with its peak at 3 sigma + 1) at each instance's rounded centre of mass, overlaps by max;
offsets: from each instance pixel to its (float) centre. Crowd and void are ignored by the centre
and offset losses, stuff by the offset loss; pixels of instances under 4096 pixels weigh 3x in
the semantic loss.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.info import IGNORE_INDEX
from .losses import kept_pixel_count

SIGMA = 8.0
SMALL_AREA = 4096  # 64 x 64
SMALL_WEIGHT = 3.0
CENTER_WEIGHT = 200.0
OFFSET_WEIGHT = 0.01


def panoptic_targets(
    masks: Tensor,
    thing_classes: Iterable[int],
    *,
    sigma: float = SIGMA,
    small_area: int = SMALL_AREA,
    small_weight: float = SMALL_WEIGHT,
) -> dict[str, Tensor]:
    """``{"semantic" [N,H,W], "semantic_weight" [N,H,W], "center" [N,1,H,W], "center_weight"
    [N,1,H,W], "offset" [N,2,H,W] (dy, dx), "offset_weight" [N,1,H,W]}`` for ``masks``."""
    if masks.ndim != 4 or masks.shape[1] != 2:
        raise ValueError(
            f"panoptic masks must be [N, 2, H, W] (semantic, instance), got {tuple(masks.shape)}"
        )
    semantic, instance = masks[:, 0].long(), masks[:, 1].long()
    n, h, w = semantic.shape
    device = masks.device
    things = torch.tensor(sorted(set(int(c) for c in thing_classes)), device=device)
    is_thing = (
        torch.isin(semantic, things)
        if things.numel()
        else torch.zeros_like(semantic, dtype=torch.bool)
    )
    void = semantic == IGNORE_INDEX
    crowd = is_thing & (instance == 0)
    member = is_thing & (instance > 0) & ~void
    center = torch.zeros(n, 1, h, w, device=device)
    offset = torch.zeros(n, 2, h, w, device=device)
    semantic_weight = torch.ones(n, h, w, device=device)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    radius = int(3 * sigma + 1)
    window = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    gaussian = torch.exp(-(window[:, None] ** 2 + window[None, :] ** 2) / (2 * sigma**2))
    for i in range(n):
        keys = semantic[i] * 1_000_000 + instance[i]  # one id per (class, instance)
        ids, inverse = torch.unique(keys[member[i]], return_inverse=True)
        if ids.numel() == 0:
            continue
        count = torch.bincount(inverse, minlength=len(ids)).float()
        cy = torch.zeros(len(ids), device=device).index_add_(0, inverse, ys[member[i]]) / count
        cx = torch.zeros(len(ids), device=device).index_add_(0, inverse, xs[member[i]]) / count
        offset[i, 0][member[i]] = cy[inverse] - ys[member[i]]
        offset[i, 1][member[i]] = cx[inverse] - xs[member[i]]
        small = count < small_area
        weights = torch.where(small, torch.full_like(count, small_weight), torch.ones_like(count))
        semantic_weight[i][member[i]] = weights[inverse]
        for y, x in zip(cy.round().long().tolist(), cx.round().long().tolist(), strict=True):
            y0, y1, x0, x1 = (
                max(0, y - radius),
                min(h, y + radius + 1),
                max(0, x - radius),
                min(w, x + radius + 1),
            )
            patch = gaussian[y0 - y + radius : y1 - y + radius, x0 - x + radius : x1 - x + radius]
            center[i, 0, y0:y1, x0:x1] = torch.maximum(center[i, 0, y0:y1, x0:x1], patch)
    ignore = (crowd | void).unsqueeze(1)
    return {
        "semantic": semantic,
        "semantic_weight": semantic_weight,
        "center": center,
        "center_weight": (~ignore).float(),
        "offset": offset,
        "offset_weight": member.unsqueeze(1).float(),
    }


def panoptic_loss(
    outputs: dict[str, Tensor],
    targets: dict[str, Tensor],
    *,
    top_k_percent: float = 0.2,
    center_weight: float = CENTER_WEIGHT,
    offset_weight: float = OFFSET_WEIGHT,
) -> Tensor:
    """Weighted hard-pixel cross-entropy (the ``top_k_percent`` hardest of the weighted pixel
    losses) + ``center_weight`` x masked MSE on the heatmap + ``offset_weight`` x masked L1 on
    the offsets (each masked loss summed and divided by its mask's sum, as detectron2)."""
    semantic = outputs["semantic"].float()
    target = targets["semantic"]
    losses = F.cross_entropy(semantic, target, ignore_index=IGNORE_INDEX, reduction="none")
    losses = (losses * targets["semantic_weight"])[target != IGNORE_INDEX]
    if losses.numel():
        k = kept_pixel_count(losses.numel(), top_k_percent)
        semantic_loss = (
            torch.topk(losses, k, sorted=False).values.mean()
            if k < losses.numel()
            else losses.mean()
        )
    else:
        semantic_loss = semantic.sum() * 0.0
    cw, ow = targets["center_weight"], targets["offset_weight"]
    center = ((outputs["center"].float() - targets["center"]) ** 2 * cw).sum() / cw.sum().clamp_min(
        1
    )
    offset = (
        (outputs["offset"].float() - targets["offset"]).abs() * ow
    ).sum() / ow.sum().clamp_min(1)
    return semantic_loss + center_weight * center + offset_weight * offset
