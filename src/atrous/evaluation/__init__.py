"""Evaluation: a predictor over a dataset into accumulators (confusion matrix, boundary trimap,
per-image scores, refinements, example pictures), the CRF search, report tables and pictures."""

from ..tasks import PanopticScores, panoptic_ids
from .accumulators import (
    Accumulator,
    Confusion,
    Examples,
    PerImage,
    Prediction,
    Refinement,
    Refiner,
    Trimap,
)
from .checkpoints import evaluate_checkpoint, search_crf_checkpoint
from .crf_search import crf_grid_search
from .loop import accumulate, evaluate
from .pictures import comparison_grid
from .refiners import chain, refiners_from_recipe
from .report import (
    crf_search_table,
    format_table,
    instances_table,
    panoptic_table,
    people_table,
    refinement_table,
    size_table,
    trimap_line,
)

__all__ = [
    "Accumulator",
    "accumulate",
    "Confusion",
    "Examples",
    "PanopticScores",
    "PerImage",
    "Prediction",
    "Refinement",
    "Refiner",
    "Trimap",
    "chain",
    "comparison_grid",
    "crf_grid_search",
    "crf_search_table",
    "evaluate",
    "evaluate_checkpoint",
    "panoptic_ids",
    "panoptic_table",
    "people_table",
    "size_table",
    "format_table",
    "instances_table",
    "refinement_table",
    "refiners_from_recipe",
    "search_crf_checkpoint",
    "trimap_line",
]
