"""Does the exported pair of graphs compute what PyTorch computes? The runtime's own ONNX Runtime
backend (`clipsr_runtime.backends.ort.OrtBackend`, CPU: same session options, same feeds) against the
PyTorch model on sample inputs, end to end as the runtime runs it: tokens -> ONNX text encoder ->
its embedding -> ONNX generator -> SR, against `model.generator(lr, model.encode_text(tokens))`.
What parity checks is what users run.

Figures: `text_max_abs` and `text_cosine` (the smallest over the batch) for the text embedding,
`sr_max_abs` for the raw SR output and `sr_psnr_db` between the two SR images clamped to the value
range [-1, 1] (peak-to-peak 2; capped at 200 dB, which identical images would exceed).

Thresholds. Measured on CPU (ORT 1.32, torch 2.14.1, random weights, the 3 samples below):
- fp32, tiny at 4x/8x/16x: text_max_abs 1.1e-6 to 1.9e-6, text_cosine >= 1 - 2e-13, sr_max_abs
  6e-6 to 1.6e-5, PSNR 126-129 dB; paper-b32 at 16x: text_max_abs 3.0e-6, sr_max_abs 2.1e-5, PSNR
  120 dB. The limits (text 1e-4, cosine 0.99999, SR 1e-3, PSNR 80 dB) leave 30-50x headroom for other
  CPUs and ORT builds (other kernels, other summation order) and still catch a real export bug (a
  wrong op, pooling at the wrong token, a dropped branch), which moves outputs by 1e-2 or more.
- fp16 (mixed precision: LayerNorm, Softmax, reductions in fp32), tiny 16x: text_max_abs 2.0e-3 to
  3.2e-3, cosine >= 0.9999993, sr_max_abs 5e-3 to 1.3e-2, PSNR 69-72 dB; paper-b32 16x: 3.0e-3,
  0.9999996, 7.3e-3, 70.6 dB. fp16 keeps ~3 decimal digits and trained weights may be less kind, so
  the limits are loose (cosine 0.999, SR 0.25, PSNR 35 dB, where 8-bit images start to differ
  visibly); their job is to catch overflow (NaN/Inf, saturation), which fails them by far.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from clipsr.config import HR_SIZE
from clipsr.data.resize import bicubic_downsample, imresize
from clipsr.model import CLIPSR
from clipsr_runtime.backends.ort import OrtBackend

SAMPLE_CAPTIONS = (
    "a small bird with a red crown and a short black beak",
    "this bird has wings that are blue and a white belly",
    "a yellow bird",
)
PSNR_CAP_DB = 200.0


class ParityError(ValueError):
    """The exported graphs do not compute what PyTorch computes (within the thresholds)."""


@dataclass(frozen=True)
class Samples:
    """Sample inputs: tokens (B,77) int32 with EOT at different positions, LR images (B,3,h,w)."""

    tokens: np.ndarray
    lr: np.ndarray


@dataclass(frozen=True)
class Outputs:
    text_embedding: np.ndarray
    sr: np.ndarray


@dataclass(frozen=True)
class Thresholds:
    text_max_abs: float
    text_cosine: float
    sr_max_abs: float
    sr_psnr_db: float


THRESHOLDS = {
    "fp32": Thresholds(text_max_abs=1e-4, text_cosine=0.99999, sr_max_abs=1e-3, sr_psnr_db=80.0),
    "fp16": Thresholds(text_max_abs=5e-2, text_cosine=0.999, sr_max_abs=0.25, sr_psnr_db=35.0),
    # INT8 is held to its own, stricter gate on the model's domain (quantize.py); this only catches breakage.
    "int8": Thresholds(text_max_abs=0.5, text_cosine=0.99, sr_max_abs=0.5, sr_psnr_db=35.0),
}


def _photos() -> list[np.ndarray]:
    """Natural images bundled with scikit-image (no download), as float RGB in [0, 1]."""
    from skimage import data

    return [im.astype(np.float32) / 255 for im in (data.astronaut(), data.chelsea(), data.coffee())]


def sample_inputs(model: CLIPSR, batch: int = len(SAMPLE_CAPTIONS)) -> Samples:
    """LR images made the way datasets make them (square crop at 256 px, MATLAB bicubic down by the
    model's scale), in [-1, 1]; captions of different lengths, so EOT pooling is checked per row."""
    photos = _photos()
    lrs = []
    for i in range(batch):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = min(h, w)
        square = img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
        lrs.append(bicubic_downsample(imresize(square, (HR_SIZE, HR_SIZE)), model.config.generator.scale))
    lr = np.clip(np.stack(lrs).transpose(0, 3, 1, 2), 0, 1) * 2 - 1
    captions = [SAMPLE_CAPTIONS[i % len(SAMPLE_CAPTIONS)] for i in range(batch)]
    tokens = model.tokenize(captions).numpy().astype(np.int32)
    return Samples(tokens=tokens, lr=lr.astype(np.float32))


def torch_outputs(model: CLIPSR, samples: Samples) -> Outputs:
    """What PyTorch computes (the reference)."""
    with torch.no_grad():
        text = model.encode_text(torch.from_numpy(samples.tokens))
        sr = model.generator(torch.from_numpy(samples.lr), text)
    return Outputs(text.numpy(), sr.numpy())


def onnx_outputs(text_encoder: str | Path, generator: str | Path, samples: Samples, precision: str) -> Outputs:
    """What the runtime's CPU backend computes from these graphs."""
    with OrtBackend(Path(text_encoder), Path(generator), "ort-cpu", precision) as backend:
        text = backend.run_text(samples.tokens)
        return Outputs(text, backend.run_generator(samples.lr, text))


def compare(reference: Outputs, actual: Outputs) -> dict[str, float]:
    """The parity figures of `actual` against `reference` (NaN/Inf in `actual` give NaN figures)."""
    ref_t, act_t = reference.text_embedding.astype(np.float64), actual.text_embedding.astype(np.float64)
    cosine = (ref_t * act_t).sum(1) / (np.linalg.norm(ref_t, axis=1) * np.linalg.norm(act_t, axis=1))
    ref_sr = np.clip(reference.sr.astype(np.float64), -1, 1)
    act_sr = np.clip(actual.sr.astype(np.float64), -1, 1)
    mse = float(np.mean((ref_sr - act_sr) ** 2))
    psnr = PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(4.0 / mse))
    figures = {"text_max_abs": float(np.abs(ref_t - act_t).max()), "text_cosine": float(cosine.min()),
               "sr_max_abs": float(np.abs(reference.sr.astype(np.float64) - actual.sr).max()),
               "sr_psnr_db": psnr}
    finite = np.isfinite(actual.text_embedding).all() and np.isfinite(actual.sr).all()
    return figures if finite else {k: math.nan for k in figures}


def check(figures: dict[str, float], precision: str, what: str) -> None:
    """Raise ParityError when a figure is worse than the precision's threshold (NaN always is)."""
    limits = asdict(THRESHOLDS[precision])
    bad = [f"{k} {figures[k]:.3g} (limit {v:g})" for k, v in limits.items()
           if not (figures[k] >= v if k in ("text_cosine", "sr_psnr_db") else figures[k] <= v)]
    if bad:
        raise ParityError(f"{what}: {precision} ONNX output differs from PyTorch: {', '.join(bad)}")
