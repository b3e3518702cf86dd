"""Logits -> labels."""

from .predictor import Predictor, to_image_tensor

__all__ = ["Predictor", "to_image_tensor"]
