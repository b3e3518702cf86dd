"""Task (2) of Chen et al. (ICML 2015): multi-label image tagging. Each tag is a binary
variable; a CNN scores every tag from the image (the paper: AlexNet; here a small CNN for a CPU)
and a learned 2 x 2 table scores every pair of tags, a fully connected pairwise graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .graph import FactorGraph, fully_connected


class TagModel(nn.Module):
    """Potentials of a picture's tags: ``forward(images [B, 3, H, W])`` returns unary
    ``[B, T, 2]`` (0 for "absent", the CNN's score for "present") and pairwise
    ``[B, T (T - 1) / 2, 2, 2]``, one learned table per tag pair (zeros at first)."""

    def __init__(self, num_tags: int, *, width: int = 32, backbone: nn.Module | None = None):
        super().__init__()
        self.num_tags = num_tags
        self.backbone = backbone or nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, num_tags),
        )
        num_pairs = num_tags * (num_tags - 1) // 2
        self.pair = nn.Parameter(torch.zeros(num_pairs, 2, 2))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
        scores = self.backbone(images)
        if scores.shape[-1] != self.num_tags:
            raise ValueError(
                f"the backbone gave {scores.shape[-1]} scores for {self.num_tags} tags"
            )
        unary = torch.stack([torch.zeros_like(scores), scores], dim=-1)
        pairwise = self.pair.expand(images.shape[0], *self.pair.shape)
        return unary, pairwise


def tag_graph(num_tags: int) -> FactorGraph:
    """Every pair of ``num_tags`` binary tags joined (the paper's fully connected tag graph)."""
    return fully_connected(num_tags, 2)
