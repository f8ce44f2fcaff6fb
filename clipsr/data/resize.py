"""MATLAB-style antialiased bicubic resizing, the degradation every dataset uses to make LR images.

Pillow's BICUBIC filter uses the same kernel as MATLAB's `imresize` (Keys, a = -0.5) and widens it by
the scale factor when shrinking (antialiasing), so float images resized channel by channel in mode "F"
match MATLAB without rounding to 8 bits in between.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def imresize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) or (H, W) float array to `size` = (height, width), antialiased bicubic."""
    if image.ndim == 2:
        return _resize_plane(image, size)
    return np.stack([_resize_plane(image[..., c], size) for c in range(image.shape[-1])], axis=-1)


def bicubic_downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """Shrink an (H, W, C) float array by an integer factor; H and W must be divisible by it."""
    h, w = image.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image size {w}x{h} is not divisible by the scale {scale}")
    return imresize(image, (h // scale, w // scale))


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    out = out.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float32)
