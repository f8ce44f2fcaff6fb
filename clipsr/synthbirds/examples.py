"""The example inputs in `examples/` (the README's first command, clipsr-web's example list, the docs' tests):
16x16 LRs of a few test birds, never trained on, with each bird's evaluation caption. A command writes
them, so they can be drawn again whenever the renderer changes.

The seeds were picked so that the caption visibly matters with the built-in demo: each bird's crown and wings
differ in colour from its body, bicubic loses the colour of most described parts, and with its caption the
demo paints all four parts in their true colours and repaints each one when its colour word changes.
bird_0 has purple wings, which the README's screenshot changes to red.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

from clipsr.existing_output import write_new_folder
from clipsr.synthbirds.captions import bird_captions
from clipsr.synthbirds.jsonl import lr_uint8
from clipsr.synthbirds.render import render, sample_spec
from clipsr.synthbirds.splits import SPLIT_SEEDS

EXAMPLE_SEEDS: tuple[int, ...] = (20_000_157, 20_000_117, 20_000_028, 20_000_291)
PROMPTS = "prompts.csv"


def check_test_seeds(seeds: list[int] | tuple[int, ...]) -> None:
    """ValueError unless every seed is a test bird (a train or val bird is one a model may have seen)."""
    if not seeds:
        raise ValueError("no seeds: give at least one test seed")
    test = SPLIT_SEEDS["test"]
    outside = [seed for seed in seeds if seed not in test]
    if outside:
        raise ValueError(f"seed {outside[0]} is not a test bird; test seeds are {test.start}..{test.stop - 1}")


def write_examples(out: str | Path, seeds: tuple[int, ...] = EXAMPLE_SEEDS, scale: int = 16,
                   restart: bool = False) -> Path | None:
    """Write OUT/bird_<i>.png (the bicubic LR of test bird `seeds[i]`) and OUT/prompts.csv (its caption).

    OUT must be new or empty; `restart` moves an existing OUT aside to OUT.old-<time>. The folder is filled
    beside OUT and renamed into place, so OUT is never partial. Returns where an earlier OUT went, if it moved.
    """
    check_test_seeds(seeds)
    return write_new_folder(Path(out), lambda draft: _write_birds(draft, seeds, scale), restart=restart)


def _write_birds(folder: Path, seeds: tuple[int, ...], scale: int) -> None:
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(["image", "prompt"])
    for i, seed in enumerate(seeds):
        spec = sample_spec(seed)
        name = f"bird_{i}.png"
        Image.fromarray(lr_uint8(render(spec)[0], scale)).save(folder / name)
        table.writerow([name, bird_captions(spec)[0]])
    (folder / PROMPTS).write_text(rows.getvalue())
