"""Logits -> labels."""

from .predictor import Predictor, resolve_device, to_image_tensor
from .writer import comparison_grid, find_images, predict_to_files, save_prediction

__all__ = [
    "comparison_grid",
    "Predictor",
    "resolve_device",
    "find_images",
    "predict_to_files",
    "save_prediction",
    "to_image_tensor",
]
