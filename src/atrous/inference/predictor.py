"""``Predictor``: an image in any common form -> a class-id map at the image's own size."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..data import read_image
from ..data.info import DatasetInfo
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from ..errors import CheckpointError, DataError
from ..loader import Loaded, load
from .forward import (
    FastForward,
    InferenceOptions,
    ModelForward,
    build_forward,
    stack_forward,
)
from .memory import AUTO_CROP, forward_bytes, human, memory_budget, window_bytes
from .types import Forward


class WindowNotice(UserWarning):
    """An image too large for a whole-image forward runs in sliding windows instead."""


ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor
Refiner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(image uint8 [3,H,W], probs [K,H,W]) -> probs [K,H,W]``, e.g. ``atrous.refine.dense_crf``."""


def to_image_tensor(image: ImageLike) -> tv_tensors.Image:
    """A path, PIL image, ``HxWx3`` uint8 array or ``3xHxW`` uint8 tensor -> uint8 ``3xHxW``."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):  # as it displays: its EXIF orientation applied
        upright = ImageOps.exif_transpose(image) or image
        return tv_tensors.Image(F.pil_to_tensor(upright.convert("RGB")))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"expected an HxWx3 uint8 array, got shape {image.shape} dtype {image.dtype}"
            )
        if not image.flags.writeable:  # e.g. arrays from a web upload; torch wants writable
            image = image.copy()
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
    """Runs a segmentation model on images; returns maps at each image's own size.

    ``options`` (:class:`~.forward.InferenceOptions`, or its fields as keywords: ``scales``,
    ``flip``, ``output_stride``, ``crop``, ``stride``, ``fast``, ``compile``) choose the forward
    stack of :mod:`.forward`: the paper's evaluation protocol (DeepLabv3 Sec. 4.3) and the fast
    CPU copy. The model passed in is never modified: an option that would change it runs a copy.
    ``mean``/``std`` are the normalization the model was trained with; ``info`` carries class
    names and colours for callers that draw the result. ``refine`` post-processes each image's
    probabilities with the image, e.g. ``functools.partial(atrous.refine.dense_crf,
    backend="torch")`` or ``atrous.refine.posthoc_domain_transform``.

    With ``auto_window`` (the default) and no ``crop``, an input whose whole-image forward
    would not fit in memory (:mod:`.memory`) runs in 513-pixel sliding windows instead, with a
    :class:`WindowNotice` warning; one too large even for that raises ``DataError``.

    Every output is a torch tensor on the CPU: ``predict`` int64 ``[H, W]`` class ids,
    ``predict_proba`` float32 ``[K, H, W]`` probabilities, ``logits`` float32 ``[K, H, W]``
    scores. ``.numpy()`` gives arrays.
    """

    def __init__(
        self,
        model: nn.Module,
        options: InferenceOptions | None = None,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: str | torch.device = "cpu",
        info: DatasetInfo | None = None,
        refine: Refiner | None = None,
        auto_window: bool = True,
        **option_fields: Any,
    ) -> None:
        if options is not None and option_fields:
            raise ValueError("pass InferenceOptions or its fields as keywords, not both")
        self.options = options or InferenceOptions(**option_fields)
        self.device = resolve_device(device)
        self.model, self._forward = build_forward(model, self.options, self.device)
        self.mean, self.std = tuple(mean), tuple(std)
        self.info = info
        self.refine = refine
        self.auto_window = auto_window
        self._windowed: Forward | None = None
        self._normalize = eval_transforms(mean=mean, std=std)

    def __getattr__(self, name: str) -> Any:
        """The inference options read as attributes: ``scales``, ``flip``, ``crop``, ..."""
        if name != "options" and name in InferenceOptions.__dataclass_fields__:
            return getattr(self.options, name)
        raise AttributeError(name)

    @property
    def is_plain(self) -> bool:
        return self.options.is_plain

    def with_options(self, **changes: Any) -> Predictor:
        """A predictor for the same model and preprocessing with some options changed."""
        options = InferenceOptions(**{**asdict(self.options), **changes})
        return Predictor(
            self.model, options, mean=self.mean, std=self.std, device=self.device,
            info=self.info, refine=self.refine, auto_window=self.auto_window,
        )  # fmt: skip

    def window_for(self, shape: Sequence[int]) -> tuple[int, int] | None:
        """The sliding-window crop a normalized batch of ``shape`` ``[N, 3, H, W]`` must run
        in because its whole-image forward would not fit in memory, or ``None`` (it fits, a
        ``crop`` is set, or ``auto_window`` is off). Raises ``DataError`` when even windows
        would not fit."""
        if self.options.crop is not None or not self.auto_window:
            return None
        n, _, height, width = shape
        classes = len(self.info.classes) if self.info is not None else 21
        scales = tuple(self.options.scales)
        budget = memory_budget(self.device)
        need = forward_bytes(n * height * width, classes, scales)
        if need <= budget:
            return None
        crop = (AUTO_CROP, AUTO_CROP)
        windowed = window_bytes(height * width * n, classes, crop, scale=max(scales))
        if windowed > budget:
            raise DataError(
                f"a {width}x{height} image needs about {human(windowed)} even in "
                f"{AUTO_CROP}-pixel windows, more than the {human(budget)} available here; "
                "downscale it first"
            )
        warnings.warn(
            f"a {width}x{height} image needs about {human(need)} for a whole-image forward, "
            f"more than the {human(budget)} available here: running it in {AUTO_CROP}x"
            f"{AUTO_CROP} sliding windows (--crop sets the window)",
            WindowNotice,
            stacklevel=3,
        )
        return crop

    def _forward_for(self, batch: Tensor) -> Forward:
        """The forward stack, or its sliding-window twin when the batch is too large."""
        crop = self.window_for(batch.shape)
        if crop is None:
            return self._forward
        if self._windowed is None:
            options = InferenceOptions(**{**asdict(self.options), "crop": crop, "stride": None})
            base = self._forward
            while not isinstance(base, ModelForward):  # MultiScale -> the model's forward
                base = base.inner  # type: ignore[attr-defined]
            autocast = isinstance(base, FastForward) and base.autocast
            self._windowed = stack_forward(self.model, options, autocast=autocast)
        return self._windowed

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> Predictor:
        """Rebuild the model a checkpoint was trained as, with its weights and normalization.
        ``options`` go to the constructor (``scales``, ``flip``, ``output_stride``, ...)."""
        return cls.from_loaded(load(path, checkpoint_only=True), device=device, **options)

    @classmethod
    def from_file(
        cls, path: str | Path, *, device: str | torch.device = "cpu", **options: Any
    ) -> Predictor:
        """A predictor for an ``atrous export`` file (ONNX fp32 or int8, run by ONNX Runtime,
        extra ``atrous[export]``; TorchScript; a pt2 ``torch.export`` program, fp32 or PT2E int8,
        whose int8 kernels need ``compile=True``) with the normalization, classes and palette
        of its metadata; an atrous checkpoint works too. The kind is read from the content."""
        return cls.from_loaded(load(path), device=device, **options)

    @classmethod
    def from_loaded(
        cls,
        loaded: Loaded,
        *,
        device: str | torch.device = "cpu",
        refine: Refiner | None = None,
        **options: Any,
    ) -> Predictor:
        """A predictor for a model :func:`atrous.loader.load` read (a checkpoint or an exported
        file), with its normalization, classes and palette."""
        return cls(
            loaded.model, mean=loaded.mean, std=loaded.std, device=device, info=loaded.info,
            refine=refine, **options,
        )  # fmt: skip

    def scores(self, batch: Tensor, images: Sequence[Tensor] | None = None) -> Tensor:
        """Scores ``[N, K, H, W]`` on the predictor's device for a normalized ``batch``: the
        logits (window-averaged with ``crop``), or with scales/flip the log of the averaged
        probabilities, or with ``refine`` the log of the refined ones (``images``: the uint8
        images of the batch), so ``argmax`` and ``softmax`` stay right either way."""
        forward = self._forward_for(batch)
        with torch.inference_mode():
            scores = forward(batch.to(self.device)).float()
            if self.refine is None:
                return scores
            if images is None:
                raise ValueError("refine needs the images of the batch")
            probs = scores.softmax(1)
            refined = [
                self.refine(img.to(self.device), p) for img, p in zip(images, probs, strict=True)
            ]
            return torch.stack(refined).clamp_min(1e-20).log()

    def normalize(self, image: ImageLike) -> Tensor:
        """The model's input for one image: ``[3, H, W]`` float, normalized with mean/std."""
        return self._normalize(to_image_tensor(image))

    def _scores_of(self, image: ImageLike) -> Tensor:
        img = to_image_tensor(image)
        return self.scores(self._normalize(img).unsqueeze(0), [img])[0]

    def logits(self, image: ImageLike) -> Tensor:
        """Class scores ``[K, H, W]`` at the image's size (see :meth:`scores`), on the CPU."""
        return self._scores_of(image).cpu()

    def predict_proba(self, image: ImageLike) -> Tensor:
        """Class probabilities ``[K, H, W]`` (sum 1 over classes), float32 on the CPU."""
        return self._scores_of(image).softmax(0).cpu()

    def predict(self, image: ImageLike, *, finite: bool = False) -> Tensor:
        """Class ids, an int64 ``[H, W]`` tensor at the image's size. With ``finite``, scores
        holding NaN or Inf raise ``CheckpointError`` instead of an argmax of NaN."""
        scores = self._scores_of(image)
        if finite:
            check_finite(scores)
        return scores.argmax(0).cpu()

    def predict_batch(self, images: Sequence[ImageLike], batch_size: int = 8) -> list[Tensor]:
        """:meth:`predict` for many images; images of one size run together, ``batch_size`` at
        a time. Returns int64 ``[H, W]`` tensors in input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        raw = [to_image_tensor(image) for image in images]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(raw):
            by_size.setdefault(tuple(image.shape), []).append(i)
        results: list[Tensor | None] = [None] * len(raw)
        for indices in by_size.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = torch.stack([self._normalize(raw[i]) for i in chunk])
                labels = self.scores(batch, [raw[i] for i in chunk]).argmax(1).cpu()
                for i, label in zip(chunk, labels, strict=True):
                    results[i] = label
        return results  # type: ignore[return-value]

    def __call__(self, image: ImageLike) -> Tensor:
        return self.predict(image)


def check_finite(scores: Tensor) -> None:
    """Raise ``CheckpointError`` if ``scores`` hold NaN or Inf (their argmax would be noise)."""
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        raise CheckpointError(
            f"the model's scores hold NaN or Inf at {int(bad.sum())} of {bad.numel()} values; "
            "its weights or this input overflow"
        )
