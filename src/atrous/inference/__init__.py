"""Logits -> labels."""

from .predictor import Predictor, resolve_device, to_image_tensor
from .sliding import sliding_window, window_starts
from .tta import CITYSCAPES_SCALES, VOC_SCALES, multiscale_probs, tta_log_probs
from .writer import comparison_grid, find_images, predict_to_files, save_prediction

__all__ = [
    "CITYSCAPES_SCALES",
    "comparison_grid",
    "Predictor",
    "VOC_SCALES",
    "multiscale_probs",
    "resolve_device",
    "find_images",
    "predict_to_files",
    "save_prediction",
    "sliding_window",
    "to_image_tensor",
    "tta_log_probs",
    "window_starts",
]
