"""HAZN's Auto-Zoom machinery (Xia, Wang, Chen & Yuille, ECCV 2016): an FCN predicts, per pixel,
the box of the object (first Auto-Zoom Net) or part (second) the pixel belongs to and a
confidence; confidence-weighted NMS turns the per-pixel boxes into regions; each region is
cropped with context, zoomed to a standard size, re-scored by the shared FCN, zoomed back and
merged into the image's scores.

Per-pixel box encoding (targets, :class:`ScaleHead` outputs and :func:`decode_boxes` share it):
for the pixel at column ``x``, row ``y`` (centre ``(x + 0.5, y + 0.5)`` in continuous
coordinates) inside an instance box ``(x1, y1, x2, y2)`` = ``[xmin, ymin, xmax + 1, ymax + 1]``,
the four channels are ``dx = (cx - x - 0.5) / L``, ``dy = (cy - y - 0.5) / L``,
``w = (x2 - x1) / L`` and ``h = (y2 - y1) / L``, with ``(cx, cy)`` the box centre and ``L`` the
image's longer side. The paper's exact parametrisation: recalled, unverified.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import box_iou, nms, roi_align

ZOOM_TARGET = 256
"""Longer side, in pixels, that a region is zoomed to (chosen: near the base FCN's 321 training
crops with room for context; the paper's target sizes: recalled, unverified, unknown)."""
MIN_ZOOM = 0.5
"""Smallest zoom factor: large objects are shrunk at most 2x (chosen; the paper clips the zoom,
its bounds: unknown)."""
MAX_ZOOM = 2.5
"""Largest zoom factor: small objects and parts are enlarged at most 2.5x (chosen; as above)."""
CONTEXT = 0.25
"""Margin added on each side of a region before cropping, as a fraction of the region's width
(left, right) and height (top, bottom) (chosen; the paper crops with context: recalled)."""
MERGES = ("max", "mean")  # how overlapping zoomed scores merge (the paper's max / mean: recalled)


def _pixel_centres(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``[H, W]`` continuous x and y coordinates of the pixel centres."""
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return grid_x, grid_y


def instance_boxes(instance_ids: Tensor) -> tuple[Tensor, Tensor]:
    """The ids (``> 0``) in an ``[H, W]`` id map and their boxes ``[K, 4]``
    ``[xmin, ymin, xmax + 1, ymax + 1]`` (continuous pixel coordinates)."""
    ids, inverse = torch.unique(instance_ids.flatten(), return_inverse=True)
    width = instance_ids.shape[1]
    flat = torch.arange(instance_ids.numel(), device=instance_ids.device)
    xs, ys = (flat % width).float(), (flat // width).float()
    k = len(ids)
    lo_x = xs.new_full((k,), math.inf).scatter_reduce(0, inverse, xs, "amin")
    lo_y = xs.new_full((k,), math.inf).scatter_reduce(0, inverse, ys, "amin")
    hi_x = xs.new_full((k,), -math.inf).scatter_reduce(0, inverse, xs, "amax")
    hi_y = xs.new_full((k,), -math.inf).scatter_reduce(0, inverse, ys, "amax")
    boxes = torch.stack([lo_x, lo_y, hi_x + 1, hi_y + 1], dim=1)
    keep = ids > 0
    return ids[keep], boxes[keep]


def scale_targets(instance_ids: Tensor, *, ignore: Tensor | None = None) -> dict[str, Tensor]:
    """Auto-Zoom targets from an ``[H, W]`` int64 instance id map (0 = no instance): ``boxes``
    ``[4, H, W]`` (module docstring's encoding, 0 off instances), ``confidence`` ``[H, W]`` (1 on
    instance pixels, else 0), ``weight`` ``[H, W]`` (1 where the box regression counts: instance
    pixels not in ``ignore``) and ``valid`` ``[H, W]`` bool (where the confidence counts: not in
    ``ignore``, a bool ``[H, W]`` mask of unlabelled pixels)."""
    if instance_ids.ndim != 2:
        raise ValueError(f"instance_ids must be [H, W], got {tuple(instance_ids.shape)}")
    height, width = instance_ids.shape
    longer = float(max(height, width))
    ids, boxes = instance_boxes(instance_ids)
    lookup = torch.zeros(int(instance_ids.max().clamp(min=0)) + 1, 4, device=boxes.device)
    lookup[ids] = boxes
    per_pixel = lookup[instance_ids.clamp(min=0)].permute(2, 0, 1)  # [4, H, W] x1 y1 x2 y2
    x1, y1, x2, y2 = per_pixel
    px, py = _pixel_centres(height, width, instance_ids.device)
    on = instance_ids > 0
    encoded = torch.stack(
        [((x1 + x2) / 2 - px) / longer, ((y1 + y2) / 2 - py) / longer,
         (x2 - x1) / longer, (y2 - y1) / longer]
    )  # fmt: skip
    valid = torch.ones_like(on) if ignore is None else ~ignore.bool()
    return {
        "boxes": encoded * on,
        "confidence": on.float(),
        "weight": (on & valid).float(),
        "valid": valid,
    }


class ScaleHead(nn.Module):
    """Per-pixel box and confidence from features (chosen: 3x3 conv + ReLU, then a 1x1 conv to
    the 4 box channels and one to the confidence logit; the paper's branch: unknown):
    ``[N, C, h, w]`` -> ``{"boxes": [N, 4, h, w], "confidence_logits": [N, 1, h, w]}``."""

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.boxes = nn.Conv2d(channels, 4, 1)
        self.confidence = nn.Conv2d(channels, 1, 1)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        hidden = F.relu(self.conv(features))
        return {"boxes": self.boxes(hidden), "confidence_logits": self.confidence(hidden)}


def scale_loss(
    outputs: dict[str, Tensor],
    targets: dict[str, Tensor],
    *,
    box_weight: float = 1.0,
    beta: float = 1.0,
    align_corners: bool = False,
) -> Tensor:
    """``box_weight * box + confidence``: ``box`` the smooth-L1 (``beta``) on the 4 box channels
    of weighted pixels, averaged over their weight; ``confidence`` the BCE of the confidence
    logits, averaged over valid pixels. Outputs are bilinearly upsampled to the targets' size;
    targets are :func:`scale_targets`' (``[4, H, W]``) or stacked (``[N, 4, H, W]``).
    Defaults chosen: the encoded values lie in about [-1, 1], so ``beta = 1`` is the recalled
    (unverified) L2 loss with linear tails."""
    boxes, weight, confidence = targets["boxes"], targets["weight"], targets["confidence"]
    valid = targets.get("valid", torch.ones_like(weight, dtype=torch.bool))
    if boxes.ndim == 3:
        boxes, weight, confidence, valid = (t[None] for t in (boxes, weight, confidence, valid))
    size = boxes.shape[-2:]
    pred_boxes = F.interpolate(outputs["boxes"], size, mode="bilinear", align_corners=align_corners)
    logits = F.interpolate(
        outputs["confidence_logits"], size, mode="bilinear", align_corners=align_corners
    )[:, 0]
    per_pixel = F.smooth_l1_loss(pred_boxes, boxes.to(pred_boxes), reduction="none", beta=beta)
    box = (per_pixel.sum(1) * weight).sum() / weight.sum().clamp(min=1.0)
    bce = F.binary_cross_entropy_with_logits(logits, confidence.to(logits), reduction="none")
    conf = (bce * valid).sum() / valid.sum().clamp(min=1)
    return box_weight * box + conf


def decode_boxes(boxes: Tensor, *, image_size: tuple[int, int] | None = None) -> Tensor:
    """``[h * w, 4]`` boxes ``(x1, y1, x2, y2)`` in image pixels (row-major pixel order) from an
    encoded ``[4, h, w]`` map: the exact inverse of :func:`scale_targets`. ``image_size``
    ``(H, W)`` (default: the map's own size) places a coarser map's pixel centres in the image
    (``align_corners=False``: map pixel ``j`` is centred at ``(j + 0.5) * W / w``)."""
    if boxes.ndim != 3 or boxes.shape[0] != 4:
        raise ValueError(f"boxes must be [4, H, W], got {tuple(boxes.shape)}")
    h, w = boxes.shape[-2:]
    height, width = image_size if image_size is not None else (h, w)
    longer = float(max(height, width))
    px, py = _pixel_centres(h, w, boxes.device)
    px, py = px * (width / w), py * (height / h)
    dx, dy, bw, bh = boxes.float() * longer
    cx, cy = px + dx, py + dy
    decoded = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return decoded.reshape(4, -1).T


def propose_regions(
    boxes: Tensor,
    confidence: Tensor,
    *,
    min_confidence: float = 0.5,
    iou: float = 0.5,
    max_regions: int = 16,
    stride: int = 1,
    image_size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Confidence-weighted NMS over per-pixel boxes: ``(regions [R, 4], scores [R])``, most
    confident first. Candidates are the pixels (every ``stride``-th row and column) whose
    ``confidence`` ``[H, W]`` (a probability) is above ``min_confidence``, decoded from ``boxes``
    ``[4, H, W]`` and clipped to the image; ``torchvision.ops.nms`` picks the keepers; each
    region is the confidence-weighted mean of the candidates that keeper suppressed (itself
    included: those with IoU > ``iou``, nms's rule, with no more confident keeper), its score
    the keeper's confidence. Defaults chosen (0.5 / 0.5 / 16: the paper's: unknown)."""
    h, w = boxes.shape[-2:]
    height, width = image_size if image_size is not None else (h, w)
    candidates = decode_boxes(boxes, image_size=(height, width))
    scores = confidence.float().reshape(-1)
    grid = torch.zeros(h, w, dtype=torch.bool, device=boxes.device)
    grid[::stride, ::stride] = True
    limits = candidates.new_tensor([width, height, width, height])
    candidates = candidates.clamp(min=0).minimum(limits)
    sizes = candidates[:, 2:] - candidates[:, :2]
    chosen = grid.reshape(-1) & (scores > min_confidence) & (sizes > 0).all(1)
    candidates, scores = candidates[chosen], scores[chosen]
    if len(scores) == 0:
        return candidates.new_zeros(0, 4), scores.new_zeros(0)
    keep = nms(candidates, scores, iou)[:max_regions]
    over = box_iou(candidates[keep], candidates) > iou  # [R, M]
    over[torch.arange(len(keep), device=keep.device), keep] = True
    first = over.int().argmax(0)  # the most confident keeper that suppresses each candidate
    owned = (first[None] == torch.arange(len(keep), device=first.device)[:, None]) & over
    weights = owned * scores[None]  # [R, M]
    regions = (weights @ candidates) / weights.sum(1, keepdim=True)
    return regions, scores[keep]


def zoom_factor(
    regions: Tensor,
    *,
    target_size: float = ZOOM_TARGET,
    min_zoom: float = MIN_ZOOM,
    max_zoom: float = MAX_ZOOM,
) -> Tensor:
    """``[R]`` zoom factors: ``target_size`` over each region's longer side, clipped to
    ``[min_zoom, max_zoom]``."""
    sides = (regions[:, 2:] - regions[:, :2]).amax(1).clamp(min=1e-6)
    return (target_size / sides).clamp(min_zoom, max_zoom)


def _resize(x: Tensor, box: list[float], size: tuple[int, int]) -> Tensor:
    """``x`` ``[1, C, H, W]`` inside the continuous ``box`` resampled to ``size``: bilinear
    ``roi_align(aligned=True)`` with adaptive sampling (several samples averaged per output
    pixel when shrinking)."""
    roi = x.new_tensor([[0.0, *box]])
    return roi_align(x, roi, size, 1.0, -1, aligned=True)


def _window(region: Tensor, margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """``region`` grown by ``margin`` times its width/height on each side, rounded outward to
    whole pixels and clipped to the image: ``(x1, y1, x2, y2)`` integers."""
    x1, y1, x2, y2 = region.tolist()
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    eps = 1e-3  # a region from float arithmetic, 1e-5 off a pixel edge, does not grow a pixel
    return (
        max(0, math.floor(x1 - mx + eps)), max(0, math.floor(y1 - my + eps)),
        min(width, math.ceil(x2 + mx - eps)), min(height, math.ceil(y2 + my - eps)),
    )  # fmt: skip


def zoom_regions(
    image: Tensor,
    regions: Tensor,
    scorer: Callable[[Tensor], Tensor],
    *,
    target_size: float = ZOOM_TARGET,
    min_zoom: float = MIN_ZOOM,
    max_zoom: float = MAX_ZOOM,
    context: float = CONTEXT,
    merge: str = "max",
    base: Tensor | None = None,
) -> Tensor:
    """``[1, K, H, W]`` scores of ``image`` ``[1, C, H, W]`` re-scored region by region.

    For each region of ``regions`` ``[R, 4]`` (image pixels): the window is the region grown by
    ``context`` on each side, rounded outward to whole pixels and clipped to the image; the
    zoom factor is :func:`zoom_factor` of the region; the window is resampled to
    ``round(z * size)`` with bilinear ``roi_align(aligned=True)`` (chosen over
    ``F.interpolate`` on the crop: it samples the image's own pixels just outside the window
    rather than repeating the window's edge, and averages several samples when shrinking, so
    no aliasing); ``scorer`` maps it to ``[1, K, h, w]`` scores (any size: they are resampled
    the same way back to the window's size). Only the region itself (rounded outward to whole
    pixels) is pasted, so the context informs the scorer but the window's border effects stay
    out. Where pasted regions cover, they merge with ``base`` (the whole-image scores ``[1, K,
    H, W]``, default none) by ``merge``: ``"max"`` or ``"mean"`` of all that cover (``base``
    counted once); elsewhere the output is ``base`` (0 without one; with neither a region in
    the image nor ``base`` the channel count is unknown: an error). Default ``"max"`` (chosen
    of the paper's max / mean, recalled)."""
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"zoom_regions takes one image [1, C, H, W], got {tuple(image.shape)}")
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    height, width = image.shape[-2:]
    zooms = zoom_factor(regions, target_size=target_size, min_zoom=min_zoom, max_zoom=max_zoom)
    total = base.clone() if base is not None else None
    count: Tensor | None = None
    for region, zoom in zip(regions, zooms.tolist(), strict=True):
        wx1, wy1, wx2, wy2 = _window(region, context, height, width)
        px1, py1, px2, py2 = _window(region, 0.0, height, width)
        if wx2 <= wx1 or wy2 <= wy1 or px2 <= px1 or py2 <= py1:
            continue  # the region lies outside the image
        window = [float(wx1), float(wy1), float(wx2), float(wy2)]
        size = (max(1, round(zoom * (wy2 - wy1))), max(1, round(zoom * (wx2 - wx1))))
        scores = scorer(_resize(image, window, size))
        back = _resize(scores, [0.0, 0.0, float(scores.shape[-1]), float(scores.shape[-2])],
                       (wy2 - wy1, wx2 - wx1))  # fmt: skip
        paste = back[..., py1 - wy1 : py2 - wy1, px1 - wx1 : px2 - wx1]
        if total is None:
            total = scores.new_zeros(1, scores.shape[1], height, width)
        if count is None:
            count = total.new_zeros(1, 1, height, width)
            if base is not None:
                count += 1
        here = (..., slice(py1, py2), slice(px1, px2))
        if merge == "max":
            covered = count[here] > 0
            total[here] = torch.where(covered, torch.maximum(total[here], paste), paste)
        else:
            total[here] = total[here] + paste
        count[here] = count[here] + 1
    if total is None:
        raise ValueError("zoom_regions needs a base when no region lies inside the image")
    if merge == "mean" and count is not None:
        total = total / count.clamp(min=1)
    return total
