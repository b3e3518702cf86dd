"""Post-hoc dense CRF: the fully connected CRF of DeepLab v1/v2 (Kraehenbuehl & Koltun, 2011) on
one prediction, by mean field.

The energy is the unary ``-log P(x_i)`` from the network plus, for every pair of pixels, a
Potts penalty weighted by two Gaussian kernels (DeepLab v2, Eq. 3):

    w1 * exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)   appearance
  + w2 * exp(-|p_i - p_j|^2 / 2 theta_gamma^2)                                   smoothness

Each mean-field iteration filters the current marginals with both kernels on the
permutohedral lattice (:mod:`atrous.models.wrappers.permutohedral`), with the reference's symmetric
kernel normalisation. Two backends compute it: ``"reference"``, the C++ ``densecrf`` through
``pydensecrf2`` (extra ``atrous[crf]``, CPU), and ``"torch"``, ours, which runs batched on any
device and is differentiable (:class:`~atrous.models.wrappers.crf_as_rnn.DenseCRF`, the layer that
CRF-as-RNN trains through). The papers' cross-validation over :data:`GRID` is
:func:`atrous.evaluation.crf_grid_search`.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import Tensor

from ..models.wrappers.crf_as_rnn import (
    ITERATIONS,
    THETA_ALPHA,
    THETA_BETA,
    THETA_GAMMA,
    UNARY_CLIP,
    W_APPEARANCE,
    W_SMOOTHNESS,
    CRFParams,
    DenseCRF,
)

GRID = {
    "w_appearance": (3.0, 4.0, 5.0, 6.0),
    "theta_alpha": tuple(float(t) for t in range(30, 101, 10)),
    "theta_beta": (3.0, 4.0, 5.0, 6.0),
}
"""The DeepLab papers' cross-validation grid for the appearance kernel."""


def reference_available() -> bool:
    """Whether the C++ reference (``pydensecrf2``, extra ``atrous[crf]``) is installed."""
    return importlib.util.find_spec("pydensecrf") is not None


def _reference(image: np.ndarray, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    import pydensecrf.densecrf as dcrf

    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(probs, UNARY_CLIP, None)).reshape(c, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.theta_gamma, compat=params.w_smoothness)
    crf.addPairwiseBilateral(
        sxy=params.theta_alpha,
        srgb=params.theta_beta,
        rgbim=np.ascontiguousarray(image),
        compat=params.w_appearance,
    )
    return np.asarray(crf.inference(params.iterations), dtype=np.float32).reshape(c, h, w)


def dense_crf(
    image: np.ndarray | Tensor,
    probs: np.ndarray | Tensor,
    iterations: int = ITERATIONS,
    *,
    w_appearance: float = W_APPEARANCE,
    theta_alpha: float = THETA_ALPHA,
    theta_beta: float = THETA_BETA,
    w_smoothness: float = W_SMOOTHNESS,
    theta_gamma: float = THETA_GAMMA,
    backend: str = "auto",
) -> np.ndarray | Tensor:
    """Refine softmax ``probs`` ``CxHxW`` of an ``image`` (uint8, ``HxWx3`` array or
    ``3xHxW`` tensor) by mean-field inference; returns ``CxHxW`` probabilities of the same kind
    (array or tensor, on the same device) as ``probs``.

    ``backend="reference"`` runs the C++ ``densecrf`` (needs ``atrous[crf]``), ``"torch"`` our
    lattice (any device), ``"auto"`` the reference for CPU inputs when installed, else ours.
    """
    params = CRFParams(iterations, w_appearance, theta_alpha, theta_beta, w_smoothness, theta_gamma)
    as_numpy = isinstance(probs, np.ndarray)
    probs_t = torch.from_numpy(probs) if as_numpy else probs
    image_t = torch.from_numpy(np.asarray(image)) if isinstance(image, np.ndarray) else image
    if image_t.ndim == 3 and image_t.shape[-1] == 3 and image_t.shape[0] != 3:
        image_t = image_t.permute(2, 0, 1)
    if image_t.dtype != torch.uint8 or image_t.ndim != 3 or image_t.shape[0] != 3:
        raise ValueError(
            f"image must be uint8 HxWx3 (or 3xHxW), got {tuple(image_t.shape)} {image_t.dtype}"
        )
    if probs_t.ndim != 3 or probs_t.shape[-2:] != image_t.shape[-2:]:
        raise ValueError(
            f"probs must be CxHxW at the image's size {tuple(image_t.shape[-2:])}, "
            f"got {tuple(probs_t.shape)}"
        )
    if backend not in ("auto", "reference", "torch"):
        raise ValueError(f"backend must be 'auto', 'reference' or 'torch', got {backend!r}")
    if backend == "auto":
        backend = "reference" if probs_t.device.type == "cpu" and reference_available() else "torch"
    if backend == "reference":
        if not reference_available():
            raise ImportError("backend='reference' needs pydensecrf2: pip install 'atrous[crf]'")
        out = _reference(
            image_t.permute(1, 2, 0).cpu().numpy(), probs_t.float().cpu().numpy(), params
        )
        result = torch.from_numpy(out).to(probs_t.device)
    else:
        crf = DenseCRF(params).to(probs_t.device)
        logits = probs_t.float().clamp(min=UNARY_CLIP).log()[None]
        with torch.no_grad():
            result = crf(logits, image_t[None].to(probs_t.device)).softmax(1)[0]
    return result.numpy() if as_numpy else result
