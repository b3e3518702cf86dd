"""``Predictor``: an image in any common form -> a class-id map at the image's own size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..checkpoint import load_checkpoint, load_model_state
from ..data import read_image
from ..data.info import DatasetInfo
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from ..models import build_model

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


def to_image_tensor(image: ImageLike) -> tv_tensors.Image:
    """A path, PIL image, ``HxWx3`` uint8 array or ``3xHxW`` uint8 tensor -> uint8 ``3xHxW``."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return tv_tensors.Image(F.pil_to_tensor(image.convert("RGB")))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"expected an HxWx3 uint8 array, got shape {image.shape} dtype {image.dtype}"
            )
        return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"expected a 3xHxW uint8 tensor, got shape {tuple(image.shape)} dtype {image.dtype}"
            )
        return tv_tensors.Image(image)
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Predictor:
    """Runs a segmentation model on single images, whole-image, in eval mode.

    ``mean``/``std`` are the normalization the model was trained with; ``info`` carries class
    names and colours for callers that draw the result.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: str | torch.device = "cpu",
        info: DatasetInfo | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.mean, self.std = tuple(mean), tuple(std)
        self.info = info
        self._normalize = eval_transforms(mean=mean, std=std)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu") -> Predictor:
        """Rebuild the model a checkpoint was trained as, with its weights and normalization."""
        state = load_checkpoint(path)
        spec = state["model_spec"]
        model = build_model(spec["name"], **spec["kwargs"])
        load_model_state(model, state["model"], path)
        info = DatasetInfo(
            classes=tuple(state["classes"]), palette=np.asarray(state["palette"], dtype=np.uint8)
        )
        return cls(model, mean=state["mean"], std=state["std"], device=device, info=info)

    @torch.inference_mode()
    def logits(self, image: ImageLike) -> torch.Tensor:
        """Class scores ``[K, H, W]`` at the image's size."""
        x = self._normalize(to_image_tensor(image)).unsqueeze(0).to(self.device)
        return self.model(x)[0]

    def predict(self, image: ImageLike) -> np.ndarray:
        """Class ids, an ``HxW`` int64 array at the image's size."""
        return self.logits(image).argmax(0).cpu().numpy()

    def __call__(self, image: ImageLike) -> Any:
        return self.predict(image)
