"""Panoptic post-processing of Panoptic-DeepLab (Cheng et al., 2020), in torch on any device:
instance centres from the heatmap, pixels grouped to their nearest predicted centre, and the
merge with the semantic map by DeeperLab's majority vote (the deeplab2 / detectron2 semantics).

Output maps hold ``class * label_divisor + instance``; stuff has instance 0, void is
``void_label * label_divisor``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.nn import functional as F


def find_instance_centers(
    heatmap: Tensor, threshold: float = 0.1, nms_kernel: int = 7, top_k: int | None = 200
) -> Tensor:
    """Centres ``[K, 2]`` (y, x), row-major order, of an ``[H, W]`` heatmap: values above
    ``threshold`` that equal the ``nms_kernel`` max-pool around them; with more than ``top_k``,
    those strictly above the ``top_k``-th largest score (ties at it are dropped, as in both
    references)."""
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be [H, W], got {tuple(heatmap.shape)}")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be a positive odd number, got {nms_kernel}")
    scores = torch.where(heatmap > threshold, heatmap, torch.full_like(heatmap, -1.0))
    pooled = F.max_pool2d(scores[None, None], nms_kernel, stride=1, padding=nms_kernel // 2)[0, 0]
    keep = (scores == pooled) & (scores > threshold)
    if top_k is not None and int(keep.sum()) > top_k:
        kth = torch.topk(scores[keep], top_k).values[-1]
        keep &= scores > kth
    return keep.nonzero()


def group_pixels(
    centers: Tensor, offsets: Tensor, mask: Tensor | None = None, chunk: int = 1 << 18
) -> Tensor:
    """Instance ids ``[H, W]``: each pixel goes to the centre nearest to where its offset
    points (``offsets`` ``[2, H, W]``, (dy, dx) from the pixel to its centre), as id
    ``index + 1`` (ties to the lower id); 0 where ``mask`` (``[H, W]`` bool) is False or when
    there are no centres. Pixels are done ``chunk`` at a time, so 1024 x 2048 maps stay small."""
    _, h, w = offsets.shape
    out = torch.zeros(h * w, dtype=torch.int64, device=offsets.device)
    if centers.numel() == 0:
        return out.view(h, w)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=offsets.device), torch.arange(w, device=offsets.device),
        indexing="ij",
    )  # fmt: skip
    points = torch.stack([ys + offsets[0], xs + offsets[1]], dim=-1).view(-1, 2).float()
    chosen = torch.arange(h * w, device=offsets.device)
    if mask is not None:
        chosen = chosen[mask.reshape(-1)]
    c = centers.float()
    for start in range(0, chosen.numel(), chunk):
        index = chosen[start : start + chunk]
        distance = torch.cdist(points[index], c, compute_mode="donot_use_mm_for_euclid_dist")
        out[index] = distance.argmin(dim=1) + 1  # argmin returns the first (lowest) of ties
    return out.view(h, w)


def merge_semantic_and_instance(
    semantic: Tensor,
    instance: Tensor,
    thing_classes: Iterable[int],
    label_divisor: int = 1000,
    stuff_area: int = 2048,
    void_label: int = 255,
) -> Tensor:
    """The panoptic map ``[H, W]`` of ``semantic`` class ids and ``instance`` ids (0 = none):
    each instance takes the majority semantic class over its thing pixels (ties to the lower
    class) and a per-class number from 1 in order of instance id; each stuff class's pixels
    outside instances are kept when they cover at least ``stuff_area`` pixels, else void."""
    things = torch.tensor(sorted(set(int(c) for c in thing_classes)), device=semantic.device)
    is_thing = (
        torch.isin(semantic, things)
        if things.numel()
        else torch.zeros_like(semantic, dtype=torch.bool)
    )
    out = torch.full_like(semantic, void_label * label_divisor)
    num_classes = int(semantic.max()) + 1 if semantic.numel() else 1
    ids = instance * is_thing
    count = int(ids.max()) + 1 if ids.numel() else 1
    votes = torch.bincount(
        (ids * num_classes + semantic).reshape(-1), minlength=count * num_classes
    ).view(count, num_classes)
    present = votes[1:].sum(1) > 0
    classes = votes[1:].argmax(1)
    numbers = torch.zeros(count, dtype=torch.int64, device=semantic.device)
    if present.any():
        kept = classes[present]
        # per-class counter: the rank of each instance among those of its class (by id)
        one_hot = F.one_hot(kept, num_classes)
        numbers[1:][present] = (one_hot.cumsum(0) * one_hot).sum(1)
    labels = torch.zeros(count, dtype=torch.int64, device=semantic.device)
    labels[1:] = classes * label_divisor + numbers[1:]
    thing_pixels = ids > 0
    out[thing_pixels] = labels[ids[thing_pixels]]
    stuff = ~is_thing & (instance * is_thing == 0) & (semantic != void_label)
    areas = torch.bincount(semantic[stuff].reshape(-1), minlength=num_classes)
    big = areas >= stuff_area
    keep = stuff & big[semantic.clamp(0, num_classes - 1)]
    out[keep] = semantic[keep] * label_divisor
    return out


def panoptic_from_outputs(
    semantic_logits: Tensor,
    center_heatmap: Tensor,
    offsets: Tensor,
    thing_classes: Iterable[int],
    *,
    label_divisor: int = 1000,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int = 200,
    stuff_area: int = 2048,
    void_label: int = 255,
) -> Tensor:
    """Batched: ``[N, C, H, W]`` semantic logits, ``[N, 1, H, W]`` centre heatmaps and
    ``[N, 2, H, W]`` offsets -> ``[N, H, W]`` panoptic ids, image by image."""
    things = list(thing_classes)
    semantic = semantic_logits.argmax(1)
    maps = []
    for sem, heat, off in zip(semantic, center_heatmap, offsets, strict=True):
        centers = find_instance_centers(heat[0], threshold, nms_kernel, top_k)
        mask = torch.isin(sem, torch.tensor(things, device=sem.device)) if things else None
        instance = group_pixels(centers, off, mask)
        maps.append(
            merge_semantic_and_instance(
                sem, instance, things, label_divisor, stuff_area, void_label
            )
        )
    return torch.stack(maps)


@torch.no_grad()
def predict_panoptic(model: torch.nn.Module, x: Tensor, **options: float) -> Tensor:
    """Panoptic ids ``[N, H, W]`` of a :class:`~atrous.models.PanopticDeepLab` on a normalized
    batch ``x``: its three outputs through :func:`panoptic_from_outputs` (``options``:
    threshold, nms_kernel, top_k, stuff_area, void_label)."""
    outputs = model.forward_panoptic(x)
    return panoptic_from_outputs(
        outputs["semantic"], outputs["center"], outputs["offset"], model.thing_classes,
        label_divisor=model.label_divisor, **options,  # type: ignore[arg-type]
    )  # fmt: skip
