"""Boundary refinement of class scores: the dense CRF (DeepLab v1/v2) and the domain transform
(DT-EdgeNet), each post hoc on a prediction or as a layer to train through."""

from .crf import (
    GRID,
    CRFDeepLab,
    CRFParams,
    DenseCRF,
    crf_grid_search,
    dense_crf,
    reference_available,
    with_dense_crf,
)
from .domain_transform import (
    DomainTransform,
    DomainTransformDeepLab,
    EdgeNet,
    domain_transform,
    image_edges,
    posthoc_domain_transform,
    with_domain_transform,
)
from .permutohedral import PermutohedralLattice

__all__ = [
    "GRID",
    "CRFDeepLab",
    "CRFParams",
    "DenseCRF",
    "DomainTransform",
    "DomainTransformDeepLab",
    "EdgeNet",
    "PermutohedralLattice",
    "crf_grid_search",
    "dense_crf",
    "domain_transform",
    "image_edges",
    "posthoc_domain_transform",
    "reference_available",
    "with_dense_crf",
    "with_domain_transform",
]
