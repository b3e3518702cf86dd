"""MaskLab's direction features (Chen et al., CVPR 2018): each pixel of an instance is labelled
with the bin of its direction from the instance's box centre (``num_directions`` angles x
``num_distances`` distances), and direction pooling assembles, for a box, each cell from the
channel of the bin that cell lies in relative to the box centre (position-sensitive pooling on a
polar grid, as R-FCN / FCIS do on a square one). Pixels of a touching instance of the same class
lie in other bins relative to this box's centre, so the pooled map separates them.

Bins are in box-normalised coordinates ``u = (x - cx) / (w / 2)``, ``v = (y - cy) / (h / 2)``:
angle bin ``floor(atan2(v, u) mod 2 pi / (2 pi / num_directions))``, distance bin
``min(floor(sqrt(u^2 + v^2) * num_distances), num_distances - 1)``; bin = angle * distances +
distance. 8 x 4 bins: recalled, unverified.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import roi_align

NUM_DIRECTIONS = 8
NUM_DISTANCES = 4


def direction_bin(
    u: Tensor, v: Tensor, num_directions: int = NUM_DIRECTIONS, num_distances: int = NUM_DISTANCES
) -> Tensor:
    """The bin of box-normalised offsets ``(u, v)`` from a box centre (module docstring)."""
    angle = torch.atan2(v, u) % (2 * math.pi)
    a = (angle / (2 * math.pi / num_directions)).floor().long().clamp(0, num_directions - 1)
    d = (torch.sqrt(u**2 + v**2) * num_distances).floor().long().clamp(0, num_distances - 1)
    return a * num_distances + d


def _normalised(offset: Tensor, size: float) -> Tensor:
    """Box-normalised coordinate of the pixel centres ``offset`` pixels into a box ``size``
    long (one formula for targets and pooling, so both give the same bin to the same pixel)."""
    return (offset + 0.5 - size / 2) / (size / 2)


def direction_pool(
    directions: Tensor,
    boxes: Tensor,
    output_size: tuple[int, int],
    *,
    num_directions: int = NUM_DIRECTIONS,
    num_distances: int = NUM_DISTANCES,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
) -> Tensor:
    """``[B, 1, S_h, S_w]``: for each box (``[B, 5]`` rows ``(image index, x1, y1, x2, y2)`` in
    input pixels, continuous coordinates), every bin channel of ``directions`` ``[N, D*R, H, W]``
    cropped by ``roi_align(aligned=True)`` and each output cell taken from the channel of the bin
    its centre lies in relative to the box centre."""
    bins = num_directions * num_distances
    if directions.ndim != 4 or directions.shape[1] != bins:
        raise ValueError(
            f"directions must be [N, {bins}, H, W] ({num_directions} x {num_distances} bins), "
            f"got {tuple(directions.shape)}"
        )
    crops = roi_align(
        directions, boxes.to(directions.dtype), output_size, spatial_scale, sampling_ratio,
        aligned=True,
    )  # fmt: skip  # [B, bins, S_h, S_w]
    s_h, s_w = output_size
    v = _normalised(torch.arange(s_h, device=directions.device, dtype=torch.float32), s_h)
    u = _normalised(torch.arange(s_w, device=directions.device, dtype=torch.float32), s_w)
    grid_v, grid_u = torch.meshgrid(v, u, indexing="ij")
    chosen = direction_bin(grid_u, grid_v, num_directions, num_distances)  # [S_h, S_w]
    index = chosen.expand(crops.shape[0], 1, s_h, s_w)
    return crops.gather(1, index)


def direction_targets(
    masks: Tensor,
    *,
    num_directions: int = NUM_DIRECTIONS,
    num_distances: int = NUM_DISTANCES,
    ignore_index: int = 255,
) -> Tensor:
    """``[H, W]`` direction bins of the pixels of ``masks`` (bool ``[P, H, W]``, one instance
    each), relative to each instance's own box centre; ``ignore_index`` off instances and where
    instances overlap."""
    p, h, w = masks.shape
    out = torch.full((h, w), ignore_index, dtype=torch.long, device=masks.device)
    if p == 0:
        return out
    ys, xs = torch.meshgrid(
        torch.arange(h, device=masks.device, dtype=torch.float32),
        torch.arange(w, device=masks.device, dtype=torch.float32),
        indexing="ij",
    )  # pixel indices
    alone = masks.sum(0) == 1
    for mask in masks:
        if not mask.any():
            continue
        x1, y1, x2, y2 = mask_box(mask).tolist()
        u = _normalised(xs - x1, x2 - x1)
        v = _normalised(ys - y1, y2 - y1)
        bins = direction_bin(u, v, num_directions, num_distances)
        own = mask & alone
        out[own] = bins[own]
    return out


def mask_box(mask: Tensor) -> Tensor:
    """The ``(x1, y1, x2, y2)`` box of a bool ``[H, W]`` mask in continuous coordinates."""
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    return torch.tensor(
        [float(cols.min()), float(rows.min()), float(cols.max()) + 1, float(rows.max()) + 1]
    )


def flip_permutation(
    num_directions: int = NUM_DIRECTIONS, num_distances: int = NUM_DISTANCES
) -> Tensor:
    """Bin ``b`` of an image -> its bin in the left-right mirrored image: ``u -> -u`` turns
    angle ``t`` into ``pi - t``, so angle bin ``a`` becomes ``D / 2 - 1 - a`` (mod ``D``) and
    the distance stays (e.g. to flip direction logits for test-time augmentation). Pixels
    exactly on a bin edge (``v = 0``, a diagonal) may map to the neighbouring bin."""
    if num_directions % 2:
        raise ValueError(f"a flip permutes an even number of angle bins, not {num_directions}")
    angle = torch.arange(num_directions)
    mirrored = (num_directions // 2 - 1 - angle) % num_directions
    distance = torch.arange(num_distances)
    return (mirrored[:, None] * num_distances + distance[None, :]).reshape(-1)
