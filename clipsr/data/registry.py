"""One entry point for every dataset, so configs and CLIs name datasets by string."""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from torch.utils.data import Dataset

from clipsr.data.celeba import celeba_dataset
from clipsr.data.coco import coco_dataset
from clipsr.data.cub import cub_dataset
from clipsr.data.jsonl import jsonl_dataset

FILE_DATASETS: dict[str, Callable[..., Dataset]] = {
    "cub": cub_dataset, "coco": coco_dataset, "celeba": celeba_dataset, "jsonl": jsonl_dataset,
}
NAMES = (*FILE_DATASETS, "synthbirds")


def build_dataset(name: str, root: str | None, split: str, scale: int, train: bool, **options) -> Dataset:
    """The dataset `name` (one of `NAMES`) for `split` at `scale`, in training or evaluation mode.

    File datasets need `root`; synthbirds is generated, takes no root, and is imported only when asked
    for (it lives in `clipsr.synthbirds`)."""
    if name == "synthbirds":
        if root is not None:
            raise ValueError(f"dataset 'synthbirds' is generated and takes no root, got {root!r}")
        cls = import_module("clipsr.synthbirds.dataset").SynthBirdsDataset
        return cls(split=split, scale=scale, train=train, **options)
    if name not in FILE_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root path")
    return FILE_DATASETS[name](root, split, scale, train, **options)
