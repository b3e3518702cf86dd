"""Composable forwards: a normalized batch ``[N,3,H,W]`` -> scores ``[N,K,H,W]`` at its size.

Each piece wraps the forward below it, so the paper's evaluation protocol is a stack:
:class:`ModelForward` (the network, or its :class:`FastForward` copy) -> :class:`SlidingWindow`
(large images) -> :class:`MultiScale` (scales and flips, DeepLabv3 Sec. 4.3).
:func:`build_forward` stacks them from :class:`InferenceOptions`, copying the model first
whenever an option would change it (output stride, device, eval mode, BN folding), so the model
a caller passes in is never modified.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .fast import bf16_autocast_supported, optimize_for_inference
from .sliding import pair, sliding_window
from .tta import check_scales, tta_log_probs
from .types import Forward


@dataclass(frozen=True)
class InferenceOptions:
    """How to run a model on an image. The defaults give plain single-scale whole-image
    inference; ``scales``/``flip`` average the softmax over rescaled and flipped inputs,
    ``output_stride`` re-points the network (e.g. train at OS16, evaluate at OS8), ``crop``/
    ``stride`` switch to sliding windows, ``fast`` runs a BN-folded channels-last copy under
    bf16 autocast where the CPU supports it, ``compile`` adds ``torch.compile``."""

    scales: Sequence[float] = (1.0,)
    flip: bool = False
    output_stride: int | None = None
    crop: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] | None = None
    fast: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", check_scales(self.scales))
        object.__setattr__(self, "flip", bool(self.flip))
        if self.stride is not None and self.crop is None:
            raise ValueError("stride is the sliding-window step; it needs crop as well")
        crop = None if self.crop is None else pair(self.crop, "crop")
        stride = None if self.stride is None else pair(self.stride, "stride")
        if crop is not None and stride is not None and (stride[0] > crop[0] or stride[1] > crop[1]):
            raise ValueError(f"stride {stride} is larger than crop {crop}")
        object.__setattr__(self, "crop", crop)
        object.__setattr__(self, "stride", stride)

    @property
    def is_plain(self) -> bool:
        """Single scale 1, no flip: the scores are the model's (window-averaged) logits."""
        return tuple(self.scales) == (1.0,) and not self.flip


def semantic_scores(out: Tensor | Mapping[str, Tensor]) -> Tensor:
    """A model's semantic logits: its output, or the ``"semantic"`` entry of a model that
    returns several fields in eval mode (PersonLab)."""
    return out["semantic"] if isinstance(out, Mapping) else out


class ModelForward:
    """The model itself, in eval mode on its device."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, x: Tensor) -> Tensor:
        return semantic_scores(self.model(x))


class FastForward(ModelForward):
    """The model on channels-last inputs, under bf16 autocast when ``autocast``; float32 out."""

    def __init__(self, model: nn.Module, *, autocast: bool) -> None:
        super().__init__(model)
        self.autocast = autocast

    def __call__(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        context = (
            torch.autocast(x.device.type, dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with context:
            out = semantic_scores(self.model(x))
        return out.float().contiguous()


class SlidingWindow:
    """``inner`` on ``crop``-sized windows stepping by ``stride``, overlaps averaged."""

    def __init__(
        self, inner: Forward, crop: tuple[int, int], stride: tuple[int, int] | None
    ) -> None:
        self.inner, self.crop, self.stride = inner, crop, stride

    def __call__(self, x: Tensor) -> Tensor:
        return sliding_window(self.inner, x, self.crop, self.stride)


class MultiScale:
    """``inner`` on every scale (and left-right flip); the log of the averaged softmax."""

    def __init__(self, inner: Forward, scales: Sequence[float], flip: bool) -> None:
        self.inner, self.scales, self.flip = inner, tuple(scales), flip

    def __call__(self, x: Tensor) -> Tensor:
        return tta_log_probs(self.inner, x, self.scales, self.flip)


def _device_of(model: nn.Module) -> torch.device | None:
    tensor = next(model.parameters(), None)
    return None if tensor is None else tensor.device


def prepare_model(
    model: nn.Module, options: InferenceOptions, device: torch.device
) -> tuple[nn.Module, bool]:
    """The module to run: ``model`` itself when nothing about it must change, else a copy set
    to ``options``'s output stride, on ``device``, in eval mode (and BN-folded when ``fast``).
    Returns it and whether to autocast to bf16."""
    if options.output_stride is not None and not hasattr(model, "set_output_stride"):
        raise ValueError(
            f"output_stride={options.output_stride} needs a model with set_output_stride(); "
            f"{type(model).__name__} has none (leave output_stride=None)"
        )
    has_params = _device_of(model) is not None
    if options.fast and (isinstance(model, torch.jit.ScriptModule) or not has_params):
        raise ValueError(
            f"fast=True needs an eager PyTorch model, got {type(model).__name__} "
            "(exported files are already optimized by their runtime)"
        )
    restride = (
        options.output_stride is not None
        and getattr(model, "output_stride", None) != options.output_stride
    )
    moves = has_params and _device_of(model) != device
    if options.fast:
        model = optimize_for_inference(model)  # an eval-mode copy, BN folded
    elif has_params and (restride or moves or model.training):
        model = copy.deepcopy(model)
    if restride:
        model.set_output_stride(options.output_stride)
    if has_params:
        model = model.to(device).eval()
    autocast = options.fast and device.type == "cpu" and bf16_autocast_supported(device)
    return model, autocast


def build_forward(
    model: nn.Module, options: InferenceOptions, device: torch.device
) -> tuple[nn.Module, Forward]:
    """The module to run (see :func:`prepare_model`) and the forward stack for ``options``."""
    module, autocast = prepare_model(model, options, device)
    if options.compile:  # torch.compile: a one-off compile per input size, then faster calls
        module = torch.compile(module, dynamic=True)
    return module, stack_forward(module, options, autocast=autocast)


def stack_forward(module: nn.Module, options: InferenceOptions, *, autocast: bool) -> Forward:
    """The forward stack for ``options`` around an already prepared ``module``."""
    forward: Forward = (
        FastForward(module, autocast=autocast) if options.fast else ModelForward(module)
    )
    if options.crop is not None:
        forward = SlidingWindow(forward, options.crop, options.stride)  # type: ignore[arg-type]
    if not options.is_plain:
        forward = MultiScale(forward, options.scales, options.flip)
    return forward
