"""Logits -> labels."""

from .predictor import Predictor, resolve_device, to_image_tensor
from .writer import find_images, predict_to_files, save_prediction

__all__ = ["Predictor", "resolve_device", "find_images", "predict_to_files", "save_prediction", "to_image_tensor"]
