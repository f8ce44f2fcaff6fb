"""What the page shows beside a result: the bicubic upscale it is judged against, and where two
captions made two results differ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from clipsr_runtime.images import RuntimeImage, to_pil

CHANGED = 2  # grey levels: a smaller difference is rounding, not the caption


def bicubic(image: RuntimeImage, size: tuple[int, int]) -> Image.Image:
    """The input as the runtime read it (orientation, colour space and bit depth handled once, there),
    resized to `size` with bicubic, in 8-bit RGB."""
    return to_pil(RuntimeImage(image.rgb)).resize(size, Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class Difference:
    """Where captions A and B gave different pixels."""

    image: np.ndarray  # (H, W, 3) uint8: result A in dim grey, changed pixels in red (brighter = larger)
    largest: int       # grey levels, the largest difference over pixels and channels
    changed: float     # fraction of pixels that differ by CHANGED grey levels or more


def difference(a: Image.Image, b: Image.Image) -> Difference:
    """Highlight |A - B| (largest over the channels) on a dimmed grey copy of A: red scaled to the largest
    difference, so a small change is as visible as a large one; the numbers say how large it is."""
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        raise ValueError(f"results of different sizes: {a.size} and {b.size}")
    diff = np.abs(x - y).max(axis=2)
    largest = int(diff.max())
    grey = np.asarray(a.convert("L"), dtype=np.float32) * 0.35
    heat = diff / largest if largest else np.zeros(diff.shape)
    heat = np.where(diff >= CHANGED, heat, 0)
    out = np.stack([grey + (255 - grey) * heat, grey * (1 - heat), grey * (1 - heat)], axis=2)
    return Difference(np.clip(out + 0.5, 0, 255).astype(np.uint8), largest, float((diff >= CHANGED).mean()))
