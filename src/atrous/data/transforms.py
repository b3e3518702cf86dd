"""Joint image + mask transforms on torchvision.transforms.v2.

Masks are ``tv_tensors.Mask``: v2 resizes them with nearest neighbour and pads/crops them with
the image, so one pipeline keeps both aligned. Presets follow the DeepLab recipe (TF reference
``input_preprocess.py``): random scale 0.5-2.0 in steps of 0.25, pad bottom/right to the crop
with the mean pixel (image) and 255 (mask), random crop, random left-right flip, normalize.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .info import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    sizes = {tuple(F.get_size(x)) for x in flat_inputs if isinstance(x, tv_tensors.TVTensor)}
    if len(sizes) != 1:
        raise ValueError(f"image and mask sizes differ: {sorted(sizes)}")
    return sizes.pop()  # type: ignore[return-value]


class RandomScale(v2.Transform):
    """Resize by a random factor in ``[min_scale, max_scale]`` (in steps of ``step`` if > 0).

    Written here because v2's resizes take target sizes, not factors of the input's own size.
    """

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0, step: float = 0.25) -> None:
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale, self.step = min_scale, max_scale, step

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        if self.step > 0:
            count = int(round((self.max_scale - self.min_scale) / self.step)) + 1
            scale = self.min_scale + self.step * int(torch.randint(count, ()))
        else:
            scale = self.min_scale + (self.max_scale - self.min_scale) * float(torch.rand(()))
        return {"size": [max(1, round(h * scale)), max(1, round(w * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # Masks dispatch to nearest-neighbour resizing whatever the interpolation says.
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)


class PadToSize(v2.Transform):
    """Pad bottom and right up to ``size`` (DeepLab pads this way; v2.RandomCrop pads both sides).

    ``fill`` maps a tv_tensor type to its pad value, e.g. the mean pixel and 255 for masks.
    """

    def __init__(self, size: int | Sequence[int], fill: dict[type, Any]) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        return {"padding": [0, 0, max(0, self.size[1] - w), max(0, self.size[0] - h)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = next((v for t, v in self.fill.items() if isinstance(inpt, t)), 0)
        return self._call_kernel(F.pad, inpt, params["padding"], fill=fill)


def _to_float_normalized(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


SCALE_STEP = 0.0
"""Random scales are continuous (0) by default, the library's choice since the quality
benchmark's ablation (``benchmarks/results/quality.md``: scales 0.75-1.25 gained +0.6 to +9.6
mIoU in five of six seed x data-set pairs, level on the sixth); the paper recipes in
``configs/`` keep the TF reference's steps of 0.25 (``data.scale_step``)."""


def train_transforms(
    crop_size: int | Sequence[int],
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale_range: tuple[float, float] = (0.5, 2.0),
    scale_step: float = SCALE_STEP,
    hflip: bool = True,
) -> v2.Compose:
    """The DeepLab training augmentation (v3 paper, Sec. 4): random scale in ``scale_range``
    (in steps of ``scale_step``, 0 continuous), pad with the mean pixel / ignore, random crop,
    left-right flip."""
    mean_pixel = [round(255 * m) for m in mean]
    steps: list[v2.Transform] = [
        RandomScale(scale_range[0], scale_range[1], scale_step),
        PadToSize(crop_size, fill={tv_tensors.Image: mean_pixel, tv_tensors.Mask: IGNORE_INDEX}),
        v2.RandomCrop(crop_size),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_float_normalized(mean, std))


def eval_transforms(
    *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> v2.Compose:
    """Whole image, only converted to float and normalized."""
    return v2.Compose(_to_float_normalized(mean, std))
