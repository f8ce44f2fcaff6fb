"""Metric inputs as float images on the 0..255 scale, and the BT.601 luma that BasicSR/MATLAB use.

Accepted: uint8 numpy arrays (H, W, 3) or (H, W); float numpy arrays with an explicit `data_range`
(values in [0, data_range]); torch tensors (3, H, W) or (1, 3, H, W) in [-1, 1], which are first
quantised to uint8 exactly as a saved image would be. torch is never imported here.
"""
from __future__ import annotations

import numpy as np


def to_float255(image, data_range: float | None = None) -> np.ndarray:
    """The image as float64 (H, W, 3) or (H, W) on the 0..255 scale (see the module docstring)."""
    if hasattr(image, "detach"):  # a torch tensor in [-1, 1]
        array = image.detach().cpu().float().numpy()
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 3 or array.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) tensor in [-1, 1], got shape {tuple(array.shape)}")
        image = np.round(np.clip((array.transpose(1, 2, 0) + 1) * 127.5, 0, 255)).astype(np.uint8)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        if data_range not in (None, 255):
            raise ValueError(f"uint8 images have data_range 255, got {data_range}")
        return image.astype(np.float64)
    if data_range is None:
        raise ValueError(f"a {image.dtype} array needs data_range (uint8 and [-1, 1] tensors do not)")
    return image.astype(np.float64) * (255.0 / data_range)


def rgb_to_y(image255: np.ndarray) -> np.ndarray:
    """BT.601 luma of a 0..255 RGB image as MATLAB's rgb2ycbcr (range 16..235), unrounded."""
    if image255.ndim == 2:
        return image255
    return 16.0 + image255 @ np.array([65.481, 128.553, 24.966]) / 255.0
