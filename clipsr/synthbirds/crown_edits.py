"""Crown edits on birds drawn otherwise: does a caption recolour a crown on birds bigger and chunkier than
SynthBirds' own, with crowns about one LR pixel thick?

Each test bird is redrawn (`redrawn`: body length 130-170 px, aspect 0.6-0.75, head 0.7-0.85 of the body's
half-height, crown 13-18 px, wing bars 9-13 px; colours, pose and scene as drawn) or kept as it is, and asked
for its crown in another colour by the full canonical caption of the edited bird and by the short wording
users type ("a bird with red crown"); the true caption's crown colour is the third rate.
"""
from __future__ import annotations

import numpy as np
import torch

from clipsr.inference import super_resolve, to_uint8
from clipsr.model import CLIPSR
from clipsr.synthbirds.captions import bird_captions, recolour
from clipsr.synthbirds.colours import NAMES, colour_index
from clipsr.synthbirds.dataset import lr_tensor
from clipsr.synthbirds.measure import part_colours
from clipsr.synthbirds.render import BirdSpec, redraw_sizes, render, sample_spec
from clipsr.synthbirds.splits import split_seeds

REDRAWN = {"length": (130.0, 170.0), "aspect": (0.6, 0.75), "head_scale": (0.7, 0.85), "crown_width": (13.0, 18.0),
           "bar_width": (9.0, 13.0)}


def redrawn(spec: BirdSpec) -> BirdSpec:
    """`spec` with the sizes of REDRAWN (drawn from a stream seeded by the bird)."""
    return redraw_sizes(spec, REDRAWN, np.random.default_rng(spec.seed))


@torch.no_grad()
def crown_edit_rates(model: CLIPSR, n: int = 150, redraw: bool = True, seed: int = 1) -> dict[str, float]:
    """Over `n` test birds: how often the crown takes the asked colour under the edited bird's canonical
    caption ("sentence") and under "a bird with {colour} crown" ("short"), and under the true caption ("true")."""
    rng = np.random.default_rng(seed)
    hits: dict[str, list[bool]] = {"sentence": [], "short": [], "true": []}
    for bird in split_seeds("test", n):
        spec = sample_spec(int(bird))
        spec = redrawn(spec) if redraw else spec
        hr, masks = render(spec)
        lr = lr_tensor(hr, model.scale)[None].repeat(3, 1, 1, 1)
        edited = recolour(spec, "crown", int(rng.integers(1, len(NAMES))))
        captions = [bird_captions(spec)[0], bird_captions(edited)[0], f"a bird with {edited.crown} crown"]
        out = to_uint8(super_resolve(model, lr, captions))
        found = [part_colours(image, masks, ["crown"])["crown"] for image in out]
        hits["true"].append(found[0] == colour_index(spec.crown))
        hits["sentence"].append(found[1] == colour_index(edited.crown))
        hits["short"].append(found[2] == colour_index(edited.crown))
    return {name: float(np.mean(values)) for name, values in hits.items()}
