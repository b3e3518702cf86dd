"""Evaluation: a predictor over a dataset into accumulators (confusion matrix, boundary trimap,
per-image scores, refinements, example pictures), the CRF search and the report tables."""

from .crf_search import crf_grid_search

__all__ = ["crf_grid_search"]
