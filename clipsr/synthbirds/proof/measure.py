"""Measure: run the models on the held-out birds and keep one record per bird, plus the images of the first
few birds for the figure. The report turns records into numbers, so what is measured and how it is summed up
can be read, tested and changed apart."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipsr.inference import batches, super_resolve, to_uint8
from clipsr.metrics.fidelity import psnr, ssim
from clipsr.metrics.report import bicubic_upsample
from clipsr.model import CLIPSR
from clipsr.synthbirds.captions import bird_captions, caption_colours, recolour
from clipsr.synthbirds.colours import NAMES, colour_index
from clipsr.synthbirds.dataset import SynthBirdsDataset
from clipsr.synthbirds.measure import part_colours
from clipsr.synthbirds.render import DESCRIBED_PARTS, BirdSpec, render, sample_spec

PLAIN_CAPTION = "a bird"
# Wordings users type; "{crown}" and "{wing}" become the bird's colours. Which parts each one names is parsed.
WORDINGS = ("a bird with {crown} crown", "{crown}-crowned bird with {wing} wings", "crown: {crown}")
ASKED = {w: [p for p in DESCRIBED_PARTS if p in caption_colours(w.format(crown="red", wing="red"))] for w in WORDINGS}


@dataclass
class Example:
    """One bird of the figure: LR (pixels repeated to the HR size), bicubic, SR under caption A, SR under
    caption B (one part recoloured), HR; and the two captions."""

    tiles: list[np.ndarray]
    caption: str


@dataclass
class Measurement:
    """Per bird, in test-seed order: {"seed", "named" (the parts its random caption names), "methods" ({method:
    {"psnr", "ssim", "colour": {part: hit}}}), "wordings" ({wording: {part: hit}}), "edit" ({"part",
    "followed", "rest_vs_unedited", "rest_vs_hr"})}; and the first birds as figure examples."""

    records: list[dict]
    examples: list[Example]
    scale: int


@dataclass
class _Batch:
    lr: torch.Tensor
    hr: np.ndarray
    specs: list[BirdSpec]
    captions: dict[str, list[str]]           # per captioned method
    edits: list[tuple[BirdSpec, str, str]]   # per bird: the edited bird, the edited part, caption B
    outputs: dict[str, list[np.ndarray]]     # per method (bicubic too), uint8 images
    edited: np.ndarray                       # the full model under caption B
    worded: dict[str, np.ndarray]            # the full model under each of WORDINGS


def measure(full: CLIPSR, *, no_text: CLIPSR | None = None, n: int = 200, batch_size: int = 25, seed: int = 0,
            examples: int = 6) -> Measurement:
    """Run bicubic, the full model under each caption kind, and the no-text model (optional) on the first `n`
    test birds; captions are drawn from a numpy RNG seeded with `seed`."""
    data = SynthBirdsDataset(split="test", scale=full.scale, train=False, count=n)
    rng = np.random.default_rng(seed)
    result = Measurement([], [], full.scale)
    for items in batches(data, n, batch_size):
        batch = _run(full, no_text, items, rng)
        for i in range(len(items)):
            result.records.append(_record(batch, i, full.scale))
            if len(result.examples) < examples:
                result.examples.append(_example(batch, i, full.scale))
    return result


def edit_named_part(spec: BirdSpec, choice: int, rng: np.random.Generator) -> tuple[BirdSpec, str, str]:
    """The bird with one part its caption `choice` names recoloured (at random), that part, and the same
    caption of the edited bird; a caption that names nothing is replaced by the canonical one."""
    caption = bird_captions(spec)[choice]
    if not caption_colours(caption):
        choice, caption = 0, bird_captions(spec)[0]
    named = [p for p in DESCRIBED_PARTS if p in caption_colours(caption)]
    part = named[int(rng.integers(len(named)))]
    new_spec = recolour(spec, part, int(rng.integers(1, len(NAMES))))
    return new_spec, part, bird_captions(new_spec)[choice]


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (8-bit RGB) of two images over the pixels of `mask`; inf when they are equal there."""
    mse = np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _run(full: CLIPSR, no_text: CLIPSR | None, items: list[dict], rng: np.random.Generator) -> _Batch:
    lr = torch.stack([item["lr"] for item in items])
    specs = [sample_spec(item["seed"]) for item in items]
    texts = [bird_captions(spec) for spec in specs]
    choices = [int(rng.integers(len(t))) for t in texts]
    captions = {"random": [t[c] for t, c in zip(texts, choices)], "canonical": [t[0] for t in texts]}
    captions["shuffled"] = captions["random"][1:] + captions["random"][:1]
    captions["plain"] = [PLAIN_CAPTION] * len(items)
    edits = [edit_named_part(spec, choice, rng) for spec, choice in zip(specs, choices)]
    hr = to_uint8(torch.stack([item["hr"] for item in items]))
    outputs = {"bicubic": [bicubic_upsample(img, hr.shape[1:3]) for img in to_uint8(lr)]}
    outputs.update({m: list(to_uint8(super_resolve(full, lr, captions[m]))) for m in captions})
    if no_text is not None:
        outputs["no_text"] = list(to_uint8(super_resolve(no_text, lr, captions["random"])))
    edited = to_uint8(super_resolve(full, lr, [caption for _, _, caption in edits]))
    worded = {w: to_uint8(super_resolve(full, lr, [w.format(crown=s.crown, wing=s.wing) for s in specs]))
              for w in WORDINGS}
    return _Batch(lr, hr, specs, captions, edits, outputs, edited, worded)


def _record(batch: _Batch, i: int, scale: int) -> dict:
    spec, hr = batch.specs[i], batch.hr[i]
    masks = render(spec)[1]
    truth = {part: colour_index(getattr(spec, part)) for part in DESCRIBED_PARTS}
    named = [p for p in DESCRIBED_PARTS if p in caption_colours(batch.captions["random"][i])]  # [] for "a bird"

    def hits(image: np.ndarray, parts: list[str]) -> dict[str, bool]:
        found = part_colours(image, masks, parts)
        return {part: found[part] == truth[part] for part in parts}

    methods = {method: {"psnr": psnr(images[i], hr, crop_border=scale), "ssim": ssim(images[i], hr, crop_border=scale),
                        "colour": hits(images[i], list(DESCRIBED_PARTS) if method == "canonical" else named)}
               for method, images in batch.outputs.items()}
    new_spec, part, _ = batch.edits[i]
    rest, edited = ~masks[part], batch.edited[i]
    unedited = batch.outputs["random" if named else "canonical"][i]
    return {"seed": spec.seed, "named": named, "methods": methods,
            "wordings": {wording: hits(images[i], ASKED[wording]) for wording, images in batch.worded.items()},
            "edit": {"part": part,
                     "followed": part_colours(edited, masks, [part])[part] == colour_index(getattr(new_spec, part)),
                     "rest_vs_unedited": masked_psnr(edited, unedited, rest),
                     "rest_vs_hr": masked_psnr(edited, hr, rest)}}


def _example(batch: _Batch, i: int, scale: int) -> Example:
    caption_a = "random" if caption_colours(batch.captions["random"][i]) else "canonical"
    lr_big = np.repeat(np.repeat(to_uint8(batch.lr[i:i + 1])[0], scale, 0), scale, 1)
    tiles = [lr_big, batch.outputs["bicubic"][i], batch.outputs[caption_a][i], batch.edited[i], batch.hr[i]]
    return Example(tiles, f"A: {batch.captions[caption_a][i]}  |  B: {batch.edits[i][2]}")
