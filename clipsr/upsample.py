"""Bicubic or bilinear upsampling of a fixed-size image as two constant matrix products (rows, then columns).

The generator's global skip upsamples an LR image whose size never changes. `F.interpolate(...,
mode="bicubic")` exports to an ONNX `Resize`, which ONNX Runtime's CPU kernel runs slowly (about half
of the tiny generator's time); the same weights written as two small matrices export to two `MatMul`s,
fast on every backend. The matrices hold exactly torch's bicubic weights (Keys' cubic, a = -0.75,
half-pixel centres, edge samples repeated), so the result equals `F.interpolate` within float rounding.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

CUBIC_A = -0.75  # torch's (and OpenCV's) bicubic coefficient


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel at distances `x` (zero beyond 2)."""
    x = np.abs(x)
    a = CUBIC_A
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(size: int, scale: int) -> np.ndarray:
    """(size * scale, size) float64 matrix M with M @ v = torch's bicubic upsampling of the vector v
    (align_corners=False): output i samples at (i + 0.5) / scale - 0.5, out-of-range taps clamp to the edge."""
    if size < 1 or scale < 1:
        raise ValueError(f"size and scale must be >= 1, got {size}, {scale}")
    out = np.arange(size * scale)
    src = (out + 0.5) / scale - 0.5
    base = np.floor(src).astype(int)
    frac = src - base
    matrix = np.zeros((size * scale, size))
    for tap in (-1, 0, 1, 2):
        np.add.at(matrix, (out, np.clip(base + tap, 0, size - 1)), _cubic(frac - tap))
    return matrix


def bilinear_matrix(size: int, scale: int) -> np.ndarray:
    """(size * scale, size) float64 matrix M with M @ v = torch's bilinear upsampling of the vector v
    (align_corners=False): output i samples at max((i + 0.5) / scale - 0.5, 0), the last tap clamps to the edge."""
    if size < 1 or scale < 1:
        raise ValueError(f"size and scale must be >= 1, got {size}, {scale}")
    out = np.arange(size * scale)
    src = np.maximum((out + 0.5) / scale - 0.5, 0.0)
    base = np.floor(src).astype(int)
    frac = src - base
    matrix = np.zeros((size * scale, size))
    np.add.at(matrix, (out, base), 1.0 - frac)
    np.add.at(matrix, (out, np.minimum(base + 1, size - 1)), frac)
    return matrix


MATRICES = {"bicubic": bicubic_matrix, "bilinear": bilinear_matrix}


class MatrixUpsample(nn.Module):
    """(B, C, size, size) -> (B, C, size * scale, size * scale), equal to `F.interpolate(x, scale_factor=scale,
    mode=mode, align_corners=False)` for mode "bicubic" or "bilinear". The matrix is a non-persistent buffer:
    it follows `.to()` but stays out of the state dict, so checkpoints are the same with or without this module."""

    def __init__(self, size: int, scale: int, mode: str = "bicubic"):
        super().__init__()
        if mode not in MATRICES:
            raise ValueError(f"mode must be one of {sorted(MATRICES)}, got {mode!r}")
        self.size = size
        self.register_buffer("matrix", torch.from_numpy(MATRICES[mode](size, scale)).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix @ x @ self.matrix.T
