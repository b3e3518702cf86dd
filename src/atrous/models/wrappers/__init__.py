"""Layers put around a segmentation model, each a :class:`WrappedModel`: attention to scale,
the domain transform of DT-EdgeNet, CRF-as-RNN (and the permutohedral lattice it filters on)."""

from .base import WrappedModel
from .crf_as_rnn import CRFDeepLab, CRFParams, DenseCRF, with_dense_crf
from .domain_transform import DomainTransform, DomainTransformDeepLab, with_domain_transform
from .scale_attention import ScaleAttentionDeepLab, with_scale_attention

__all__ = [
    "CRFDeepLab",
    "CRFParams",
    "DenseCRF",
    "DomainTransform",
    "DomainTransformDeepLab",
    "ScaleAttentionDeepLab",
    "WrappedModel",
    "with_dense_crf",
    "with_domain_transform",
    "with_scale_attention",
]
