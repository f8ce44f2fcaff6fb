"""Datasets by name, so configs and CLIs name datasets by string. This package's file datasets are
registered here; a package above it (SynthBirds, generated) registers its own with `register_dataset`."""
from __future__ import annotations

import inspect
from collections.abc import Callable

from torch.utils.data import Dataset

from clipsr.data.celeba import celeba_dataset
from clipsr.data.coco import coco_dataset
from clipsr.data.cub import cub_dataset
from clipsr.data.jsonl import jsonl_dataset
from clipsr.data.sample import CaptionedImageDataset

# name -> (factory, takes_root): file datasets are called as f(root, split, scale, train, **options),
# generated ones as f(split=..., scale=..., train=..., **options)
_DATASETS: dict[str, tuple[Callable[..., Dataset], bool]] = {}


def register_dataset(name: str, factory: Callable[..., Dataset], *, takes_root: bool) -> None:
    if name in _DATASETS and _DATASETS[name] != (factory, takes_root):
        raise ValueError(f"dataset {name!r} is registered already")
    _DATASETS[name] = (factory, takes_root)


def dataset_names() -> tuple[str, ...]:
    return tuple(_DATASETS)


def build_dataset(name: str, root: str | None, split: str, scale: int, train: bool, **options) -> Dataset:
    """The dataset `name` (one of `dataset_names()`) for `split` at `scale`, in training or evaluation mode."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_DATASETS)}")
    factory, takes_root = _DATASETS[name]
    _check_options(name, factory, takes_root, options)
    if not takes_root:
        if root is not None:
            raise ValueError(f"dataset {name!r} is generated and takes no root, got {root!r}")
        return factory(split=split, scale=scale, train=train, **options)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root path")
    return factory(root, split, scale, train, **options)


def _check_options(name: str, factory: Callable[..., Dataset], takes_root: bool, options: dict) -> None:
    """A ValueError naming an option the dataset has no parameter for. A file dataset's factory passes the
    options it does not name on to `CaptionedImageDataset`; any other that takes `**options` checks them."""
    parameters = inspect.signature(factory).parameters.values()
    known = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
             and p.name not in ("root", "split", "scale", "train")]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        if not takes_root:
            return
        known += [p.name for p in inspect.signature(CaptionedImageDataset).parameters.values()
                  if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option {unknown[0]!r}; its options: {', '.join(known)}")


register_dataset("cub", cub_dataset, takes_root=True)
register_dataset("coco", coco_dataset, takes_root=True)
register_dataset("celeba", celeba_dataset, takes_root=True)
register_dataset("jsonl", jsonl_dataset, takes_root=True)
