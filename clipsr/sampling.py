"""Batches as a pure function of (seed, step): a run resumed at step N sees exactly the batches and the
augmentations that an uninterrupted run sees, whatever the number of workers or processes."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, from `start_step` on, this rank's share of the global batch of each step as (seed, index)."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start_step: int, steps: int,
                 rank: int = 0, world: int = 1):
        if n_items < 1:
            raise ValueError("the dataset is empty")
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.start_step, self.steps, self.rank, self.world = start_step, steps, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.batch_size // self.world
        for step in range(self.start_step, self.steps):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            indices = torch.randint(self.n_items, (self.batch_size,), generator=g).tolist()
            mine = range(self.rank * share, (self.rank + 1) * share)
            yield [(_item_seed(self.seed, step, i), indices[i]) for i in mine]


class SeededItems(Dataset):
    """Seeds torch's RNG per item, so random crops, flips and captions depend only on (seed, step, slot)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        seed, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def _item_seed(seed: int, step: int, slot: int) -> int:
    return (seed * 1_000_003 + step) * 4096 + slot
