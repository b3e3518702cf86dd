"""Backbones: ``[N,3,H,W] -> {"os4": low-level features, "out": high-level features}``."""

from .mobilenetv2 import MobileNetV2

__all__ = ["MobileNetV2"]
