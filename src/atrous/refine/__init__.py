"""Boundary refinement of a prediction after the network: the dense CRF (DeepLab v1/v2) and the
domain transform guided by image edges. The layers to train through (CRF-as-RNN, DT-EdgeNet)
are model wrappers (:mod:`atrous.models.wrappers.crf_as_rnn`,
:mod:`atrous.models.wrappers.domain_transform`); they are re-exported here beside their
post-hoc forms."""

from ..models.wrappers.crf_as_rnn import CRFDeepLab, CRFParams, DenseCRF, with_dense_crf
from ..models.wrappers.domain_transform import (
    DomainTransform,
    DomainTransformDeepLab,
    EdgeNet,
    domain_transform,
    with_domain_transform,
)
from ..models.wrappers.permutohedral import PermutohedralLattice
from .crf import GRID, dense_crf, reference_available
from .posthoc import image_edges, posthoc_domain_transform

__all__ = [
    "GRID",
    "CRFDeepLab",
    "CRFParams",
    "DenseCRF",
    "DomainTransform",
    "DomainTransformDeepLab",
    "EdgeNet",
    "PermutohedralLattice",
    "dense_crf",
    "domain_transform",
    "image_edges",
    "posthoc_domain_transform",
    "reference_available",
    "with_dense_crf",
    "with_domain_transform",
]
