"""Every dataset the training and evaluation code knows by name: `clipsr.data`'s file datasets and the
generated SynthBirds, registered here, above both packages, so that the data layer never imports
SynthBirds. Import `build_dataset` from here."""
from __future__ import annotations

from clipsr.data.registry import build_dataset, dataset_names, register_dataset
from clipsr.synthbirds.dataset import SynthBirdsDataset

register_dataset("synthbirds", SynthBirdsDataset, takes_root=False)

__all__ = ["build_dataset", "dataset_names"]
