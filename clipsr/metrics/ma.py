"""Ma et al.'s no-reference SR score (NRQM) and the PIRM perceptual index PI = ((10 - Ma) + NIQE) / 2.

Ma's metric needs its trained model (`NRQM_model.mat`, three random forests); we have no offline copy,
so it runs only when a model file is given (argument or `$CLIPSR_MA_MODEL`) and pyiqa, which implements
the feature pipeline, is installed. Otherwise `MaUnavailableError` says so and PI is not reported.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clipsr.metrics.image import to_float255

MODEL_ENV = "CLIPSR_MA_MODEL"


class MaUnavailableError(RuntimeError):
    """Ma's score cannot be computed here (no model file, or pyiqa missing)."""


def perceptual_index(niqe_value: float, ma_value: float) -> float:
    """PIRM 2018 perceptual index; lower is better."""
    return 0.5 * ((10.0 - ma_value) + niqe_value)


def ma_score(image, model_path: str | Path | None = None, *, crop_border: int = 0) -> float:
    """Ma et al. (2017) score of an RGB image (inputs as `to_float255`); higher is better."""
    source = model_path or os.environ.get(MODEL_ENV)
    if not source:
        raise MaUnavailableError(f"Ma's NRQM score needs its model file (NRQM_model.mat): pass it or set "
                                 f"{MODEL_ENV}; without it PI is not reported")
    if not Path(source).is_file():
        raise FileNotFoundError(f"Ma model file not found: {source}")
    try:
        import torch
        from pyiqa.archs.nrqm_arch import NRQM
    except ImportError as error:
        raise MaUnavailableError(f"Ma's NRQM score needs the pyiqa package ({error})") from error
    rgb = to_float255(image)
    if rgb.ndim != 3:
        raise ValueError("Ma's score takes an RGB image")
    batch = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1) / 255.0)).float()[None]
    metric = NRQM(pretrained_model_path=str(source), crop_border=crop_border, color_space="ycbcr")
    with torch.no_grad():
        return float(metric(batch))
