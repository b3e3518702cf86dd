"""Models: ``[N,3,H,W]`` images -> ``[N,K,H,W]`` logits."""

from .deeplab import MODELS, DeepLab, build_model, deeplabv3plus, mobile_deeplabv3

__all__ = ["MODELS", "DeepLab", "build_model", "deeplabv3plus", "mobile_deeplabv3"]
