"""Learning-rate schedules."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def poly_lr(
    optimizer: Optimizer, max_steps: int, power: float = 0.9, warmup_steps: int = 0
) -> LambdaLR:
    """``lr = base_lr * (1 - step / max_steps) ** power``: DeepLab's "poly" policy (v2 paper),
    optionally times a linear warm-up ``(step + 1) / warmup_steps`` over the first steps."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        return warmup * max(0.0, 1 - step / max_steps) ** power

    return LambdaLR(optimizer, factor)
