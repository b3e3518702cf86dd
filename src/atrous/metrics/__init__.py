"""Labels -> numbers."""

from .confusion import ConfusionMatrix
from .report import format_table, write_json
from .trimap import TrimapIoU, boundary_pixels, trimap_band

__all__ = [
    "ConfusionMatrix",
    "TrimapIoU",
    "boundary_pixels",
    "format_table",
    "trimap_band",
    "write_json",
]
