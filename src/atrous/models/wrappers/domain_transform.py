"""Domain transform: edge-preserving smoothing of class scores, post hoc or as a trained layer.

The recursive filter is the domain transform of Gastal & Oliveira, "Domain Transform for
Edge-Aware Image and Video Processing" (SIGGRAPH 2011), Sec. 5: separable 1-D first-order
recursions whose feedback weight drops across strong edges of a reference edge map.
DT-EdgeNet (Chen, Barron, Papandreou, Murphy & Yuille, "Semantic Image Segmentation with
Task-Specific Edge Detection Using CNNs and a Discriminatively Trained Domain Transform",
CVPR 2016) applies it to DeepLab's upsampled scores with the edge map predicted by a small
EdgeNet on backbone features, and trains both end to end through the filter (their Sec. 3).

Edge convention: the edge value ``d[i]`` *at* pixel ``i`` controls the transition between pixels
``i - 1`` and ``i`` along the filtered axis (Gastal's ``dIdx``), so :func:`image_edges` stores
``|I(i) - I(i-1)|`` at ``i``; ``d`` at the first pixel of a row or column is never used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..align import crop_to
from ..deeplab import DeepLab
from .base import WrappedModel

# Spatial and range standard deviations of the filter. DT-EdgeNet tunes both by validation
# (Sec. 4); these are starting values for edge maps in roughly [0, 1] units, to be tuned on data.
DEFAULT_SIGMA_S = 50.0
DEFAULT_SIGMA_R = 1.0
ITERATIONS = 3  # DT-EdgeNet Sec. 4: K = 3 iterations suffice


class _Recursion1d(torch.autograd.Function):
    """``y[i] = (1 - w[i]) x[i] + w[i] y[i-1]`` along dim 0 (``reverse``: from the end, with
    ``y[i] = (1 - w[i+1]) x[i] + w[i+1] y[i+1]``), with the analytical backward recursion.

    ``x`` is ``[L, ...]`` contiguous; ``w`` is ``[L, ...]`` broadcastable to ``x`` (e.g. one
    weight shared by all channels). Only dim 0 is looped over; each step is a slice op.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, reverse: bool) -> Tensor:  # type: ignore[override]
        y = torch.empty_like(x)
        n = x.shape[0]
        if reverse:
            y[n - 1] = x[n - 1]
            for i in range(n - 2, -1, -1):
                torch.lerp(x[i], y[i + 1], w[i + 1], out=y[i])
        else:
            y[0] = x[0]
            for i in range(1, n):
                torch.lerp(x[i], y[i - 1], w[i], out=y[i])
        ctx.reverse = reverse
        ctx.save_for_backward(x, w, y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        x, w, y = ctx.saved_tensors
        n = x.shape[0]
        # g[i] = dLoss/dy[i] including the paths through later outputs, accumulated in reverse
        # filtering order: every y[j] that fed on y[i] passes back w * g[j].
        g = grad_y.contiguous().clone()
        if ctx.reverse:
            for i in range(1, n):
                g[i].addcmul_(w[i], g[i - 1])
        else:
            for i in range(n - 2, -1, -1):
                g[i].addcmul_(w[i + 1], g[i + 1])
        # The recursion's first pixel is copied through; the rest mix x with the previous y.
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = g.clone()
            if ctx.reverse:
                grad_x[:-1] *= 1 - w[1:]
            else:
                grad_x[1:] *= 1 - w[1:]
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(y)
            if ctx.reverse:
                grad_w[1:] = (y[1:] - x[:-1]) * g[:-1]
            else:
                grad_w[1:] = (y[:-1] - x[1:]) * g[1:]
            grad_w = grad_w.sum_to_size(w.shape)
        return grad_x, grad_w, None


def _weights(d: Tensor, sigma: float, ratio: float) -> Tensor:
    """Feedback weights ``exp(-sqrt(2) / sigma * (1 + sigma_s / sigma_r * d))`` (Gastal & Oliveira
    eq. 21 on the transformed distance ``1 + sigma_s / sigma_r * d``; DT-EdgeNet eq. 2)."""
    return torch.exp(-math.sqrt(2.0) / sigma * (1.0 + ratio * d))


def _both_ways(x: Tensor, w: Tensor) -> Tensor:
    """Filter along dim 0 forwards then backwards (left->right->left, or top->bottom->top)."""
    x = _Recursion1d.apply(x, w, False)
    return _Recursion1d.apply(x, w, True)


def _check(scores: Tensor, edges: Tensor, sigma_s: float, sigma_r: float, iterations: int) -> None:
    if scores.ndim != 4 or not scores.is_floating_point():
        raise ValueError(
            f"scores must be a float [N,C,H,W] tensor, got {scores.dtype} {list(scores.shape)}"
        )
    n, _, h, w = scores.shape
    if edges.ndim != 4 or edges.shape[1] not in (1, 2) or edges.shape[-2:] != scores.shape[-2:]:
        raise ValueError(
            f"edges must be [N,1,H,W] or [N,2,H,W] matching scores {list(scores.shape)}, "
            f"i.e. [{n},1,{h},{w}] or [{n},2,{h},{w}]; got {list(edges.shape)}"
        )
    if edges.shape[0] != n:
        raise ValueError(f"edges {list(edges.shape)} and scores {list(scores.shape)} differ in N")
    if not edges.is_floating_point():
        raise ValueError(f"edges must be a float tensor, got {edges.dtype}")
    if bool((edges < 0).any()):
        raise ValueError("edges must be nonnegative (edge magnitudes); got negative values")
    if sigma_s <= 0 or sigma_r <= 0 or iterations < 1:
        raise ValueError(
            f"need sigma_s > 0, sigma_r > 0 and iterations >= 1; "
            f"got sigma_s={sigma_s}, sigma_r={sigma_r}, iterations={iterations}"
        )


def domain_transform(
    scores: Tensor,
    edges: Tensor,
    *,
    sigma_s: float = DEFAULT_SIGMA_S,
    sigma_r: float = DEFAULT_SIGMA_R,
    iterations: int = ITERATIONS,
) -> Tensor:
    """Edge-preserving recursive filtering of ``scores`` ``[N,C,H,W]`` guided by ``edges``.

    ``edges`` is ``[N,1,H,W]`` (one map for both directions, as DT-EdgeNet) or ``[N,2,H,W]``
    (channel 0 for the horizontal passes, channel 1 for the vertical ones, as from
    :func:`image_edges`). Each of the ``iterations`` runs left->right, right->left, then
    top->bottom, bottom->top, with sigma halving per iteration so the total variance is
    ``sigma_s ** 2`` (Gastal & Oliveira eq. 14). Differentiable w.r.t. scores and edges.
    """
    _check(scores, edges, sigma_s, sigma_r, iterations)
    edges = edges.to(scores.dtype)
    ratio = sigma_s / sigma_r
    # Filtered axis first and contiguous, so each recursion step is one contiguous slice:
    # horizontal layout [W,N,C,H], vertical layout [H,N,C,W]; transpose(0, 3) swaps them.
    d_h = edges[:, :1].permute(3, 0, 1, 2).contiguous()
    d_v = edges[:, -1:].permute(2, 0, 1, 3).contiguous()
    y = scores.permute(3, 0, 1, 2).contiguous()
    for k in range(1, iterations + 1):
        sigma = sigma_s * math.sqrt(3.0) * 2.0 ** (iterations - k) / math.sqrt(4.0**iterations - 1)
        y = _both_ways(y, _weights(d_h, sigma, ratio))
        y = y.transpose(0, 3).contiguous()
        y = _both_ways(y, _weights(d_v, sigma, ratio))
        if k < iterations:
            y = y.transpose(0, 3).contiguous()
    return y.permute(1, 2, 0, 3).contiguous()  # [H,N,C,W] -> [N,C,H,W]


class DomainTransform(nn.Module):
    """:func:`domain_transform` as a layer, with fixed (not learned) hyperparameters."""

    def __init__(
        self,
        *,
        sigma_s: float = DEFAULT_SIGMA_S,
        sigma_r: float = DEFAULT_SIGMA_R,
        iterations: int = ITERATIONS,
    ) -> None:
        super().__init__()
        self.sigma_s = sigma_s
        self.sigma_r = sigma_r
        self.iterations = iterations

    def forward(self, scores: Tensor, edges: Tensor) -> Tensor:
        return domain_transform(
            scores,
            edges,
            sigma_s=self.sigma_s,
            sigma_r=self.sigma_r,
            iterations=self.iterations,
        )

    def extra_repr(self) -> str:
        return f"sigma_s={self.sigma_s}, sigma_r={self.sigma_r}, iterations={self.iterations}"


class EdgeNet(nn.Module):
    """DT-EdgeNet's edge branch (Sec. 3.2): per tapped backbone feature a 1x1 conv + ReLU,
    all upsampled to the finest tap (``"os4"`` for our backbones), concatenated, a 1x1 conv to one
    channel, upsampled to the image and squashed by a sigmoid -> ``[N,1,H,W]`` edges in [0, 1].

    The paper taps three VGG/ResNet stages; we tap whatever ``in_channels`` names (a
    backbone's ``feature_channels``).
    """

    def __init__(self, in_channels: Mapping[str, int], *, channels: int = 64) -> None:
        super().__init__()
        self.taps = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Conv2d(c, channels, 1), nn.ReLU(inplace=True))
                for name, c in in_channels.items()
            }
        )
        self.fuse = nn.Conv2d(channels * len(in_channels), 1, 1)

    def forward(self, features: Mapping[str, Tensor], size: tuple[int, int]) -> Tensor:
        maps = [features[name] for name in self.taps]
        fine = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        parts = [
            F.interpolate(tap(m), size=fine, mode="bilinear", align_corners=False)
            for tap, m in zip(self.taps.values(), maps, strict=True)
        ]
        edges = self.fuse(torch.cat(parts, dim=1))
        edges = F.interpolate(edges, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(edges)


class DomainTransformDeepLab(WrappedModel):
    """DT-EdgeNet: a :class:`DeepLab`'s upsampled logits filtered by a domain transform guided by
    an :class:`EdgeNet` on the same backbone's features, trained end to end."""

    def __init__(self, model: DeepLab, edgenet: EdgeNet, dt: DomainTransform) -> None:
        super().__init__(model)
        self.edgenet = edgenet
        self.dt = dt

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if getattr(self.model, "pad_input", False):  # the aligned forward (atrous.models.align)
            x = self.model.pad(x)
        logits, features = self.model.forward_with_features(x)
        edges = self.edgenet(features, (x.shape[-2], x.shape[-1]))
        # The filter runs on the image only: the padding is cut off first.
        return self.dt(crop_to(logits, height, width), crop_to(edges, height, width))


def with_domain_transform(
    model: DeepLab,
    *,
    sigma_s: float = DEFAULT_SIGMA_S,
    sigma_r: float = DEFAULT_SIGMA_R,
    iterations: int = ITERATIONS,
    edge_channels: int = 64,
) -> DomainTransformDeepLab:
    """Wrap ``model`` as DT-EdgeNet: an EdgeNet on all its backbone's features (``edge_channels``
    wide) and a domain transform (``iterations`` = 3 as in the paper) on its logits."""
    taps = {k: v for k, v in model.backbone.feature_channels.items() if k in ("os4", "out")}
    edgenet = EdgeNet(taps, channels=edge_channels)
    dt = DomainTransform(sigma_s=sigma_s, sigma_r=sigma_r, iterations=iterations)
    return DomainTransformDeepLab(model, edgenet, dt)
