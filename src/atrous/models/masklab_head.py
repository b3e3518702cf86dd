"""MaskLab's mask head (Chen et al., CVPR 2018) and the boxes it trains on: per box, the
semantic crop of the box's class and the direction-pooled direction logits make a coarse mask,
refined over hypercolumn features (see :mod:`.masklab`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou, roi_align

from .direction_pooling import direction_pool

MASK_SIZE = 41
"""Side of the per-box mask crops (recalled, unverified: the paper's 41 x 41)."""
MASK_ROIS = 32
"""Boxes per training image that the mask head learns on (chosen: positives of the RPN's
proposals and the ground-truth boxes, IoU >= 0.5, as Mask R-CNN picks them)."""
REFINE_CHANNELS = 64
"""Width of the three refinement convs (chosen; the paper's width: unknown)."""


def _log_odds(logits: Tensor) -> Tensor:
    """``log(p / (1 - p))`` of each channel's softmax probability (clamped at 1e-6)."""
    return torch.special.logit(logits.float().softmax(1), eps=1e-6).to(logits.dtype)


def _rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image ``[K, 4]`` boxes -> ``[sum K, 5]`` rows ``(image index, x1, y1, x2, y2)``."""
    rows = [torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)]
    return torch.cat(rows) if rows else torch.zeros(0, 5)


class MaskHead(nn.Module):
    """Per box: the box's class channel of the semantic log-odds and the direction log-odds
    assembled by direction pooling, a 1x1 conv -> coarse mask logits; with
    ``hypercolumn``, three convs over [coarse mask, OS4 features crop] -> refined logits.
    ``direction_pooling`` False leaves the direction input out (the paper's ablation)."""

    def __init__(
        self,
        low_channels: int,
        *,
        num_directions: int,
        num_distances: int,
        size: int = MASK_SIZE,
        direction_pooling: bool = True,
        hypercolumn: bool = True,
        channels: int = REFINE_CHANNELS,
    ) -> None:
        super().__init__()
        self.size, self.bins = size, (num_directions, num_distances)
        self.direction_pooling, self.hypercolumn = direction_pooling, hypercolumn
        self.coarse = nn.Conv2d(2 if direction_pooling else 1, 1, 1)
        # chosen: inputs are log-odds, and the coarse mask starts as the semantic probability
        # of the box's class, raised where the pixel's bin is likelier than chance (1 / bins)
        # and lowered where it is less likely; at PyTorch's random init the sign of a 2-weight
        # conv decided the demo's ablation (benchmarks/results/masklab.md)
        nn.init.ones_(self.coarse.weight)
        chance = math.log(num_directions * num_distances - 1) if direction_pooling else 0.0
        nn.init.constant_(self.coarse.bias, chance)
        self.refine = (
            nn.Sequential(
                nn.Conv2d(low_channels + 1, channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, 1, 1),
            )  # fmt: skip
            if hypercolumn
            else None
        )

    def forward(
        self,
        semantic: Tensor,
        direction: Tensor,
        low: Tensor,
        rois: Tensor,
        labels: Tensor,
        input_width: int,
    ) -> Tensor:
        """``[R, S, S]`` mask logits for ``rois`` ``[R, 5]`` (input pixels) of class ``labels``."""
        size = (self.size, self.size)
        rois = rois.to(semantic.dtype)
        scale = semantic.shape[-1] / input_width
        crops = roi_align(_log_odds(semantic), rois, size, scale, 2, aligned=True)
        index = labels.view(-1, 1, 1, 1).expand(-1, 1, *size)
        inputs = [crops.gather(1, index)]
        if self.direction_pooling:
            d, r = self.bins
            inputs.append(direction_pool(
                _log_odds(direction), rois, size, num_directions=d, num_distances=r,
                spatial_scale=scale, sampling_ratio=2,
            ))  # fmt: skip
        coarse = self.coarse(torch.cat(inputs, dim=1))
        if self.refine is None:
            return coarse[:, 0]
        low_crops = roi_align(low, rois.to(low.dtype), size, low.shape[-1] / input_width, 2,
                              aligned=True)  # fmt: skip
        return (coarse + self.refine(torch.cat([coarse, low_crops], dim=1)))[:, 0]


def sample_mask_rois(
    proposals: list[Tensor],
    targets: list[dict[str, Tensor]],
    per_image: int,
    size: int,
    iou: float = 0.5,
) -> tuple[list[Tensor], Tensor, Tensor]:
    """The mask head's training boxes: per image up to ``per_image`` of the proposals and
    ground-truth boxes overlapping a ground-truth box by ``iou`` or more (drawn at random),
    their matched labels, and the matched masks cropped in them ``[R, size, size]`` (bool)."""
    boxes, labels, crops = [], [], []
    for props, target in zip(proposals, targets, strict=True):
        gt = target["boxes"].float()
        if len(gt) == 0:
            boxes.append(gt.new_zeros(0, 4))
            continue
        candidates = torch.cat([props.detach().float(), gt])
        best, match = box_iou(candidates, gt).max(dim=1)
        keep = (best >= iou).nonzero()[:, 0]
        keep = keep[torch.randperm(len(keep), device=keep.device)[:per_image]]
        chosen, match = candidates[keep], match[keep]
        masks = target["masks"][:, None].float()
        rows = torch.cat([match[:, None].float(), chosen], dim=1)
        crops.append(roi_align(masks, rows, (size, size), 1.0, 2, aligned=True)[:, 0] >= 0.5)
        boxes.append(chosen)
        labels.append(target["labels"][match])
    device = proposals[0].device if proposals else torch.device("cpu")
    labels_out = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=device)
    crops_out = torch.cat(crops) if crops else torch.zeros(0, size, size, dtype=torch.bool)
    return boxes, labels_out, crops_out
