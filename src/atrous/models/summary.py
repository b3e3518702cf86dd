"""Model size and cost: parameter count and multiply-adds for one input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelSummary:
    params: int
    madds: int
    input_size: tuple[int, int, int]

    def __str__(self) -> str:
        c, h, w = self.input_size
        return f"{self.params / 1e6:.2f}M params, {self.madds / 1e9:.2f}B MAdds at {c}x{h}x{w}"


@torch.no_grad()
def summary(model: nn.Module, input_size: tuple[int, int, int] = (3, 513, 513)) -> ModelSummary:
    """Count parameters and the multiply-adds of one forward pass on a batch of one.

    Multiply-adds are those of convolutions and matrix products, as the papers count them
    (MobileNetV2 paper, Table 7); torch's FlopCounterMode counts each as two FLOPs. The network
    runs at exactly ``input_size`` (the aligned forward's padding is off), as the papers' counts
    at 513 are; ``atrous.models.align.exact_size`` gives the size a prediction really runs at.
    """
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    padded = [m for m in model.modules() if getattr(m, "pad_input", False)]
    for m in padded:
        m.pad_input = False
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for m in padded:
            m.pad_input = True
        model.train(was_training)
    return ModelSummary(params, counter.get_total_flops() // 2, tuple(input_size))
