"""PersonLab's training targets and losses (Papandreou et al., ECCV 2018, Sec. 3).

Keypoints come in COCO's continuous pixel coordinates (pixel ``(row i, col j)`` covers ``[j,
j + 1) x [i, i + 1)``, its centre at ``(j + 0.5, i + 0.5)``); offsets are measured from pixel
centres, in pixels, ``(x, y)``; inside, a pixel's centre sits at ``x = col, y = row``. For
keypoint type ``k`` and person ``j`` with keypoint ``y_jk``, a pixel ``x`` in the disk
``D_R(y_jk)`` gets heatmap 1 and short offset ``y_jk - x`` (the nearest such keypoint where
disks overlap); in that disk the mid-range offset of each tree edge ``k -> l`` is
``y_jl - x`` where ``y_jl`` is labelled; each pixel of person ``j``'s mask gets the long-range
offset ``y_jk - x`` for every labelled ``k``; the segmentation is the union of the masks.

Layout of one image's targets (``[N, ...]`` once batched): ``heatmap`` ``[K,H,W]``, ``short``
``[K,2,H,W]``, ``mid`` ``[2E,2,H,W]`` (the ``E`` tree edges parent -> child, then the same
edges child -> parent), ``long`` ``[K,2,H,W]``, ``seg`` ``[H,W]``, and a ``*_weight`` map per
loss (0 where the loss does not look).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.person_keypoints import TREE_EDGES

RADIUS = 32.0
"""The disk radius R, in input pixels (paper, Sec. 3.1: "R = 32 pixels")."""

LOSS_WEIGHTS = {"heatmap": 4.0, "seg": 2.0, "short": 1.0, "mid": 0.25, "long": 0.125}
"""Loss weights of the KerasPersonLab port's config (read in it; another port uses 4 / 2 / 1 /
0.4 / 0.1). The paper's own weights: recalled, unverified."""


def directed_edges(edges: Sequence[tuple[int, int]] = TREE_EDGES) -> list[tuple[int, int]]:
    """The mid-range offset channels: each tree edge parent -> child, then child -> parent."""
    return [*edges, *((b, a) for a, b in edges)]


def _grid(h: int, w: int, device: torch.device) -> Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys])  # [2, H, W], (x, y)


def encode(
    persons: Sequence[dict[str, Any]],
    size: tuple[int, int],
    radius: float = RADIUS,
    *,
    edges: Sequence[tuple[int, int]] = TREE_EDGES,
    ignore: Tensor | None = None,
) -> dict[str, Tensor]:
    """Training targets of one ``size = (H, W)`` image (see the module docstring for the
    layout). Each person is ``{"keypoints": [K, 3] (x, y, visibility 0/1/2), "mask": bool
    [H, W]}`` and may say ``"crowd": True``. Crowd regions and people without a labelled keypoint
    are left out of every keypoint loss (the paper ignores crowd and unannotated people); crowd
    also out of the segmentation loss. ``ignore`` (bool ``[H, W]``) is left out of all of them."""
    h, w = int(size[0]), int(size[1])
    device = torch.device("cpu")
    if persons:
        device = torch.as_tensor(persons[0]["keypoints"]).device
    k = int(torch.as_tensor(persons[0]["keypoints"]).shape[0]) if persons else 17
    directed = directed_edges(edges)
    bad = [e for e in directed if not (0 <= e[0] < k and 0 <= e[1] < k)]
    if bad:
        raise ValueError(f"tree edges {bad} name keypoints outside [0, {k})")
    grid = _grid(h, w, device)
    crowd = torch.zeros(h, w, dtype=torch.bool, device=device)
    unannotated = torch.zeros_like(crowd)
    seg = torch.zeros(h, w, device=device)
    people_kp, people_masks = [], []
    for index, person in enumerate(persons):
        points = torch.as_tensor(person["keypoints"], dtype=torch.float32, device=device)
        mask = torch.as_tensor(person["mask"], device=device).bool()
        if points.shape != (k, 3):
            raise ValueError(
                f"person {index}: keypoints must be [{k}, 3], got {tuple(points.shape)}"
            )
        if mask.shape != (h, w):
            raise ValueError(f"person {index}: mask must be [{h}, {w}], got {tuple(mask.shape)}")
        if person.get("crowd", False):
            crowd |= mask
        elif not bool((points[:, 2] > 0).any()):
            unannotated |= mask
            seg[mask] = 1.0
        else:
            seg[mask] = 1.0
            people_kp.append(points)
            people_masks.append(mask)
    skip = crowd | unannotated
    if ignore is not None:
        skip = skip | ignore.to(device).bool()
    keep = (~skip).float()
    seg_weight = (~crowd).float()
    if ignore is not None:
        seg_weight = seg_weight * (~ignore.to(device).bool()).float()
    if not people_kp:  # nobody to encode: every keypoint map empty
        heatmap = torch.zeros(k, h, w, device=device)
        short = torch.zeros(k, 2, h, w, device=device)
        mid = torch.zeros(len(directed), 2, h, w, device=device)
        mid_weight = torch.zeros(len(directed), h, w, device=device)
        long = torch.zeros(k, 2, h, w, device=device)
        long_weight = torch.zeros(k, h, w, device=device)
    else:
        points = torch.stack(people_kp)  # [J, K, 3]
        labelled = points[..., 2] > 0  # [J, K]
        xy = points[..., :2] - 0.5  # continuous coordinates -> pixel-centre coordinates
        # who[k]: for each pixel the person of the nearest labelled keypoint k, inside: within R
        # (all keypoint types at once: [J, K, H, W] squared distances)
        d2 = (grid[0] - xy[..., 0, None, None]) ** 2 + (grid[1] - xy[..., 1, None, None]) ** 2
        d2 = d2.masked_fill(~labelled[..., None, None], float("inf"))
        nearest, who = d2.min(0)  # [K, H, W]
        inside = nearest <= radius**2
        heatmap = inside.float()
        kk = torch.arange(k, device=device)[:, None, None]
        short = (xy[who, kk].permute(0, 3, 1, 2) - grid) * inside[:, None]
        a = torch.tensor([e[0] for e in directed], device=device)
        b = torch.tensor([e[1] for e in directed], device=device)[:, None, None]
        start = who[a]  # [2E, H, W]: whose disk of the edge's start keypoint each pixel is in
        valid = inside[a] & labelled[start, b]
        mid = (xy[start, b].permute(0, 3, 1, 2) - grid) * valid[:, None]
        mid_weight = valid.float()
        masks = torch.stack(people_masks)  # [J, H, W]
        alone = masks.sum(0) == 1  # no long-range loss where masks overlap
        person = masks.float().argmax(0)  # [H, W]
        valid = alone & labelled[person].permute(2, 0, 1)  # [K, H, W]
        long = (xy[person].permute(2, 3, 0, 1) - grid) * valid[:, None]
        long_weight = valid.float()
    disks = heatmap > 0
    return {
        "heatmap": heatmap,
        "heatmap_weight": keep,
        "short": short,
        "short_weight": disks.float() * keep,
        "mid": mid,
        "mid_weight": mid_weight * keep,
        "long": long,
        "long_weight": long_weight * keep,
        "seg": seg,
        "seg_weight": seg_weight,
    }


def _masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def personlab_loss(
    outputs: dict[str, Tensor],
    targets: dict[str, Tensor],
    *,
    radius: float = RADIUS,
    weights: dict[str, float] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of PersonLab's five losses and each one (detached): logistic loss on
    the heatmaps and the segmentation (``outputs["heatmap_logits"]``, ``["seg_logits"]``), L1
    on the short, (refined) mid and (refined) long offsets divided by ``radius`` (Sec. 3.1-3.3),
    each averaged over the pixels its weight map keeps."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    parts = {
        "heatmap": _masked_mean(
            F.binary_cross_entropy_with_logits(
                outputs["heatmap_logits"].float(), targets["heatmap"], reduction="none"
            ),
            targets["heatmap_weight"].unsqueeze(1),
        ),
        "seg": _masked_mean(
            F.binary_cross_entropy_with_logits(
                outputs["seg_logits"].float(), targets["seg"], reduction="none"
            ),
            targets["seg_weight"],
        ),
    }
    for key in ("short", "mid", "long"):
        l1 = (outputs[key].float() - targets[key]).abs().sum(2) / radius  # [N, C, H, W]
        parts[key] = _masked_mean(l1, targets[f"{key}_weight"])
    total = sum(w[key] * value for key, value in parts.items())
    return total, {key: value.detach() for key, value in parts.items()}  # type: ignore[return-value]
