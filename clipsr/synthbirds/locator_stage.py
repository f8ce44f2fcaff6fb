"""The locator stage: teach a generator's part locator where the described parts are, before the SR stage.

Rendering bounds this training (a bird takes ~10 ms, a locator step on 32 of them ~0.3 s), so the birds
are rendered once into a cache of LR images and part labels, and the locator trains on it for many epochs
with cross-entropy on what the palette uses: its logits upsampled to the SR size, against the part label of
every SR pixel. Probabilities calibrated this way are what the palette's blend needs (weighting the parts up
makes it paint blobs around them); the "no part" class alone may weigh more (`keep_weight`), which moves
the painted edge inward: an edit then repaints less of what lies beside the part. Every other bird of the
cache is drawn with wider proportions than SynthBirds' own (`varied_spec`), so the locator finds parts on
birds drawn otherwise: trained on SynthBirds' proportions alone, it found almost no crown on bigger birds
with crowns about one LR pixel thick, and a caption could not recolour them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clipsr_runtime.atomic import atomic_write
from clipsr.locator import PartLocator
from clipsr.synthbirds.dataset import lr_tensor, part_label_map
from clipsr.synthbirds.render import DESCRIBED_PARTS, BirdSpec, redraw_sizes, render, sample_spec
from clipsr.synthbirds.splits import split_seeds

# Sizes and proportions (256-px pixels, as BirdSpec's) drawn for the varied birds: SynthBirds' own ranges
# and beyond them on both sides; colours, pose, scene and texture stay as `sample_spec` draws them.
WIDER = {"length": (60.0, 170.0), "aspect": (0.45, 0.8), "head_scale": (0.5, 0.9), "head_lift": (0.0, 0.35),
         "crown_width": (6.0, 20.0), "bar_width": (5.0, 14.0), "belly_width": (6.0, 18.0),
         "beak_length": (10.0, 26.0), "beak_width": (6.0, 14.0)}
CACHE_KIND = "labels at 256 px; odd birds drawn by varied_spec"  # what a cache holds: another kind renders anew


def varied_spec(seed: int) -> BirdSpec:
    """Bird `seed` with its sizes and proportions redrawn from WIDER (its own seeded stream)."""
    return redraw_sizes(sample_spec(seed), WIDER, np.random.default_rng([seed, 1]))


def render_cache(split: str, count: int, scale: int = 16, progress: bool = True) -> dict[str, np.ndarray]:
    """LR images (N, 3, S, S) float32 in [-1, 1] and part labels (N, 256, 256) uint8 of `count` birds, the
    odd ones varied (`varied_spec`)."""
    lrs, labels = [], []
    seeds = split_seeds(split, count)
    for i, seed in enumerate(tqdm(seeds, desc=f"rendering {split} birds", unit="bird", disable=not progress)):
        hr, masks = render(varied_spec(int(seed)) if i % 2 else sample_spec(int(seed)))
        lrs.append(lr_tensor(hr, scale).numpy())
        labels.append(part_label_map(masks).astype(np.uint8))
    return {"lr": np.stack(lrs), "labels": np.stack(labels)}


def load_or_render_cache(path: Path, split: str, count: int, scale: int = 16) -> dict[str, np.ndarray]:
    """The cache at `path` if it holds `count` birds of this kind, else rendered and written there."""
    if path.is_file():
        with safetensors.safe_open(str(path), "np") as stored:
            kind = (stored.metadata() or {}).get("kind")
        cache = safetensors.numpy.load_file(str(path))
        if kind == CACHE_KIND and len(cache["lr"]) == count and cache["lr"].shape[-1] == 256 // scale:
            return cache
    cache = render_cache(split, count, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: safetensors.numpy.save_file(cache, str(tmp), metadata={"kind": CACHE_KIND}))
    return cache


def train_locator(locator: PartLocator, cache: dict[str, np.ndarray], steps: int, batch_size: int = 32,
                  lr: float = 2e-3, keep_weight: float = 1.0, seed: int = 0, progress: bool = True) -> float:
    """Adam on cross-entropy at the SR size over random batches of the cache, the "no part" class weighing
    `keep_weight`; returns the mean loss of the last 50 steps. The locator's parameters train here and are
    frozen again afterwards."""
    generator = torch.Generator().manual_seed(seed)
    images, labels = torch.from_numpy(cache["lr"]), torch.from_numpy(cache["labels"])  # uint8: 64 KB a bird
    locator.train().requires_grad_(True)
    optimiser = torch.optim.Adam(locator.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    weight = torch.tensor([keep_weight] + [1.0] * (locator.out.out_channels - 1))
    recent: list[float] = []
    for _ in tqdm(range(steps), desc="part locator", unit="step", disable=not progress):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        loss = F.cross_entropy(locator.choice(images[index]), labels[index].long(), weight=weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
    locator.eval().requires_grad_(False)
    return float(np.mean(recent))


@torch.no_grad()
def locator_iou(locator: PartLocator, cache: dict[str, np.ndarray]) -> dict[str, float]:
    """Intersection over union of each described part between the locator's most likely class and the labels,
    over the SR pixels."""
    chosen = torch.cat([locator.choice(torch.from_numpy(cache["lr"][i:i + 50])).argmax(1)
                        for i in range(0, len(cache["lr"]), 50)])
    truth = torch.from_numpy(cache["labels"]).long()
    result = {}
    for k, part in enumerate(DESCRIBED_PARTS, start=1):
        union = ((chosen == k) | (truth == k)).sum().item()
        result[part] = ((chosen == k) & (truth == k)).sum().item() / union if union else float("nan")
    return result

