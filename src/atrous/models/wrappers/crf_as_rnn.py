"""CRF-as-RNN (Zheng et al., 2015): the fully connected CRF of DeepLab v1/v2 (Kraehenbuehl &
Koltun, 2011) as a differentiable mean-field layer, and a model wrapped with it.

The energy is the unary ``-log P(x_i)`` from the network plus, for every pair of pixels, a
Potts penalty weighted by two Gaussian kernels (DeepLab v2, Eq. 3):

    w1 * exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)   appearance
  + w2 * exp(-|p_i - p_j|^2 / 2 theta_gamma^2)                                   smoothness

Each mean-field iteration filters the current marginals with both kernels on the
permutohedral lattice (:mod:`.permutohedral`), with the reference's symmetric kernel
normalisation. Post-hoc refinement with either backend is :func:`atrous.refine.dense_crf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import WrappedModel
from .permutohedral import PermutohedralLattice

# DeepLab v2 (Sec. 4.1; the released ResNet-101 VOC model): 10 iterations, w2 = 3,
# theta_gamma = 3 fixed; w1 = 4, theta_alpha = 67, theta_beta = 3 found by cross-validation
# on 100 VOC val images over w1 in [3:6], theta_alpha in [30:10:100], theta_beta in [3:6].
ITERATIONS = 10
W_APPEARANCE = 4.0
THETA_ALPHA = 67.0
THETA_BETA = 3.0
W_SMOOTHNESS = 3.0
THETA_GAMMA = 3.0
UNARY_CLIP = 1e-5  # probabilities below this are clipped before -log (pydensecrf's default)


@dataclass
class CRFParams:
    """The kernel parameters of the dense CRF; the defaults are DeepLab v2's."""

    iterations: int = ITERATIONS
    w_appearance: float = W_APPEARANCE
    theta_alpha: float = THETA_ALPHA
    theta_beta: float = THETA_BETA
    w_smoothness: float = W_SMOOTHNESS
    theta_gamma: float = THETA_GAMMA

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        for name in ("theta_alpha", "theta_beta", "theta_gamma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def _lattices(image: Tensor, params: CRFParams) -> tuple[PermutohedralLattice, ...]:
    """The appearance (x, y, r, g, b) and smoothness (x, y) lattices for ``[N,3,H,W]`` images
    in 0..255, one lattice per kernel for the whole batch, each with the reference's symmetric
    kernel normalisation ``1 / sqrt(k * 1)`` per pixel on both sides."""
    n, _, h, w = image.shape
    device = image.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    xy = torch.stack([xs, ys], -1).reshape(1, h * w, 2).expand(n, -1, -1)
    rgb = image.float().permute(0, 2, 3, 1).reshape(n, h * w, 3)
    groups = torch.arange(n, device=device).repeat_interleave(h * w) if n > 1 else None
    appearance = torch.cat([xy / params.theta_alpha, rgb / params.theta_beta], -1)
    smoothness = xy / params.theta_gamma
    return (
        PermutohedralLattice(appearance.reshape(n * h * w, 5), groups, normalize=True),
        PermutohedralLattice(smoothness.reshape(n * h * w, 2), groups, normalize=True),
    )


def _check_image(image: Tensor, scores: Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be [N,3,H,W], got {tuple(image.shape)}")
    if image.shape[0] != scores.shape[0] or image.shape[-2:] != scores.shape[-2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and scores {tuple(scores.shape)} differ in batch or size"
        )


class DenseCRF(nn.Module):
    """Mean-field dense CRF as a differentiable layer: ``(logits [N,C,H,W], image [N,3,H,W]
    in 0..255) -> refined logits``; ``softmax`` of the output gives the CRF marginals.

    The kernel weights ``w_appearance`` and ``w_smoothness`` are learnable parameters (as in
    CRF-as-RNN, Zheng et al., 2015); the kernel widths stay fixed. With ``num_classes`` the
    label compatibility is a learnable matrix initialised to Potts. Gradients flow to the
    logits and these parameters, not to the image.
    """

    def __init__(self, params: CRFParams | None = None, *, num_classes: int | None = None) -> None:
        super().__init__()
        self.params = params or CRFParams()
        self.w_appearance = nn.Parameter(torch.tensor(float(self.params.w_appearance)))
        self.w_smoothness = nn.Parameter(torch.tensor(float(self.params.w_smoothness)))
        self.compatibility = (
            None
            if num_classes is None
            else nn.Parameter(torch.ones(num_classes, num_classes) - torch.eye(num_classes))
        )

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"iterations={p.iterations}, theta_alpha={p.theta_alpha}, theta_beta={p.theta_beta}, "
            f"theta_gamma={p.theta_gamma}"
        )

    def forward(self, logits: Tensor, image: Tensor) -> Tensor:
        _check_image(image, logits)
        n, c, h, w = logits.shape
        if self.compatibility is not None and self.compatibility.shape[0] != c:
            raise ValueError(f"this CRF has {self.compatibility.shape[0]} classes, logits {c}")
        # Mean field runs in fp32 (fp64 for gradchecks) even under autocast: the lattice's
        # sums over many points and the kernel normalisation need the precision.
        with torch.autocast(logits.device.type, enabled=False):
            return self._mean_field(logits, image).to(logits.dtype)

    def _mean_field(self, logits: Tensor, image: Tensor) -> Tensor:
        n, c, h, w = logits.shape
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        unary = logits.to(dtype).permute(0, 2, 3, 1).reshape(n * h * w, c)
        appearance, smoothness = _lattices(image.detach(), self.params)
        w_app, w_smooth = self.w_appearance.to(dtype), self.w_smoothness.to(dtype)
        scores = unary
        for _ in range(self.params.iterations):
            q = scores.softmax(1)
            if self.compatibility is None:  # Potts: only the own-label term varies by label
                scores = torch.addcmul(unary, appearance.filter(q), w_app)
                scores = torch.addcmul(scores, smoothness.filter(q), w_smooth)
            else:
                message = appearance.filter(q) * w_app + smoothness.filter(q) * w_smooth
                scores = unary - message @ self.compatibility.to(dtype).T
        return scores.reshape(n, h, w, c).permute(0, 3, 1, 2)


class CRFDeepLab(WrappedModel):
    """A segmentation model with a :class:`DenseCRF` on its logits, trained end to end
    (CRF-as-RNN, Zheng et al., 2015). The CRF needs the image in 0..255, so the normalized
    input is mapped back with the training ``mean`` and ``std``."""

    def __init__(
        self, model: nn.Module, crf: DenseCRF, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__(model)
        self.crf = crf
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        image = ((x * self.std + self.mean) * 255).clamp(0, 255).round()
        return self.crf(self.model(x), image)


def with_dense_crf(
    model: nn.Module,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    params: CRFParams | None = None,
    **settings: float,
) -> CRFDeepLab:
    """Wrap ``model`` with a learnable dense CRF layer (kernel weights learned, widths fixed);
    ``mean``/``std`` are the input normalization. CRF-as-RNN trains with 5 mean-field
    iterations (their Sec. 5); pass ``CRFParams(iterations=5)`` (or ``iterations=5``: the
    :class:`CRFParams` fields as keywords, as a :class:`~atrous.models.spec.ModelSpec` stores
    them)."""
    if params is not None and settings:
        raise ValueError("pass CRF settings either as params=CRFParams(...) or as keywords")
    if params is None:
        params = CRFParams(**settings)  # type: ignore[arg-type]
    return CRFDeepLab(model, DenseCRF(params), mean, std)
