"""Attention to scale (Chen, Yang, Wang, Xu & Yuille, CVPR 2016) and DeepLab v2's multi-scale
input fusion (MSC).

One shared network runs on the image at several scales; each scale's logits are resized to the
scale-1 logits' size and merged per pixel: by the maximum over scales (v2 MSC, Sec. 4.1), by the
mean, or by soft weights from a small attention head (3x3 conv with 512 filters -> ReLU -> 1x1
conv to one map per scale -> softmax over scales, shared by all classes) on the penultimate
features of all scales, concatenated. In training the wrapper also returns every scale's logits,
so the loss can supervise each scale as well as the merge ("extra supervision", which the paper
finds essential; ``train.aux_weight`` weighs it, 0 turns it off).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..align import crop_to, exact_size
from ..deeplab import DeepLab
from .base import WrappedModel

MERGES = ("attention", "max", "avg")
SCALES = (1.0, 0.75, 0.5)  # the paper's three scales; (1.0, 0.5) is its two-scale setting


def scale_key(scale: float) -> str:
    """The output key of one scale's logits in training mode, e.g. ``"scale_0.75"``."""
    return f"scale_{scale:.2f}"


class ScaleAttentionDeepLab(WrappedModel):
    """A :class:`DeepLab` run at ``scales`` and merged (see the module docstring). Eval mode
    returns the merged logits at the input size; training mode returns ``{"out": merged,
    "scale_1.00": ..., ...}``, all at the input size."""

    def __init__(
        self,
        model: DeepLab,
        scales: Sequence[float] = SCALES,
        merge: str = "attention",
        *,
        attention_channels: int = 512,
    ) -> None:
        super().__init__(model)
        if not isinstance(model, DeepLab):
            raise TypeError(f"attention to scale wraps a DeepLab, got {type(model).__name__}")
        scales = tuple(float(s) for s in scales)
        if not scales or any(s <= 0 for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct positive numbers, got {scales}")
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        self.scales, self.merge = scales, merge
        self.attention: nn.Module | None = None
        if merge == "attention":
            self.attention = nn.Sequential(
                nn.Conv2d(
                    len(scales) * model.penultimate_channels, attention_channels, 3, padding=1
                ),
                nn.ReLU(inplace=True),
                nn.Conv2d(attention_channels, len(scales), 1),
            )

    def _per_scale(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], tuple[int, int]]:
        """Each scale's logits and penultimate features, resized to the reference scale's
        logits size (scale 1, or the largest); ``x`` is padded to an exact size already."""
        stride = self.model.output_stride
        corners = self.model.align_corners
        h, w = x.shape[-2], x.shape[-1]
        logits, features = [], []
        reference = max(self.scales, key=lambda s: (s == 1.0, s))
        for scale in self.scales:
            if scale == 1.0:
                xs = x
            else:
                size = (_scaled(h, scale, stride, corners), _scaled(w, scale, stride, corners))
                xs = _resize(x, size, corners)
            logit, feature = self.model.forward_head(xs)
            logits.append(logit)
            features.append(feature)
        ref = self.scales.index(reference)
        common = (logits[ref].shape[-2], logits[ref].shape[-1])
        feature_size = (features[ref].shape[-2], features[ref].shape[-1])
        logits = [_resize(t, common, corners) for t in logits]
        features = [_resize(t, feature_size, corners) for t in features]
        return logits, features, common

    def _weights(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Softmax over scales of the attention head, ``[N, S, h, w]`` at the logits' size."""
        assert self.attention is not None
        scores = self.attention(torch.cat(features, dim=1))
        return _resize(scores, size, self.model.align_corners).softmax(1)

    def _merged(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor | None]:
        logits, features, common = self._per_scale(x)
        stacked = torch.stack(logits, dim=1)  # [N, S, K, h, w]
        weights = None
        if self.merge == "max":
            merged = stacked.max(dim=1).values
        elif self.merge == "avg":
            merged = stacked.mean(dim=1)
        else:
            weights = self._weights(features, common)
            merged = (weights.unsqueeze(2) * stacked).sum(dim=1)
        return merged, logits, weights

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        height, width = x.shape[-2], x.shape[-1]
        padded = self.model.pad(x) if self.model.pad_input else x
        size = (padded.shape[-2], padded.shape[-1])
        merged, logits, _ = self._merged(padded)

        def up(t: Tensor) -> Tensor:
            return crop_to(_resize(t, size, self.model.align_corners), height, width)

        if not self.training:
            return up(merged)
        out = {"out": up(merged)}
        for scale, logit in zip(self.scales, logits, strict=True):
            out[scale_key(scale)] = up(logit)
        return out

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> Tensor:
        """The per-pixel weight of each scale, ``[N, S, H, W]`` at the input size (summing to 1
        over scales): the attention head's softmax; for ``max`` the share of classes whose
        maximum comes from each scale; for ``avg`` 1/S everywhere."""
        height, width = x.shape[-2], x.shape[-1]
        padded = self.model.pad(x) if self.model.pad_input else x
        _, logits, weights = self._merged(padded)
        if weights is None:
            stacked = torch.stack(logits, dim=1)
            if self.merge == "max":  # the share of classes whose maximum each scale holds
                winners = stacked.argmax(dim=1)  # [N, K, h, w]
                weights = F.one_hot(winners, len(self.scales)).float().mean(dim=1)
                weights = weights.permute(0, 3, 1, 2)
            else:
                weights = torch.full_like(stacked[:, :, 0], 1.0 / len(self.scales))
        size = (padded.shape[-2], padded.shape[-1])
        return crop_to(_resize(weights, size, self.model.align_corners), height, width)


def _scaled(n: int | Tensor, scale: float, stride: int, corners: bool) -> int | Tensor:
    """``n * scale`` rounded, then up to an exact size; with tensor sizes (ONNX / TorchScript
    tracing) in tensor ops, so exported files compute it for each input."""
    if not isinstance(n, Tensor):
        return exact_size(max(1, round(n * scale)), stride, align_corners=corners)
    m = torch.clamp(torch.round(n * scale), min=1).to(torch.int64)
    if corners:
        return (m + stride - 2) // stride * stride + 1
    return (m + stride - 1) // stride * stride


def _resize(t: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    tracing = torch.jit.is_tracing()
    if not tracing and (t.shape[-2], t.shape[-1]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=align_corners)


def with_scale_attention(
    model: DeepLab,
    *,
    scales: Sequence[float] = SCALES,
    merge: str = "attention",
    attention_channels: int = 512,
) -> ScaleAttentionDeepLab:
    """Wrap ``model`` to run at ``scales`` (the paper's 1, 0.75, 0.5) and merge the logits by
    ``merge``: ``"attention"`` (learned per-pixel weights over scales), ``"max"`` (DeepLab v2
    MSC) or ``"avg"``."""
    return ScaleAttentionDeepLab(model, scales, merge, attention_channels=attention_channels)
