"""Labels -> numbers."""

from .confusion import ConfusionMatrix
from .panoptic import PanopticQuality, ParsingCovering
from .report import write_json
from .trimap import TrimapIoU, boundary_pixels, trimap_band

__all__ = [
    "ConfusionMatrix",
    "PanopticQuality",
    "ParsingCovering",
    "TrimapIoU",
    "boundary_pixels",
    "trimap_band",
    "write_json",
]
