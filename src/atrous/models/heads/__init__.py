"""Heads on the backbone's features: LargeFOV (v1), ASPP-L (v2), ASPP (v3), the Dense Prediction
Cell, and the v3+ decoders that fuse the OS4 features."""

from .aspp import ASPP, ASPP_RATES, ASPPv2, rates_past_crop
from .decoders import DECODERS, BilinearAdditiveUpsample, DeepLabV3PlusDecoder
from .dpc import CITYSCAPES_CELL, DensePredictionCell
from .largefov import LargeFOV

__all__ = [
    "ASPP",
    "ASPP_RATES",
    "ASPPv2",
    "BilinearAdditiveUpsample",
    "CITYSCAPES_CELL",
    "DECODERS",
    "DeepLabV3PlusDecoder",
    "DensePredictionCell",
    "LargeFOV",
    "rates_past_crop",
]
