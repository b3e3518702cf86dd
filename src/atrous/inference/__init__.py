"""Logits -> labels."""

from .forward import InferenceOptions, build_forward
from .predictor import Predictor, resolve_device, to_image_tensor
from .sliding import sliding_window, window_starts
from .tta import CITYSCAPES_SCALES, VOC_SCALES, multiscale_probs, tta_log_probs
from .writer import WrittenFiles, find_images, predict_to_files, save_prediction

__all__ = [
    "CITYSCAPES_SCALES",
    "InferenceOptions",
    "WrittenFiles",
    "build_forward",
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
