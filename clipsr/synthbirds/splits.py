"""Seed ranges of the SynthBirds splits: disjoint, so no held-out bird is ever drawn during training."""
from __future__ import annotations

SPLIT_SEEDS: dict[str, range] = {
    "train": range(0, 10_000_000),
    "val": range(10_000_000, 20_000_000),
    "test": range(20_000_000, 30_000_000),
}
DEFAULT_COUNTS: dict[str, int] = {"train": 10_000, "val": 500, "test": 500}


def split_seeds(split: str, count: int | None = None, seed_offset: int = 0) -> range:
    """The `count` seeds of `split` starting `seed_offset` into its range; errors if they leave the range."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown SynthBirds split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}")
    count = DEFAULT_COUNTS[split] if count is None else count
    seeds = SPLIT_SEEDS[split]
    if count < 0 or seed_offset < 0 or seed_offset + count > len(seeds):
        raise ValueError(f"count={count} and seed_offset={seed_offset} leave the {split} seed range "
                         f"[{seeds.start}, {seeds.stop})")
    return range(seeds.start + seed_offset, seeds.start + seed_offset + count)


def bird_key(split: str, seed: int) -> str:
    """Stable name of a bird, used for file names and result tables."""
    return f"synthbirds-{split}-{seed:08d}"
