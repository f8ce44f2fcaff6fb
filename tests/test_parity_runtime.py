"""The torch-free runtime on an exported folder computes what PyTorch computes: `Upscaler` (tokenizer,
ONNX text encoder, ONNX generator, clamping, 8-bit conversion) against
`model.generator(lr, model.encode_text(tokens))`, clamped and converted to 8 bits the same way."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipsr_export.parity import THRESHOLDS
from clipsr_runtime.upscaler import Upscaler
from test_export import export_base, tiny_export  # noqa: F401  (export_base is a fixture)

PROMPTS = ("a small bird with a red crown and a short black beak", "A BLUE bird, white belly!", "bird")


def _lr_images(size: int, count: int = 2) -> list[np.ndarray]:
    """8-bit LR images: smooth colour ramps plus noise, so every output pixel depends on the input."""
    rng = np.random.default_rng(size)
    y, x = np.mgrid[0:size, 0:size] * (255 / (size - 1))
    base = np.stack([x, y, np.full_like(x, 128)], axis=2)
    return [np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def _torch_sr(model, rgb8: np.ndarray, prompt: str) -> np.ndarray:
    """PyTorch's SR in [-1, 1], (H,W,3), from the same 8-bit input mapping as the runtime's."""
    lr = torch.from_numpy((rgb8.astype(np.float32) / 255.0 * 2 - 1).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        sr = model.generator(lr, model.encode_text(model.tokenize([prompt])))
    return sr.clamp(-1, 1)[0].numpy().transpose(1, 2, 0)


def _to8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip((x + 1) / 2, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("scale", [4, 8, 16])
def test_runtime_equals_pytorch_within_the_fp32_tolerance(scale, export_base):
    exp = tiny_export(scale, export_base)
    upscaler = Upscaler(exp.folder, backend="ort-cpu", precision="fp32")
    tolerance = THRESHOLDS["fp32"].sr_max_abs
    for rgb8, prompt in zip(_lr_images(256 // scale, len(PROMPTS)), PROMPTS):
        np.testing.assert_array_equal(upscaler.tokenizer(prompt), exp.model.tokenize([prompt])[0].numpy())
        expected = _torch_sr(exp.model, rgb8, prompt)
        ours = upscaler.upscale_rgb(rgb8.astype(np.float32) / 255.0 * 2 - 1, upscaler.encode_prompt(prompt))
        assert ours.shape == (256, 256, 3)
        assert np.abs(ours - expected).max() < tolerance
        image = np.asarray(upscaler.upscale(rgb8, prompt))
        differs = image.astype(int) - _to8(expected)
        assert np.abs(differs).max() <= 1 and np.count_nonzero(differs) <= differs.size // 1000
    assert upscaler.prompt_cache_info().misses == len(PROMPTS)


def test_runtime_fp16_is_close_to_pytorch(export_base):
    exp = tiny_export(16, export_base)
    upscaler = Upscaler(exp.folder, backend="ort-cpu", precision="fp16")
    for rgb8, prompt in zip(_lr_images(16), PROMPTS):
        expected = _to8(_torch_sr(exp.model, rgb8, prompt)).astype(np.float64)
        ours = np.asarray(upscaler.upscale(rgb8, prompt), dtype=np.float64)
        psnr = 10 * np.log10(255 ** 2 / max(np.mean((ours - expected) ** 2), 1e-12))
        assert psnr > THRESHOLDS["fp16"].sr_psnr_db
        assert np.abs(ours - expected).max() <= 4
    assert upscaler.backend.precision == "fp16"  # no NaN/Inf fallback to fp32 happened
