"""Aligned inputs: pad an image to a size the network maps consistently, crop the logits back.

A DeepLab network downsamples by its output stride ``s`` and bilinearly resizes its feature maps
back up (decoder, logits). The strided convs put feature pixel ``i`` at input pixel ``s*i`` at
every input size; the resize puts it where its ``align_corners`` convention says, which agrees
with that at every position and every size only for the *exact* sizes:

- ``align_corners=False`` (atrous, torchvision): sizes ``k*s``. Each resize is then by a whole
  factor and feature ``i`` lands at ``s*i + (s-1)/2``: a fixed half-stride offset the network
  learns once.
- ``align_corners=True`` (the TF DeepLab reference): sizes ``k*s + 1``, where feature ``i``
  lands exactly on ``s*i`` (no offset).

At any other size the resize factor is fractional (217 -> 14 -> 217 is 15.5) and the predicted
map drifts against the image, by up to about ``s/2`` pixels at the far edges. So every forward
pads its input at the bottom/right with 0 (the mean pixel after normalisation, as the TF
reference pads evaluation images), runs the network and crops the logits back.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor
from torch.nn import functional as F

T = TypeVar("T", Tensor, dict)


def exact_size(size: int, stride: int, *, align_corners: bool = False) -> int:
    """The smallest size ``>= size`` that a network of output stride ``stride`` maps
    consistently: a multiple of ``stride``, or ``k*stride + 1`` with ``align_corners``."""
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be positive, got {size} and {stride}")
    if align_corners:
        return -(-(size - 1) // stride) * stride + 1
    return -(-size // stride) * stride


def _pad_amount(size: int | Tensor, stride: int, align_corners: bool) -> int | Tensor:
    # Written with % on the (possibly traced) size so that ONNX / TorchScript exports compute
    # the padding from the input's shape instead of baking in the traced one.
    if align_corners:
        return (stride - (size - 1) % stride) % stride
    return (stride - size % stride) % stride


def pad_to_exact(x: Tensor, stride: int, *, align_corners: bool = False) -> Tensor:
    """``x`` ``[N, C, H, W]`` padded at the bottom/right with 0 to :func:`exact_size`."""
    h, w = x.shape[-2], x.shape[-1]
    pad_h = _pad_amount(h, stride, align_corners)
    pad_w = _pad_amount(w, stride, align_corners)
    # Traced, compiled and ``torch.export``-ed graphs always pad (maybe by 0): a Python ``if``
    # on the size would bake the traced size into them (or, in torch.export, a guard).
    exporting = torch.jit.is_tracing() or torch.compiler.is_compiling()
    if not exporting and not torch.compiler.is_exporting() and not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def crop_to(out: T, height: int, width: int) -> T:
    """The top-left ``height x width`` of a logits tensor, or of every tensor in a dict of
    outputs (auxiliary heads)."""
    if isinstance(out, dict):
        return {key: crop_to(value, height, width) for key, value in out.items()}
    if torch.compiler.is_exporting():
        # torch.export: a slice view's contiguity depends on whether anything was padded, a
        # guard that would fix the size; gathering the rows and columns copies instead.
        rows = torch.arange(height, device=out.device)
        cols = torch.arange(width, device=out.device)
        return out.index_select(-2, rows).index_select(-1, cols)
    return out[..., :height, :width]
