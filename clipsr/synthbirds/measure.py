"""Part-colour metrics: how much of each part's colour the LR keeps, and whether an image shows asked colours.

A part's colour is the per-channel median inside its mask eroded by one pixel (antialiased edges and a
few stray pixels do not move it), classified as the nearest vocabulary anchor. The same rule scores a
model's output ("text matters", editability) and measures what survives bicubic downsampling.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from scipy.ndimage import binary_erosion

from clipsr.data.resize import bicubic_downsample, imresize
from clipsr.synthbirds.colours import colour_index, nearest_colour
from clipsr.synthbirds.render import COLOURED_PARTS, render, sample_spec
from clipsr.synthbirds.splits import split_seeds

SURVIVAL_PARTS: tuple[str, ...] = COLOURED_PARTS + ("head", "background")
_MIN_ERODED = 4  # fewer pixels left by erosion: use the whole mask (tiny eyes, thinnest stripes)


def part_colours(image: np.ndarray, masks: Mapping[str, np.ndarray], parts: Iterable[str]) -> dict[str, int]:
    """Vocabulary index of each part's median colour. `image`: (H, W, 3) uint8, or float in [0, 1]."""
    rgb = _as_rgb255(image)
    result = {}
    for part in parts:
        if part not in masks:
            raise ValueError(f"no mask for part {part!r}; masks cover {', '.join(masks)}")
        mask = np.asarray(masks[part], dtype=bool)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask of {part!r} is {mask.shape}, the image is {rgb.shape[:2]}")
        if not mask.any():
            raise ValueError(f"mask of {part!r} is empty")
        result[part] = int(nearest_colour(median_colour(rgb, mask)))
    return result


def median_colour(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel median of an (H, W, 3) image inside `mask` eroded by one pixel (the whole mask if too thin)."""
    eroded = binary_erosion(mask)
    return np.median(rgb[eroded if eroded.sum() >= _MIN_ERODED else mask], axis=0)


def part_colour_accuracy(
    image: np.ndarray, masks: Mapping[str, np.ndarray], colours: Mapping[str, str | int]
) -> dict[str, bool]:
    """For each part in `colours` (name or vocabulary index), is its colour in `image` nearest that colour?"""
    found = part_colours(image, masks, colours)
    return {part: found[part] == colour_index(colour) for part, colour in colours.items()}


def part_colour_survival(n: int = 200, scale: int = 16, seed_offset: int = 0) -> dict[str, dict[str, float]]:
    """Per part, the accuracy of its colour read from the HR ("hr") and from the bicubic-upsampled LR ("lr").

    Birds come from the val seeds. Truth is the spec colour; for the background (no spec colour) it is the
    colour read from the HR, so its "hr" is 1 by definition.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    hits = {part: np.zeros(2) for part in SURVIVAL_PARTS}
    for seed in split_seeds("val", n, seed_offset):
        spec = sample_spec(seed)
        hr, masks = render(spec)
        lr = bicubic_downsample(hr.astype(np.float32) / 255.0, scale)
        back_up = np.clip(imresize(lr, hr.shape[:2]), 0.0, 1.0)
        from_hr = part_colours(hr, masks, SURVIVAL_PARTS)
        from_lr = part_colours(back_up, masks, SURVIVAL_PARTS)
        truth = {part: colour_index(colour) for part, colour in spec.colours.items()}
        truth["head"] = truth["body"]
        truth["background"] = from_hr["background"]
        for part in SURVIVAL_PARTS:
            hits[part] += (from_hr[part] == truth[part], from_lr[part] == truth[part])
    return {part: {"hr": float(h / n), "lr": float(l / n)} for part, (h, l) in hits.items()}


def _as_rgb255(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
    if image.min() < -0.1 or image.max() > 1.1:
        raise ValueError(f"float image values span [{image.min():.2f}, {image.max():.2f}]; expected [0, 1] "
                         "(map a [-1, 1] model output with (x + 1) / 2)")
    return np.clip(image, 0.0, 1.0).astype(np.float32) * 255.0
