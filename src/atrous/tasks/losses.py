"""Segmentation losses: cross-entropy with ignore label, class weights and hard-pixel mining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.info import IGNORE_INDEX


def mining_fraction(step: int, top_k_percent: float, warmup_steps: int = 0) -> float:
    """Share of pixels kept at ``step``: all of them at step 0, ramping linearly down to
    ``top_k_percent`` over ``warmup_steps`` (TF reference ``hard_example_mining_step``)."""
    if not 0 < top_k_percent <= 1:
        raise ValueError(f"top_k_percent must be in (0, 1], got {top_k_percent}")
    ramp = 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)
    return 1.0 - ramp * (1.0 - top_k_percent)


def kept_pixel_count(valid: int, top_k_percent: float) -> int:
    """How many of ``valid`` pixels the loss averages over when keeping ``top_k_percent``."""
    if top_k_percent >= 1.0 or valid == 0:
        return valid
    return max(1, int(round(top_k_percent * valid)))


def segmentation_loss(
    logits: Tensor | Mapping[str, Tensor],
    target: Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    top_k_percent: float = 1.0,
    class_weights: Sequence[float] | Tensor | None = None,
    aux_weight: float = 1.0,
) -> Tensor:
    """:func:`pixel_loss` of the logits, or of a model's ``{"out": logits, <aux>: logits}``
    outputs: the main loss plus ``aux_weight`` times each auxiliary one (extra supervision,
    e.g. per scale in attention-to-scale). Auxiliary logits are bilinearly upsampled to the
    label size first (labels are never downsampled)."""
    if not isinstance(logits, Mapping):
        return pixel_loss(
            logits,
            target,
            ignore_index=ignore_index,
            top_k_percent=top_k_percent,
            class_weights=class_weights,
        )
    if "out" not in logits:
        raise ValueError(f"model outputs {sorted(logits)} have no 'out' logits")
    total = logits["out"].new_zeros(())
    for name, value in logits.items():
        if value.shape[-2:] != target.shape[-2:]:
            value = F.interpolate(
                value, size=target.shape[-2:], mode="bilinear", align_corners=False
            )
        loss = pixel_loss(
            value,
            target,
            ignore_index=ignore_index,
            top_k_percent=top_k_percent,
            class_weights=class_weights,
        )
        total = total + (loss if name == "out" else aux_weight * loss)
    return total


def pixel_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    top_k_percent: float = 1.0,
    class_weights: Sequence[float] | Tensor | None = None,
) -> Tensor:
    """Mean per-pixel cross-entropy over non-ignored pixels of ``[N,K,H,W]`` logits.

    ``top_k_percent < 1`` keeps only that share of the hardest pixels (highest loss) of the
    batch, as DeepLabv3+'s TF reference ``top_k_percent_pixels`` does; ``class_weights``
    scales each pixel's loss by its target class's weight (the mean is then over the kept
    pixels, unweighted, as in the TF reference).
    """
    logits = logits.float()  # the loss and the mining in fp32, also under autocast
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if weight.numel() != logits.shape[1]:
            raise ValueError(f"{weight.numel()} class weights for {logits.shape[1]} classes")
    losses = F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    valid = target != ignore_index
    if top_k_percent >= 1.0:
        # Sum over the valid pixels / their count, without moving the count to the host (no
        # per-step sync); ignored pixels already have loss 0. All-ignore batches give 0.
        return losses.sum() / valid.sum().clamp_min(1)
    losses = losses[valid]
    if losses.numel() == 0:
        return logits.sum() * 0.0  # a batch of only ignore pixels: zero loss, graph kept
    k = kept_pixel_count(losses.numel(), top_k_percent)
    if k < losses.numel():
        losses = torch.topk(losses, k, sorted=False).values
    return losses.mean()
