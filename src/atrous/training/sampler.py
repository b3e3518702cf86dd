"""The training sample stream: shuffled (index, augmentation seed) pairs that resume exactly and
split across data-parallel ranks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class StepSampler(Sampler[tuple[int, int]]):
    """Endless shuffled ``(index, augmentation seed)`` pairs, starting at global sample ``start``.

    Epoch ``e``'s order and seeds come from ``(seed, e)`` alone, so a run resumed at any step
    sees exactly the samples and augmentations an uninterrupted run would, with any number of
    loader workers. With ``world_size > 1`` the global stream is cut into batches of
    ``batch_size x world_size`` and ``rank`` keeps its ``batch_size`` slice of each one.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        start: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
    ) -> None:
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.size)
        block, low = self.batch_size * self.world_size, self.rank * self.batch_size
        position = self.start
        while True:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
            seeds = torch.randint(2**62, (self.size,), generator=generator).tolist()
            for pair in zip(order[offset:], seeds[offset:], strict=True):
                if low <= position % block < low + self.batch_size:
                    yield pair
                position += 1
            epoch, offset = epoch + 1, 0


class SeededItems(Dataset):
    """Reads item ``index`` with the global torch RNG seeded for its transforms."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
