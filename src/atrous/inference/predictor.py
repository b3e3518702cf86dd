"""``Predictor``: an image in any common form -> a class-id map at the image's own size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..checkpoint import load_model
from ..data import read_image
from ..data.info import DatasetInfo
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from ..errors import CheckpointError
from .fast import bf16_autocast_supported, optimize_for_inference
from .sliding import pair, sliding_window
from .tta import check_scales, multiscale_probs, tta_log_probs

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor
Refiner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(image uint8 [3,H,W], probs [K,H,W]) -> probs [K,H,W]``, e.g. ``atrous.refine.dense_crf``."""


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
    """Runs a segmentation model on images in eval mode; returns maps at each image's own size.

    ``mean``/``std`` are the normalization the model was trained with; ``info`` carries class
    names and colours for callers that draw the result.

    Paper-fidelity evaluation options (DeepLabv3 Sec. 4.3): ``scales`` and ``flip`` average the
    softmax over rescaled and left-right flipped inputs (:mod:`.tta`); ``output_stride`` calls
    ``model.set_output_stride`` once, in place (e.g. train at OS16, evaluate at OS8); ``crop`` and
    ``stride`` switch each scale from whole-image to sliding-window inference (:mod:`.sliding`).
    The defaults give plain single-scale whole-image inference.

    ``fast=True`` runs a copy of the model made by :func:`.fast.optimize_for_inference`
    (BatchNorm folded into the convs, channels-last layout) on channels-last inputs, under
    bfloat16 autocast on CPUs that support it; scores come back as float32. Labels may differ
    from the exact fp32 result at a few near-ties. The weights of the model passed in are not
    changed; exported (ONNX, TorchScript) models are refused. ``compile=True`` also wraps the
    model in ``torch.compile`` (dynamic shapes): the first call compiles (about a minute on a
    small CPU), later calls run faster.

    ``refine`` post-processes each image's probabilities with the image, e.g.
    ``functools.partial(atrous.refine.dense_crf, backend="torch")`` or
    ``atrous.refine.posthoc_domain_transform`` (boundary refinement, DeepLab v1/v2, DT-EdgeNet).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        output_stride: int | None = None,
        crop: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: str | torch.device = "cpu",
        info: DatasetInfo | None = None,
        fast: bool = False,
        compile: bool = False,
        refine: Refiner | None = None,
    ) -> None:
        self.scales = check_scales(scales)
        self.flip = bool(flip)
        self.crop = None if crop is None else pair(crop, "crop")
        if stride is not None and crop is None:
            raise ValueError("stride is the sliding-window step; it needs crop as well")
        self.stride = None if stride is None else pair(stride, "stride")
        if (
            self.crop is not None
            and self.stride is not None
            and (self.stride[0] > self.crop[0] or self.stride[1] > self.crop[1])
        ):
            raise ValueError(f"stride {self.stride} is larger than crop {self.crop}")
        if output_stride is not None:
            if not hasattr(model, "set_output_stride"):
                raise ValueError(
                    f"output_stride={output_stride} needs a model with set_output_stride(); "
                    f"{type(model).__name__} has none (leave output_stride=None)"
                )
            model.set_output_stride(output_stride)
        self.output_stride = output_stride
        self.device = resolve_device(device)
        self.fast = bool(fast)
        self._autocast = False
        if self.fast:
            from ..export import OnnxModel

            if not isinstance(model, nn.Module) or isinstance(
                model, (torch.jit.ScriptModule, OnnxModel)
            ):
                raise ValueError(
                    f"fast=True needs an eager PyTorch model, got {type(model).__name__} "
                    "(exported files are already optimized by their runtime)"
                )
            model = optimize_for_inference(model.to(self.device))
            self._autocast = self.device.type == "cpu" and bf16_autocast_supported(self.device)
        self.model = model.to(self.device).eval()
        if compile:  # torch.compile: a one-off compile per input size, then faster calls
            self.model = torch.compile(self.model, dynamic=True)
        self.mean, self.std = tuple(mean), tuple(std)
        self.info = info
        self.refine = refine
        self._normalize = eval_transforms(mean=mean, std=std)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> Predictor:
        """Rebuild the model a checkpoint was trained as, with its weights and normalization.

        ``options`` (``scales``, ``flip``, ``output_stride``, ``crop``, ``stride``, ``fast``) go
        to the constructor unchanged."""
        model, state = load_model(path)
        info = DatasetInfo(
            classes=tuple(state["classes"]), palette=np.asarray(state["palette"], dtype=np.uint8)
        )
        return cls(model, mean=state["mean"], std=state["std"], device=device, info=info, **options)

    @classmethod
    def from_file(
        cls, path: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> Predictor:
        """A predictor for an ``atrous export`` file: ONNX (run by ONNX Runtime, extra
        ``atrous[export]``) or TorchScript, with the normalization, classes and palette stored
        in its metadata; an atrous checkpoint works too. Pre/post-processing and ``options``
        (scales, flip, crop, stride) are the same as for the PyTorch model."""
        from ..export import is_torchscript, load_onnx, load_torchscript

        path = Path(path)
        if path.suffix == ".onnx":
            model, meta = load_onnx(path)
        elif is_torchscript(path):
            model, meta = load_torchscript(path)
        else:
            return cls.from_checkpoint(path, device=device, **options)
        for key in ("classes", "palette", "mean", "std"):
            if key not in meta:
                raise CheckpointError(f"{path}: exported file lacks {key!r} in its metadata")
        info = DatasetInfo(
            classes=tuple(meta["classes"]), palette=np.asarray(meta["palette"], dtype=np.uint8)
        )
        return cls(model, mean=meta["mean"], std=meta["std"], device=device, info=info, **options)

    @property
    def is_plain(self) -> bool:
        """Single scale 1, no flip: the scores are the model's (window-averaged) logits."""
        return self.scales == (1.0,) and not self.flip

    def _forward(self, x: Tensor) -> Tensor:
        if not self.fast:
            return self._run(x)
        x = x.contiguous(memory_format=torch.channels_last)
        if self._autocast:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = self._run(x)
        else:
            out = self._run(x)
        return out.float().contiguous()

    def _run(self, x: Tensor) -> Tensor:
        if self.crop is None:
            return self.model(x)
        return sliding_window(self.model, x, self.crop, self.stride)

    def _scores(self, x: Tensor) -> Tensor:
        if self.is_plain:
            return self._forward(x)
        return tta_log_probs(None, x, self.scales, self.flip, forward=self._forward)

    def _probs(self, x: Tensor) -> Tensor:
        if self.is_plain:
            return self._forward(x).softmax(1)
        return multiscale_probs(None, x, self.scales, self.flip, self._forward)

    def _refined(self, images: Sequence[Tensor], scores: Tensor) -> Tensor:
        """Log of the refined probabilities, per image (``refine`` takes one image)."""
        assert self.refine is not None
        probs = scores.float().softmax(1)
        refined = [
            self.refine(img.to(self.device), p) for img, p in zip(images, probs, strict=True)
        ]
        return torch.stack(refined).clamp_min(1e-20).log()

    @torch.inference_mode()
    def logits(self, image: ImageLike) -> torch.Tensor:
        """Class scores ``[K, H, W]`` at the image's size, on the predictor's device.

        With the defaults these are the model's logits (averaged over overlapping windows when
        ``crop`` is set). With several scales, ``flip`` or ``refine`` they are the log of the
        (averaged, refined) probabilities, so ``argmax`` and ``softmax`` stay correct."""
        img = to_image_tensor(image)
        scores = self._scores(self._normalize(img).unsqueeze(0).to(self.device))
        return (scores if self.refine is None else self._refined([img], scores))[0]

    @torch.inference_mode()
    def predict_proba(self, image: ImageLike) -> torch.Tensor:
        """Class probabilities ``[K, H, W]`` (sum 1 over classes), a float tensor on the CPU."""
        img = to_image_tensor(image)
        probs = self._probs(self._normalize(img).unsqueeze(0).to(self.device))[0].float()
        if self.refine is not None:
            probs = self.refine(img.to(self.device), probs)
        return probs.cpu()

    def predict(self, image: ImageLike) -> np.ndarray:
        """Class ids, an ``HxW`` int64 array at the image's size."""
        return self.logits(image).argmax(0).cpu().numpy()

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[ImageLike], batch_size: int = 8) -> list[np.ndarray]:
        """:meth:`predict` for many images; images of one size run together, ``batch_size`` at
        a time. Returns ``HxW`` int64 arrays in input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        raw = [to_image_tensor(image) for image in images]
        tensors = [self._normalize(image) for image in raw]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tensors):
            by_size.setdefault(tuple(t.shape), []).append(i)
        results: list[np.ndarray | None] = [None] * len(tensors)
        for indices in by_size.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                x = torch.stack([tensors[i] for i in chunk]).to(self.device)
                scores = self._scores(x)
                if self.refine is not None:
                    scores = self._refined([raw[i] for i in chunk], scores)
                labels = scores.argmax(1).cpu().numpy()
                for i, label in zip(chunk, labels, strict=True):
                    results[i] = label
        return results  # type: ignore[return-value]

    def __call__(self, image: ImageLike) -> Any:
        return self.predict(image)
