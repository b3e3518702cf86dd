"""Task (1) of Chen et al. (ICML 2015): words from noisy character images. A chain of letters;
each letter's 26 unary scores come from one MLP applied to its image, and one learned 26 x 26
letter-pair table scores every pair of neighbours (the paper's setup: an MLP for the unaries,
one pairwise table on the chain)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .graph import FactorGraph, chain

NUM_LETTERS = 26
HIDDEN = 128
"""MLP width (chosen for a CPU; the paper compares MLPs of several sizes: recalled, unverified)."""


class WordModel(nn.Module):
    """Potentials of a word: ``forward(images [B, L, H, W])`` returns unary ``[B, L, 26]`` from
    the per-letter MLP and pairwise ``[B, L - 1, 26, 26]``, the shared table (zeros at first)."""

    def __init__(
        self, *, pixels: int = 16 * 8, hidden: int = HIDDEN, layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = pixels
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.unary = nn.Sequential(*blocks, nn.Linear(width, NUM_LETTERS))
        self.pair = nn.Parameter(torch.zeros(NUM_LETTERS, NUM_LETTERS))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.ndim != 4:
            raise ValueError(f"word images must be [B, L, H, W], got {tuple(images.shape)}")
        b, length = images.shape[:2]
        unary = self.unary(images.flatten(2))
        pairwise = self.pair.expand(b, max(length - 1, 0), NUM_LETTERS, NUM_LETTERS)
        return unary, pairwise


def word_graph(length: int = 5) -> FactorGraph:
    """The chain of ``length`` letters (the paper's 5-letter words)."""
    return chain(length, NUM_LETTERS)
