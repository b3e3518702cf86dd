"""Training: the recipe's solver over the data set, with checkpoints, exact resume and a final
evaluation; it consumes data, models, inference and evaluation."""

from .loop import train
from .schedules import poly_lr

__all__ = ["poly_lr", "train"]
