"""Learning-rate schedules."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def poly_lr(optimizer: Optimizer, max_steps: int, power: float = 0.9) -> LambdaLR:
    """``lr = base_lr * (1 - step / max_steps) ** power``: DeepLab's "poly" policy (v2 paper)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return LambdaLR(optimizer, lambda step: max(0.0, 1 - step / max_steps) ** power)
