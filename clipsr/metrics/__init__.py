"""Image quality metrics: PSNR/SSIM (two labelled conventions), NIQE, Ma and PI, and the eval report.
numpy/scipy/scikit-image only; torch tensors are accepted but torch is never imported here."""
from __future__ import annotations

from clipsr.metrics.fidelity import psnr, ssim
from clipsr.metrics.ma import MaUnavailableError, ma_score, perceptual_index
from clipsr.metrics.niqe import load_niqe_params, niqe

__all__ = ["MaUnavailableError", "load_niqe_params", "ma_score", "niqe", "perceptual_index", "psnr", "ssim"]
