"""NIQE (Mittal, Soundararajan, Bovik 2013) with the authors' published pristine model.

Pipeline as the authors' MATLAB code (and BasicSR): luma (BT.601, rounded), 96x96 blocks, MSCN
coefficients with the 7x7 gaussian window, 18 AGGD features per block at full and half resolution
(MATLAB-style bicubic halving), then the distance between the image's fitted MVG and the pristine one.
The pristine parameters come from `params` (a path), else `$CLIPSR_NIQE_PARAMS`, else the published
file shipped beside this module (BasicSR's, Apache-2.0: see NOTICE), so NIQE works offline.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import gamma

from clipsr.data.resize import imresize
from clipsr.metrics.image import rgb_to_y, to_float255

PARAMS_ENV = "CLIPSR_NIQE_PARAMS"
SHIPPED_PARAMS = Path(__file__).with_name("niqe_pris_params.npz")
BLOCK = 96

# AGGD shape grid of the reference code; r(alpha) increases monotonically along it.
_ALPHAS = np.arange(0.2, 10.001, 0.001)
_R_ALPHA = gamma(2 / _ALPHAS) ** 2 / (gamma(1 / _ALPHAS) * gamma(3 / _ALPHAS))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass(frozen=True)
class NiqeParams:
    """Pristine multivariate gaussian (mu (36,), cov (36, 36)) and the 7x7 MSCN window."""

    mu: np.ndarray
    cov: np.ndarray
    window: np.ndarray


def niqe(image, params: NiqeParams | str | Path | None = None, *, crop_border: int = 0) -> float:
    """NIQE of an RGB or grey image (inputs as `clipsr.metrics.image.to_float255`); lower is better."""
    if not isinstance(params, NiqeParams):
        params = load_niqe_params(params)
    gray = np.round(rgb_to_y(to_float255(image)))
    if crop_border:
        gray = gray[crop_border:-crop_border, crop_border:-crop_border]
    rows, cols = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs at least {BLOCK}x{BLOCK} pixels, got {gray.shape[1]}x{gray.shape[0]}")
    gray = gray[: rows * BLOCK, : cols * BLOCK]
    features = []
    for level in (0, 1):
        size = BLOCK >> level
        mscn = _mscn(gray, params.window)
        blocks = mscn.reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(-1, size, size)
        features.append(_block_features(blocks))
        if level == 0:
            gray = imresize(gray / 255.0, (gray.shape[0] // 2, gray.shape[1] // 2)).astype(np.float64) * 255.0
    features = np.concatenate(features, axis=1)
    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    diff = params.mu - mu
    return float(np.sqrt(diff @ np.linalg.pinv((params.cov + cov) / 2) @ diff))


def _mscn(gray: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (edges replicated as MATLAB's imfilter)."""
    mu = ndimage.correlate(gray, window, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.correlate(gray * gray, window, mode="nearest") - mu * mu))
    return (gray - mu) / (sigma + 1)


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """(n, 18) features: AGGD shape and variance of the MSCN, then shape, mean, left and right scale
    of its products with the four neighbours (circular shifts within the block, as the reference)."""
    n = len(blocks)
    alpha, left, right = _aggd(blocks.reshape(n, -1))
    columns = [alpha, (left + right) / 2]
    for shift in _SHIFTS:
        pairs = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(n, -1)
        alpha, left, right = _aggd(pairs)
        mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha)
        columns += [alpha, mean, left, right]
    return np.stack(columns, axis=1)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching fit of an asymmetric generalised gaussian per row: (alpha, beta_l, beta_r)."""
    squares = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt(np.sum(squares * (x < 0), axis=1) / np.sum(x < 0, axis=1))
        right_std = np.sqrt(np.sum(squares * (x > 0), axis=1) / np.sum(x > 0, axis=1))
        g = left_std / right_std
        r_hat = np.mean(np.abs(x), axis=1) ** 2 / np.mean(squares, axis=1)
        r_norm = r_hat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    # nearest grid point of the monotone r(alpha) curve
    upper = np.clip(np.searchsorted(_R_ALPHA, r_norm), 1, len(_ALPHAS) - 1)
    nearer_lower = np.abs(r_norm - _R_ALPHA[upper - 1]) <= np.abs(_R_ALPHA[upper] - r_norm)
    alpha = np.where(np.isnan(r_norm), np.nan, _ALPHAS[upper - nearer_lower])
    scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * scale, right_std * scale


def load_niqe_params(path: str | Path | None = None) -> NiqeParams:
    """Pristine parameters from `path`, else `$CLIPSR_NIQE_PARAMS`, else the shipped file."""
    source = Path(path or os.environ.get(PARAMS_ENV) or SHIPPED_PARAMS)
    if not source.is_file():
        raise FileNotFoundError(f"NIQE parameter file not found: {source}")
    return _read_params(source)


@lru_cache(maxsize=4)
def _read_params(path: Path) -> NiqeParams:
    try:
        with np.load(path, allow_pickle=False) as data:
            params = NiqeParams(np.asarray(data["mu_pris_param"], np.float64).reshape(-1),
                                np.asarray(data["cov_pris_param"], np.float64),
                                np.asarray(data["gaussian_window"], np.float64))
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path} is not a NIQE parameter file (mu_pris_param, cov_pris_param, "
                         f"gaussian_window): {error}") from error
    if params.mu.shape != (36,) or params.cov.shape != (36, 36) or params.window.ndim != 2:
        raise ValueError(f"{path}: unexpected NIQE parameter shapes {params.mu.shape}, {params.cov.shape}, "
                         f"{params.window.shape}")
    return params
