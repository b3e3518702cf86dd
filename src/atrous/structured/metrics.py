"""Accumulators for structured outputs (``update / compute / reset / merge``): character and
word accuracy for words, Hamming error for multi-label tagging."""

from __future__ import annotations

import torch
from torch import Tensor


def _check(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(
            f"predictions and targets must both be [B, N], got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


class WordAccuracy:
    """Character accuracy (letters right / letters) and word accuracy (words with every
    letter right / words) over labellings ``[B, L]``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.chars = self.chars_right = self.words = self.words_right = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        _check(pred, target)
        right = pred.cpu() == target.cpu()
        self.chars += right.numel()
        self.chars_right += int(right.sum())
        self.words += right.shape[0]
        self.words_right += int(right.all(1).sum())

    def merge(self, other: WordAccuracy) -> None:
        self.chars += other.chars
        self.chars_right += other.chars_right
        self.words += other.words
        self.words_right += other.words_right

    def compute(self) -> dict[str, float]:
        """``{"char_accuracy", "word_accuracy"}`` as fractions."""
        return {
            "char_accuracy": self.chars_right / max(self.chars, 1),
            "word_accuracy": self.words_right / max(self.words, 1),
        }


class HammingError:
    """Fraction of wrong tags over multi-hot labellings ``[B, T]`` (the paper's tagging
    metric)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tags = self.wrong = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        _check(pred, target)
        self.tags += pred.numel()
        self.wrong += int((pred.cpu() != target.cpu()).sum())

    def merge(self, other: HammingError) -> None:
        self.tags += other.tags
        self.wrong += other.wrong

    def compute(self) -> dict[str, float]:
        """``{"hamming_error"}`` as a fraction."""
        return {"hamming_error": self.wrong / max(self.tags, 1)}


def word_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Character and word accuracy of one set of predictions."""
    metric = WordAccuracy()
    metric.update(pred, target)
    return metric.compute()


def hamming_error(pred: Tensor, target: Tensor) -> float:
    """Hamming error of one set of predictions."""
    metric = HammingError()
    metric.update(pred, target.to(torch.long))
    return metric.compute()["hamming_error"]
