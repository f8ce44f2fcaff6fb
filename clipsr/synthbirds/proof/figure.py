"""Figure: the paper's Fig. 8 on SynthBirds, one row per example bird."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clipsr.metrics.report import image_grid
from clipsr.synthbirds.proof.measure import Example

COLUMNS = ("LR", "bicubic", "SR, caption A", "SR, caption B", "HR")


def save_figure(examples: Sequence[Example], path: str | Path) -> Path:
    """LR | bicubic | SR (caption A) | SR (caption B: one part recoloured) | HR, one row per example, each
    captioned "A: ... | B: ..."."""
    if not examples:
        raise ValueError("a figure needs at least one example bird")
    return image_grid([(example.tiles, example.caption) for example in examples], COLUMNS, path)
