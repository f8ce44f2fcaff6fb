"""How an input that is not the model's LR size reaches the model: resize, or overlapping tiles
whose SR outputs are blended with linear (feathered) weights so no seams show."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

FITS = ("auto", "tile", "resize")


def resize_float(arr: np.ndarray, size: tuple[int, int],
                 resample: Image.Resampling = Image.Resampling.BICUBIC) -> np.ndarray:
    """Resize (antialiased when shrinking) of a float (H,W) or (H,W,C) array to (h, w); bicubic by default."""
    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    planes = arr[..., None] if arr.ndim == 2 else arr
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32), "F")
                               .resize((w, h), resample))
                    for c in range(planes.shape[2])], axis=2)
    return out[..., 0] if arr.ndim == 2 else out


def fit_mode(height: int, width: int, lr_size: int, fit: str) -> str:
    """'direct' (exactly the LR size), 'resize' (to the LR size and back) or 'tile'."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if (height, width) == (lr_size, lr_size):
        return "direct"
    if fit == "resize" or (fit == "auto" and height <= lr_size and width <= lr_size):
        return "resize"
    return "tile"


def _check_side(length: int, tile: int, overlap: int) -> None:
    if length < tile:
        raise ValueError(f"cannot tile a side of {length} px with {tile} px tiles")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap (tile_pad) must be in [0, {tile - 1}], got {overlap}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` overlapping by at least `overlap`."""
    _check_side(length, tile, overlap)
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def max_tile_pad(tile: int) -> int:
    """The largest useful overlap: beyond half a tile each pixel is computed more than four times
    (a 16 px tile with pad 15 makes 2,401 tiles of a 64x64 image instead of 25)."""
    return tile // 2


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles cover an image of at least one tile per side (as `tile_starts` places them),
    counted without listing them: any size is answered at once."""
    def per_side(length: int) -> int:
        _check_side(length, tile, overlap)
        steps, rest = divmod(length - tile, tile - overlap)
        return steps + 1 + (rest > 0)

    return per_side(height) * per_side(width)



def _ramp(size: int, ramp: int, rise: bool, fall: bool) -> np.ndarray:
    """1-D weights: linear rise over `ramp` px at the start and/or fall at the end, else 1."""
    w = np.ones(size, dtype=np.float32)
    if ramp > 0:
        edge = (np.arange(ramp) + 0.5) / ramp
        if rise:
            w[:ramp] = np.minimum(w[:ramp], edge)
        if fall:
            w[-ramp:] = np.minimum(w[-ramp:], edge[::-1])
    return w


def upscale_tiled(image: np.ndarray, run: Callable[[np.ndarray], np.ndarray], tile: int,
                  overlap: int, scale: int, batch: int,
                  progress: Callable[[int], object] | None = None) -> np.ndarray:
    """SR of an (H,W,3) image by tiles; `run` maps (N,3,tile,tile) to (N,3,tile*s,tile*s).
    `progress(n)` is told after each batch how many tiles it finished."""
    height, width = image.shape[:2]
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    boxes = [(y, x) for y in ys for x in xs]
    out = np.zeros((height * scale, width * scale, 3), dtype=np.float32)
    weight = np.zeros((height * scale, width * scale, 1), dtype=np.float32)
    ramp, size = overlap * scale, tile * scale
    for first in range(0, len(boxes), batch):
        chunk = boxes[first:first + batch]
        lr = np.stack([image[y:y + tile, x:x + tile].transpose(2, 0, 1) for y, x in chunk])
        sr = run(np.ascontiguousarray(lr, dtype=np.float32))
        for (y, x), tile_sr in zip(chunk, sr):
            wy = _ramp(size, ramp, y > 0, y < ys[-1])
            wx = _ramp(size, ramp, x > 0, x < xs[-1])
            w = np.outer(wy, wx)[..., None]
            oy, ox = y * scale, x * scale
            out[oy:oy + size, ox:ox + size] += tile_sr.transpose(1, 2, 0) * w
            weight[oy:oy + size, ox:ox + size] += w
        if progress is not None:
            progress(len(chunk))
    return out / weight
