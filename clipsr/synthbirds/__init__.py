"""SynthBirds: procedurally drawn, captioned birds whose described parts are too thin to survive 16x downsampling.

Torch-free at import; the torch Dataset is `clipsr.synthbirds.dataset.SynthBirdsDataset`.
"""
from __future__ import annotations

from clipsr.synthbirds.captions import bird_captions, captions, edit
from clipsr.synthbirds.colours import COLOURS, NAMES
from clipsr.synthbirds.jsonl import export_jsonl
from clipsr.synthbirds.measure import part_colour_accuracy, part_colour_survival, part_colours
from clipsr.synthbirds.render import DESCRIBED_PARTS, PARTS, BirdSpec, render, sample_spec
from clipsr.synthbirds.splits import SPLIT_SEEDS

__all__ = ["COLOURS", "DESCRIBED_PARTS", "NAMES", "PARTS", "SPLIT_SEEDS", "BirdSpec", "bird_captions", "captions",
           "edit", "export_jsonl", "part_colour_accuracy", "part_colour_survival", "part_colours", "render", "sample_spec"]
