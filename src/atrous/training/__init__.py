"""Training and evaluation loops; they consume data, models, inference and metrics."""

from .evaluate import evaluate
from .loop import train
from .schedules import poly_lr

__all__ = ["evaluate", "poly_lr", "train"]
