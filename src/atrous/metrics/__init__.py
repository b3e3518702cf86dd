"""Labels -> numbers."""

from .confusion import ConfusionMatrix
from .report import format_table, write_json

__all__ = ["ConfusionMatrix", "format_table", "write_json"]
