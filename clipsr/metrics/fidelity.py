"""PSNR and SSIM in two labelled conventions.

"basicsr" (what we report): Y channel of YCbCr (BT.601 as MATLAB rgb2ycbcr), `crop_border` = scale,
SSIM with an 11x11 gaussian window (sigma 1.5) as Wang et al.'s MATLAB code.
"rgb" (the CLIP-SR reference code's): all RGB channels, no crop, scikit-image's default SSIM
(7x7 uniform window, sample covariance).
Inputs: see `clipsr.metrics.image.to_float255`.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from clipsr.metrics.image import rgb_to_y, to_float255

CONVENTIONS = ("basicsr", "rgb")


def psnr(a, b, *, convention: str = "basicsr", crop_border: int = 0, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    x, y = _prepare(a, b, convention, crop_border, data_range)
    mse = np.mean((x - y) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a, b, *, convention: str = "basicsr", crop_border: int = 0, data_range: float | None = None) -> float:
    """Structural similarity (1.0 for identical images)."""
    x, y = _prepare(a, b, convention, crop_border, data_range)
    if convention == "basicsr":
        return float(structural_similarity(x, y, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False))
    return float(structural_similarity(x, y, data_range=255.0, channel_axis=2 if x.ndim == 3 else None))


def _prepare(a, b, convention: str, crop_border: int, data_range: float | None) -> tuple[np.ndarray, np.ndarray]:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    x, y = to_float255(a, data_range), to_float255(b, data_range)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if crop_border < 0 or 2 * crop_border >= min(x.shape[:2]):
        raise ValueError(f"crop_border {crop_border} does not fit an image of {x.shape[1]}x{x.shape[0]}")
    if crop_border:
        x, y = x[crop_border:-crop_border, crop_border:-crop_border], y[crop_border:-crop_border, crop_border:-crop_border]
    if convention == "basicsr":
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y
