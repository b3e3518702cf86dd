"""Weak and semi-supervised training by EM (Papandreou, Chen, Murphy & Yuille, "Weakly- and
Semi-Supervised Learning of a Deep Convolutional Network for Semantic Image Segmentation",
ICCV 2015), with the semantics of the released Caffe layers.

The E-step biases the network's current scores toward the classes an image is known to hold
and takes the per-pixel argmax over those classes as the label estimate; the M-step is the
usual cross-entropy on the estimate. ``present`` says which classes may be assigned: ``[N, C]``
for image-level labels, or ``[N, C, H, W]`` per pixel for boxes (background and the classes of
the boxes covering the pixel). Class 0 is background.

- :func:`em_fixed_bias` (Caffe ``BiasChannel``): fixed biases, ``bg_bias`` on the background
  channel and ``fg_bias`` on each present foreground class.
- :func:`em_adapt_bias` (Caffe ``AdaptiveBiasChannel``): image-specific biases that make at least
  ``bg_portion`` / ``fg_portion`` of the image reach each present class's maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.boxes import Box, bbox_seg_unary
from ..data.weak import ESTIMATE, allowed_classes
from ..refine import dense_crf


def _check(logits: Tensor, present: Tensor) -> Tensor:
    if logits.ndim != 4:
        raise ValueError(f"logits must be [N, C, H, W], got {tuple(logits.shape)}")
    n, c = logits.shape[:2]
    if present.dtype != torch.bool:
        raise TypeError(f"present must be a bool tensor, got {present.dtype}")
    if present.ndim == 2:
        present = present[:, :, None, None]
    if present.ndim != 4 or present.shape[:2] != (n, c):
        raise ValueError(
            f"present must be [N, C] or [N, C, H, W] with N, C = {n}, {c}, "
            f"got {tuple(present.shape)}"
        )
    return present.expand_as(logits)


def em_fixed_bias(
    logits: Tensor, present: Tensor, *, bg_bias: float = 1.0, fg_bias: float = 2.0
) -> Tensor:
    """EM-Fixed: ``logits`` plus ``bg_bias`` on the background channel where background is
    present and ``fg_bias`` on every present foreground class (Caffe ``BiasChannel``; its
    defaults 1 and 2). Returns the biased logits; absent classes are unchanged."""
    if bg_bias < 0 or fg_bias < 0:
        raise ValueError(f"biases must be >= 0, got bg_bias={bg_bias}, fg_bias={fg_bias}")
    mask = _check(logits, present)
    bias = torch.full((logits.shape[1],), fg_bias, dtype=logits.dtype, device=logits.device)
    bias[0] = bg_bias
    return logits + mask.to(logits.dtype) * bias.view(1, -1, 1, 1)


def em_adapt_bias(
    logits: Tensor,
    present: Tensor,
    *,
    bg_portion: float = 0.2,
    fg_portion: float = 0.2,
    suppress_others: bool = True,
    margin: float = 1e-5,
    iterations: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EM-Adapt (Caffe ``AdaptiveBiasChannel``, image-level ``present`` ``[N, C]``): per image,
    (1) with ``suppress_others`` every absent class scoring above the present classes' minimum is
    set to that minimum minus ``margin``; (2) for each present class (background first, the
    foreground in a random order each iteration) add the ``floor(portion * H * W)``-th smallest
    gap to the running maximum over present classes, so that many pixels reach it; (3) shift
    every channel back by the change of the mean maximum. Returns the biased logits."""
    if present.ndim != 2:
        raise ValueError("em_adapt_bias takes image-level present classes [N, C]")
    _check(logits, present)
    out = logits.clone()
    n, c, h, w = out.shape
    pixels = h * w
    for i in range(n):
        labels = present[i].nonzero().flatten().tolist()
        if not labels:
            continue
        scores = out[i].reshape(c, pixels)
        chosen = torch.tensor(labels, device=out.device)
        if suppress_others:
            floor = scores[chosen].min(0).values
            absent = torch.ones(c, dtype=torch.bool, device=out.device)
            absent[chosen] = False
            capped = torch.minimum(scores[absent], floor - margin)
            scores[absent] = torch.where(scores[absent] > floor, capped, scores[absent])
        top = scores[chosen].max(0).values
        before = top.mean()
        for _ in range(iterations):
            foreground = [label for label in labels if label != 0]
            order = torch.randperm(len(foreground), generator=generator).tolist()
            sequence = ([0] if 0 in labels else []) + [foreground[k] for k in order]
            for label in sequence:
                portion = bg_portion if label == 0 else fg_portion
                nth = min(int(portion * pixels), pixels - 1)
                gap = top - scores[label]
                scores[label] += torch.kthvalue(gap, nth + 1).values  # 0-based nth smallest
                top = torch.maximum(top, scores[label])
        scores -= top.mean() - before
    return out


def estimate_labels(biased: Tensor, present: Tensor) -> Tensor:
    """The E-step estimate ``[N, H, W]``: the argmax of ``biased`` over the present classes
    (an absent class is never assigned)."""
    mask = _check(biased, present)
    return biased.masked_fill(~mask, float("-inf")).argmax(1)


BBOX_SEG_CRF = {"w_appearance": 45.0, "theta_alpha": 37.0, "theta_beta": 3.0,
                "w_smoothness": 15.0, "theta_gamma": 3.0}  # fmt: skip
"""The dense CRF of Bbox-Seg (released code's SetupEnv.m, eroded boxes: bi_w 45, bi_xy_std 37,
bi_rgb_std 3, pos_w 15, pos_xy_std 3)."""


def bbox_seg(image: Tensor, boxes: Sequence[Box], num_classes: int) -> np.ndarray:
    """Bbox-Seg: the box unary (:func:`atrous.data.boxes.bbox_seg_unary`) refined by the dense
    CRF with :data:`BBOX_SEG_CRF`; ``HxW`` uint8 labels."""
    h, w = image.shape[-2:]
    unary = torch.from_numpy(bbox_seg_unary(boxes, h, w, num_classes))
    refined = dense_crf(image, unary, **BBOX_SEG_CRF)
    return np.asarray(torch.as_tensor(refined).argmax(0), dtype=np.uint8)


def weak_targets(logits: Tensor, masks: Tensor, weak: Any, method: str) -> Tensor:
    """The labels a weak batch trains on: channel 0 of ``masks`` ``[N, 2, H, W]`` where it is a
    label, the E-step estimate on ``logits`` (detached) where it is :data:`ESTIMATE`."""
    label, bits = masks[:, 0], masks[:, 1]
    estimate = label == ESTIMATE
    if not estimate.any():
        return label
    with torch.no_grad():
        scores = logits.detach().float()
        allowed = allowed_classes(bits, scores.shape[1])
        if method == "em_adapt":
            present = allowed.flatten(2).any(-1)  # image-level: the same classes everywhere
            biased = em_adapt_bias(scores, present, bg_portion=weak.bg_portion,
                                   fg_portion=weak.fg_portion, suppress_others=weak.suppress_others,
                                   margin=weak.margin, iterations=weak.iterations)  # fmt: skip
        else:
            biased = em_fixed_bias(scores, allowed, bg_bias=weak.bg_bias, fg_bias=weak.fg_bias)
        estimates = estimate_labels(biased, allowed)
    return torch.where(estimate, estimates, label)
