"""Labels -> numbers."""

from .confusion import ConfusionMatrix
from .report import write_json
from .trimap import TrimapIoU, boundary_pixels, trimap_band

__all__ = [
    "ConfusionMatrix",
    "TrimapIoU",
    "boundary_pixels",
    "trimap_band",
    "write_json",
]
