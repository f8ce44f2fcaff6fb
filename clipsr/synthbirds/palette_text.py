"""Teach a trained generator's text palette to read colours from captions alone.

The SR stage teaches the palette's text reader from the 16 captions of each step, and each caption names a
part's colour through a frozen sentence vector whose colour directions are small beside its phrasing
directions: after 1,500 steps the reader is right for about half the named parts. Reading a colour needs no
image, so this stage fits the reader alone on many captions (hundreds per step, no rendering) against the
colour each caption names (its vocabulary anchor) and whether it names the part. Everything else in the
generator, the text standardisation and the shared text mapper included, stays as the SR stage left it.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from clipsr.losses import palette_text_losses
from clipsr.model import CLIPSR
from clipsr.synthbirds.captions import bird_captions, caption_colours
from clipsr.synthbirds.colours import ANCHORS, colour_index
from clipsr.synthbirds.render import DESCRIBED_PARTS, sample_spec
from clipsr.synthbirds.splits import split_seeds


def caption_targets(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per caption and described part: the named colour's anchor in [-1, 1] (B, K, 3) and whether named (B, K)."""
    colours = torch.zeros(len(captions), len(DESCRIBED_PARTS), 3)
    named = torch.zeros(len(captions), len(DESCRIBED_PARTS))
    for i, caption in enumerate(captions):
        named_colours = caption_colours(caption)
        for k, part in enumerate(DESCRIBED_PARTS):
            colour = named_colours.get(part)
            if colour is not None:
                colours[i, k] = torch.from_numpy(ANCHORS[colour_index(colour)] / 127.5 - 1.0)
                named[i, k] = 1.0
    return colours, named


def palette_text_inputs(model: CLIPSR, captions: list[str]) -> torch.Tensor:
    """What the palette reads of these captions: F_T through the generator's (frozen) text path."""
    generator = model.generator
    with torch.no_grad():
        return generator.condition_text(model.encode_text(model.tokenize(captions)))


def fit_palette_text(model: CLIPSR, steps: int = 1500, birds: int = 64, lr: float = 1e-3, seed: int = 0,
                     progress: bool = True) -> dict[str, float]:
    """Train only `model.generator.palette.text` on captions of train birds (every caption of `birds` random
    birds per step). Returns the last step's losses; the model is left in eval mode."""
    palette = model.generator.palette
    if palette is None:
        raise ValueError("this model has no text palette (generator.text_palette = 0): nothing to fit")
    model.eval()
    rng = np.random.default_rng(seed)
    seeds = split_seeds("train")
    optimiser = torch.optim.Adam(palette.text.parameters(), lr=lr)
    losses = {}
    for _ in tqdm(range(steps), desc="palette text reader", unit="step", disable=not progress):
        captions = [c for s in rng.choice(seeds, birds) for c in bird_captions(sample_spec(int(s)))]
        colours, named = caption_targets(captions)
        taught = palette_text_losses(*palette.read(palette_text_inputs(model, captions)), colours, named)
        optimiser.zero_grad(set_to_none=True)
        sum(taught.values()).backward()
        optimiser.step()
        losses = {name: loss.item() for name, loss in taught.items()}
    return losses
