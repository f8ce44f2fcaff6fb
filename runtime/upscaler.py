"""The Python API: `Upscaler(model_dir).upscale(image, prompt) -> PIL.Image`."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from clipsr_runtime.backends import Backend, create_backend
from clipsr_runtime.images import (DEFAULT_MAX_PIXELS, RuntimeImage, from_array, from_pil, read_image,
                                   to_pil, write_image)
from clipsr_runtime.manifest import PRECISIONS, default_model_dir, load_manifest, verify_files
from clipsr_runtime.notices import ClipsrWarning
from clipsr_runtime.tiling import fit_mode, resize_float, upscale_tiled
from clipsr_runtime.tokenizer import Tokenizer

DEFAULT_MAX_OUTPUT_PIXELS = 1 << 26  # 8192 x 8192


def _degenerate(x: np.ndarray) -> bool:
    """FP16 failure signs: NaN/Inf, or an output that is one constant."""
    return not np.isfinite(x).all() or float(np.ptp(x)) == 0.0


class Upscaler:
    """Text-guided super-resolution with an exported model folder, torch-free.

    `backend`: auto | ort | trt | ort-cpu | ort-cuda | ort-trt (`self.backend.name` says which ran).
    `fit`: auto (LR size direct, smaller resized, larger tiled) | tile | resize.
    `tile` / `tile_pad`: tile side in LR pixels (default: the model's LR size) and tile overlap.
    """

    def __init__(self, model_dir: str | Path | None = None, backend: str = "auto", precision: str = "fp32",
                 fit: str = "auto", tile: int | None = None, tile_pad: int | None = None, batch: int = 4,
                 threads: int | None = None, cache_size: int = 128, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS, verify: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.manifest = m = load_manifest(model_dir if model_dir is not None else default_model_dir())
        self._verify = verify
        self._check_files(precision)
        tok = m.tokenizer
        self.tokenizer = Tokenizer(m.path(tok["vocab"]), int(tok.get("context_length", 77)),
                                   tok.get("sot_token"), tok.get("eot_token"))
        self.fit, self.max_pixels, self.max_output_pixels = fit, max_pixels, max_output_pixels
        self.tile = self._check_tile(tile or m.lr_size)
        self.tile_pad = m.lr_size // 4 if tile_pad is None else tile_pad
        fixed_batch = m.generator.inputs["lr"]["shape"][0]
        self.batch = min(batch, fixed_batch) if isinstance(fixed_batch, int) else batch
        self._backend_args = dict(backend=backend, threads=threads, max_batch=self.batch, tile=self.tile)
        self.backend: Backend = create_backend(m, precision=precision, **self._backend_args)
        self._tokens = lru_cache(maxsize=cache_size)(self.tokenizer)  # warns once per long prompt
        self._embed = lru_cache(maxsize=cache_size)(self._embed_tokens)

    def _check_files(self, precision: str) -> None:
        """The precision must be exported; the files it uses must match their sha256."""
        m = self.manifest
        for stage in ("text_encoder", "generator"):
            m.stage_file(stage, precision)
        if self._verify:
            verify_files(m, [m.tokenizer["vocab"], m.text_encoder.files[precision], m.generator.files[precision]])

    def _check_tile(self, tile: int) -> int:
        """A generator with a fixed LR shape takes exactly that tile; a dynamic one any tile."""
        h, w = self.manifest.generator.inputs["lr"]["shape"][2:]
        if isinstance(h, int) and isinstance(w, int) and (tile, tile) != (h, w):
            raise ValueError(f"this model's generator takes {h}x{w} LR tiles, not {tile}")
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        return tile

    # --- inference with the FP16 safety net ------------------------------------------------------

    def _run(self, method: str, *args: np.ndarray) -> np.ndarray:
        out = getattr(self.backend, method)(*args)
        if self.backend.precision == "fp16" and _degenerate(out):
            warnings.warn(f"fp16 {method} output is NaN/Inf or constant: retrying in fp32",
                          ClipsrWarning, stacklevel=3)
            self._check_files("fp32")
            self.backend = create_backend(self.manifest, precision="fp32", **self._backend_args)
            self._embed.cache_clear()
            out = getattr(self.backend, method)(*args)
        return out

    def _embed_tokens(self, key: bytes) -> np.ndarray:
        emb = self._run("run_text", np.frombuffer(key, dtype=np.int32)[None])[0]
        emb.setflags(write=False)
        return emb

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """(D,) text embedding; cached (LRU keyed by the tokens), so a repeated prompt runs once."""
        return self._embed(self._tokens(prompt).tobytes())

    def prompt_cache_info(self):
        """functools cache statistics: `misses` is the number of prompts actually encoded."""
        return self._embed.cache_info()

    def _generate(self, lr: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """(N,3,t,t) in [-1,1] -> (N,3,t*s,t*s) in [-1,1], clamped; converts to the model's range."""
        lo, hi = self.manifest.value_range
        scale = self.manifest.scale
        sr = self._run("run_generator", lo + (lr + 1) * (hi - lo) / 2, np.repeat(emb[None], len(lr), axis=0))
        expected = (len(lr), 3, lr.shape[2] * scale, lr.shape[3] * scale)
        if sr.shape != expected:
            raise ValueError(f"model {self.manifest.root} returned sr of shape {sr.shape}, expected {expected}")
        return np.clip((sr - lo) * 2 / (hi - lo) - 1, -1, 1)

    # --- images ----------------------------------------------------------------------------------

    def upscale_rgb(self, rgb: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """(H,W,3) in [-1,1] -> (H*s,W*s,3): direct, resized or tiled as `fit` decides."""
        height, width = rgb.shape[:2]
        lr, scale = self.manifest.lr_size, self.manifest.scale
        out_size = (height * scale, width * scale)
        if out_size[0] * out_size[1] > self.max_output_pixels:
            raise ValueError(f"output would be {out_size[1]}x{out_size[0]} pixels, over the limit of "
                             f"{self.max_output_pixels}: use a smaller image or --fit resize")
        mode = fit_mode(height, width, lr, self.fit)
        if mode == "direct":
            return self._generate(rgb.transpose(2, 0, 1)[None], emb)[0].transpose(1, 2, 0)
        if mode == "resize":
            warnings.warn(f"input {width}x{height} resized to the model's {lr}x{lr} (output resized to "
                          f"{out_size[1]}x{out_size[0]})", ClipsrWarning, stacklevel=2)
            sr = self._generate(resize_float(rgb, (lr, lr)).transpose(2, 0, 1)[None], emb)[0]
            return np.clip(resize_float(sr.transpose(1, 2, 0), out_size), -1, 1)
        grown = (max(height, self.tile), max(width, self.tile))
        if grown != (height, width):
            warnings.warn(f"input {width}x{height} stretched to {grown[1]}x{grown[0]} to fit {self.tile} px "
                          "tiles", ClipsrWarning, stacklevel=2)
        sr = upscale_tiled(resize_float(rgb, grown), lambda b: self._generate(b, emb), self.tile,
                           self.tile_pad, scale, self.batch)
        return np.clip(resize_float(sr, out_size), -1, 1)

    def upscale_image(self, image: RuntimeImage, prompt: str) -> RuntimeImage:
        emb = self.encode_prompt(prompt)  # an empty prompt fails before any image work
        sr = self.upscale_rgb(image.rgb, emb)
        alpha = None
        if image.alpha is not None:  # alpha is not the model's business: bicubic
            alpha = np.clip(resize_float(image.alpha, sr.shape[:2]), 0, 1)
        return RuntimeImage(sr, alpha, image.bit_depth, image.grayscale, image.icc_profile)

    def upscale(self, image: Image.Image | np.ndarray | str | Path, prompt: str) -> Image.Image:
        """Upscale a PIL image, a numpy array (uint8/uint16/float [0,1]) or an image file."""
        if isinstance(image, Image.Image):
            loaded = from_pil(image)
        elif isinstance(image, np.ndarray):
            loaded = from_array(image)
        else:
            loaded = read_image(image, self.max_pixels)
        return to_pil(self.upscale_image(loaded, prompt))

    def upscale_file(self, src: str | Path, dst: str | Path, prompt: str) -> Path:
        """Read `src`, upscale, write `dst` atomically in the input's mode family."""
        loaded = read_image(src, self.max_pixels)
        return write_image(to_pil(self.upscale_image(loaded, prompt)), dst, loaded.icc_profile)
