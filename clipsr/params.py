"""Parameter accounting: honest unique counts, what a deployment carries, and the paper's convention.

The paper's 632.2M (Table III) is the sum the reference training script prints: the generator with its
frozen CLIP visual trunk, plus the discriminator and text head, plus "else", which holds three more whole
CLIP models (the text encoder's, the discriminator's and a spare). CLIP ViT-B/32 is thus counted about
4.5 times. We report that sum to show the reproduction, and the unique counts beside it."""
from __future__ import annotations

import json
import math

from torch import nn

from .model import CLIPSR
from .reference.importer import DEAD_PREFIXES, NETG_KEYS

PAPER_EXTRA_CLIP_COPIES = 3


def count(module: nn.Module | None, *, trainable: bool | None = None, exclude: nn.Module | None = None) -> int:
    """Unique parameters of `module` (shared tensors once), optionally only (non-)trainable ones and
    without those of `exclude`."""
    if module is None:
        return 0
    skip = {id(p) for p in exclude.parameters()} if exclude is not None else set()
    seen: dict[int, int] = {}
    for p in module.parameters():
        if id(p) not in skip and (trainable is None or p.requires_grad == trainable):
            seen[id(p)] = p.numel()
    return sum(seen.values())


def parameter_report(model: CLIPSR) -> dict:
    """All the counts the benchmark and the model card print, as plain numbers."""
    g, d, visual, text = model.generator, model.discriminator, model.clip_visual, model.text_encoder
    clip_total = count(text) + count(visual) + 1  # + CLIP's logit_scale, which CLIP-SR never uses
    generator_own = count(g, exclude=visual)
    discriminator_own = count(d, exclude=visual)
    generator_with_trunk = count(g)  # includes the frozen visual trunk when the CLIP-ViT branch is on
    return {
        "clip_text": count(text),
        "clip_visual": count(visual),
        "clip_total": clip_total,
        "generator": generator_own,
        "generator_with_clip_trunk": generator_with_trunk,
        "discriminator": discriminator_own,
        "per_module": {name: count(child, exclude=visual if child is not visual else None)
                       for name, child in _generator_parts(model).items()},
        "trainable": count(model, trainable=True),
        "frozen": count(model, trainable=False),
        "unique_total": count(model),
        "deploy": count(text) + generator_with_trunk,
        "paper_convention": generator_with_trunk + discriminator_own + PAPER_EXTRA_CLIP_COPIES * clip_total,
    }


def _generator_parts(model: CLIPSR) -> dict[str, nn.Module]:
    g = model.generator
    parts = {"encoder": g.encoder, "refine": g.refine, "skip_proj": g.skip_proj, "upsampler": g.upsampler,
             "discriminator_blocks": model.discriminator.blocks, "text_head": model.discriminator.head}
    if g.branch is not None:
        parts.update(mapper=g.branch.mapper, prompt_predictor=g.branch.prompts,
                     branch_convs=nn.ModuleList([g.branch.to_tokens, g.branch.from_tokens]))
    return parts


def reference_report(model: CLIPSR) -> dict:
    """The authors' released generator (architecture "reference"): what runs (`generator_live`), what
    their checkpoint's netG also holds but never reaches the output (`checkpoint_dead`: the mapping path
    with its copy of the CLIP visual tower, TBlocks, fc_code, G-blocks 5-6, to_rgb; counted from the
    key/shape list derived from their code), the CLIP text tower, what a deployment carries
    (`deploy`: live + text) and the sum of all three (`total`)."""
    keys = json.loads(NETG_KEYS.read_text(encoding="utf-8"))["keys"]
    dead = sum(math.prod(shape) for key, shape in keys.items() if key.startswith(DEAD_PREFIXES))
    live, text = count(model.generator), count(model.text_encoder)
    return {"generator_live": live, "checkpoint_dead": dead, "clip_text": text, "deploy": live + text,
            "total": live + dead + text}
