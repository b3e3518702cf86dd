"""Post-hoc domain transform: a prediction filtered with its image's own gradient as the edges
(the classic domain transform, DT-EdgeNet's image-gradient baseline). The filter itself and the
trained DT-EdgeNet live in :mod:`atrous.models.wrappers.domain_transform`."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models.wrappers.domain_transform import (
    DEFAULT_SIGMA_R,
    DEFAULT_SIGMA_S,
    ITERATIONS,
    domain_transform,
)


def image_edges(image: Tensor) -> Tensor:
    """Reference edges of an ``[N,3,H,W]`` image (uint8, or float in [0, 1]) -> ``[N,2,H,W]``:
    channel 0 is ``sum_c |I(y,x) - I(y,x-1)|``, channel 1 ``sum_c |I(y,x) - I(y-1,x)|``, zero in
    the first column / row: the classic post-hoc domain-transform guide (Gastal's ``dIdx``)."""
    if image.ndim != 4:
        raise ValueError(f"image must be [N,3,H,W], got {list(image.shape)}")
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().sum(1, keepdim=True)
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().sum(1, keepdim=True)
    return torch.cat([F.pad(dx, (1, 0, 0, 0)), F.pad(dy, (0, 0, 1, 0))], dim=1)


def posthoc_domain_transform(
    image: Tensor,
    probs: Tensor,
    *,
    sigma_s: float = DEFAULT_SIGMA_S,
    sigma_r: float = DEFAULT_SIGMA_R,
    iterations: int = ITERATIONS,
) -> Tensor:
    """Refine one prediction after the network: ``probs`` ``[K,H,W]`` filtered with the
    ``image``'s (uint8 ``[3,H,W]``) own gradient as the reference edges (classic DT, the
    DT-EdgeNet paper's image-gradient baseline). Filtering keeps probabilities summing to 1."""
    if image.ndim != 3 or probs.ndim != 3 or image.shape[-2:] != probs.shape[-2:]:
        raise ValueError(
            f"need a [3,H,W] image and [K,H,W] probs of one size, got {list(image.shape)} "
            f"and {list(probs.shape)}"
        )
    edges = image_edges(image[None].to(probs.device))
    return domain_transform(
        probs[None], edges, sigma_s=sigma_s, sigma_r=sigma_r, iterations=iterations
    )[0]
