"""Panoptic-DeepLab and DeeperLab's decoder: semantic logits, instance centres and offsets."""

from .panoptic_deeplab import PanopticDeepLab, panoptic_deeplab

__all__ = ["PanopticDeepLab", "panoptic_deeplab"]
