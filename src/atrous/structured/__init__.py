"""Deep structured models (Chen, Schwing, Yuille & Urtasun, ICML 2015): factor graphs over
discrete variables, convex belief propagation, and learners that fit deep potentials to the
CRF likelihood with the log-partition approximated by convex BP."""

from .bp import Beliefs, convex_bp, decode, score, zero_messages
from .graph import (
    Counting,
    FactorGraph,
    bethe_counting,
    chain,
    default_counting,
    fully_connected,
    grid,
    tree,
    trw_counting,
    uniform_counting,
)

__all__ = [
    "Beliefs",
    "Counting",
    "FactorGraph",
    "bethe_counting",
    "chain",
    "convex_bp",
    "decode",
    "default_counting",
    "fully_connected",
    "grid",
    "score",
    "tree",
    "trw_counting",
    "uniform_counting",
    "zero_messages",
]
