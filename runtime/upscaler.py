"""The Python API: `Upscaler(model_dir).upscale(image, prompt) -> PIL.Image`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from clipsr_runtime.backends import BACKENDS, Backend, check_threads, create_backend
from clipsr_runtime.errors import OptionError
from clipsr_runtime.images import (DEFAULT_MAX_PIXELS, RuntimeImage, from_array, from_pil, read_image,
                                   to_pil, write_image)
from clipsr_runtime.manifest import PRECISIONS, STAGES, default_model_dir, load_manifest
from clipsr_runtime.notices import ClipsrWarning
from clipsr_runtime.tiling import FITS, fit_mode, max_tile_pad, resize_float, tile_count, upscale_tiled
from clipsr_runtime.tokenizer import Tokenizer

DEFAULT_MAX_OUTPUT_PIXELS = 1 << 26  # 8192 x 8192
MAX_BATCH = 1024  # tiles per call; TensorRT builds its profile for this many, so it must stay sane


@dataclass(frozen=True)
class Plan:
    """What upscaling a width x height input takes, known from the file header before decoding."""

    input_size: tuple[int, int]  # (width, height), EXIF orientation applied
    mode: str                    # direct | resize | tile
    model_size: tuple[int, int]  # (width, height) the model's output covers, before any outscale
    size: tuple[int, int]        # (width, height) of the result
    tiles: int                   # generator inputs: 1 unless tiled


def check_fitting(fit: str, batch: int, outscale: float | None, max_output_pixels: int) -> None:
    """The fitting options that need no model, refused before one loads (or a server is asked)."""
    if fit not in FITS:
        raise OptionError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if not 1 <= batch <= MAX_BATCH:
        raise OptionError(f"batch must be between 1 and {MAX_BATCH} (tiles per generator call), got {batch}")
    if outscale is not None and not (math.isfinite(outscale) and outscale > 0):
        raise OptionError(f"outscale must be a positive number, got {outscale}")
    if max_output_pixels < 1:
        raise OptionError(f"max_output_pixels must be >= 1, got {max_output_pixels}")


def _same_file(a: str | Path, b: str | Path) -> bool:
    """One file under two names: the same path once resolved, or a hard link to it."""
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _degenerate(x: np.ndarray) -> bool:
    """FP16 failure signs: NaN/Inf, or an output that is one constant."""
    return not np.isfinite(x).all() or float(np.ptp(x)) == 0.0


class Upscaler:
    """Text-guided super-resolution with an exported model folder, torch-free.

    `backend`: auto | ort | trt | ort-cpu | ort-cuda | ort-trt | openvino (`self.backend.name` says which ran).
    `fit`: auto (LR size direct, smaller resized, larger tiled) | tile | resize.
    `tile` / `tile_pad`: tile side in LR pixels (default: the model's LR size) and tile overlap.
    `outscale`: final size as a factor of the input (default: the model's scale), resized with Lanczos.
    `max_output_pixels`: the result, and the model's output before `outscale`, may not be larger.
    `verify`: check every listed file's sha256 at load (the model folder is a trust boundary).
    A context manager: leaving it (or `close()`) frees the backend's sessions, engines and GPU memory.
    """

    def __init__(self, model_dir: str | Path | None = None, backend: str = "auto", precision: str = "fp32",
                 fit: str = "auto", tile: int | None = None, tile_pad: int | None = None, batch: int = 4,
                 threads: int | None = None, cache_size: int = 128, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS, verify: bool = True,
                 outscale: float | None = None) -> None:
        for option, value, choices in (("precision", precision, PRECISIONS), ("backend", backend, BACKENDS)):
            if value not in choices:
                raise OptionError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
        check_fitting(fit, batch, outscale, max_output_pixels)
        check_threads(threads)
        self.manifest = m = load_manifest(model_dir if model_dir is not None else default_model_dir(), verify)
        for stage in STAGES:
            m.stage_file(stage, precision)  # a precision the folder lacks fails before any session opens
        tok = m.tokenizer
        self.tokenizer = Tokenizer(m.path(tok["vocab"]), tok["context_length"], tok.get("sot_token"),
                                   tok.get("eot_token"))
        self._fit_images(fit, tile, tile_pad, batch, outscale, max_pixels, max_output_pixels)
        self._backend_args = dict(backend=backend, threads=threads, max_batch=self.batch, tile=self.tile)
        self.backend: Backend = create_backend(m, precision=precision, **self._backend_args)
        self._tokens = lru_cache(maxsize=cache_size)(self.tokenizer)  # warns once per long prompt
        self._embed = lru_cache(maxsize=cache_size)(self._embed_tokens)

    def _fixed_lr_shape(self) -> tuple[object, object, object]:
        """(batch, height, width) of the generator's LR input: an int is fixed, anything else free."""
        batch, _, height, width = self.manifest.generator.inputs["lr"]["shape"]
        return batch, height, width

    def _fit_images(self, fit: str, tile: int | None, tile_pad: int | None, batch: int, outscale: float | None,
                    max_pixels: int, max_output_pixels: int) -> None:
        """How images meet the model's LR size, once `self.manifest` is known; an upscaler whose model
        runs elsewhere shares it by telling `_fixed_lr_shape`."""
        self.fit, self.outscale = fit, outscale
        self.max_pixels, self.max_output_pixels = max_pixels, max_output_pixels
        fixed_batch, h, w = self._fixed_lr_shape()
        tile = self.manifest.lr_size if tile is None else tile
        if tile < 1:
            raise OptionError(f"tile must be >= 1, got {tile}")
        if isinstance(h, int) and isinstance(w, int) and (tile, tile) != (h, w):
            raise OptionError(f"this model's generator takes {h}x{w} LR tiles, not {tile}: the only tile size "
                              f"that works is {h} (the default)")
        self.tile = tile
        self.tile_pad = min(self.manifest.lr_size // 4, max_tile_pad(tile)) if tile_pad is None else tile_pad
        if not 0 <= self.tile_pad <= max_tile_pad(tile):
            raise OptionError(f"tile_pad must be in [0, {max_tile_pad(tile)}] for {tile} px tiles, got "
                              f"{self.tile_pad}: more overlap computes each pixel over four times")
        self.batch = min(batch, fixed_batch) if isinstance(fixed_batch, int) else batch

    @property
    def runs_on(self) -> str:
        """Where the networks run, for messages (the precision may change on an fp16 fallback)."""
        return f"backend {self.backend.name}, {self.backend.precision}"

    # --- inference with the FP16 safety net ------------------------------------------------------

    def _run(self, method: str, *args: np.ndarray) -> np.ndarray:
        out = getattr(self.backend, method)(*args)
        if self.backend.precision == "fp16" and _degenerate(out):
            warnings.warn(f"fp16 {method} output is NaN/Inf or constant: retrying in fp32",
                          ClipsrWarning, stacklevel=3)
            self.backend.close()
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

    def plan(self, width: int, height: int) -> Plan:
        """Mode, sizes and tile count for an input; over the output pixel limit -> a clear error."""
        if width < 1 or height < 1:
            raise ValueError(f"image has no pixels ({width}x{height})")
        lr, scale = self.manifest.lr_size, self.manifest.scale
        mode = fit_mode(height, width, lr, self.fit)
        tiles = 1
        model_size = (lr * scale, lr * scale) if mode == "resize" else (width * scale, height * scale)
        if mode == "tile":  # an input smaller than a tile is stretched to one first
            grown_w, grown_h = max(width, self.tile), max(height, self.tile)
            model_size = (grown_w * scale, grown_h * scale)
            tiles = tile_count(grown_h, grown_w, self.tile, self.tile_pad)
        size = (width * scale, height * scale) if self.outscale is None else \
            (max(1, int(width * self.outscale)), max(1, int(height * self.outscale)))  # as Real-ESRGAN rounds
        for what, (w, h) in (("output", size), ("the model's output before outscale", model_size)):
            if w * h > self.max_output_pixels:
                raise ValueError(f"{what} would be {w}x{h} ({w * h:,} pixels), over the limit of "
                                 f"{self.max_output_pixels:,}: use a smaller image, a smaller outscale or "
                                 "--fit resize, or raise the limit")
        return Plan((width, height), mode, model_size, size, tiles)

    def _final(self, sr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The model's output at the result's (h, w): Lanczos for an outscale, as Real-ESRGAN does."""
        resample = Image.Resampling.BICUBIC if self.outscale is None else Image.Resampling.LANCZOS
        return np.clip(resize_float(sr, size, resample), -1, 1)

    def upscale_rgb(self, rgb: np.ndarray, emb: np.ndarray,
                    progress: Callable[[int], object] | None = None) -> np.ndarray:
        """(H,W,3) in [-1,1] -> the plan's size: direct, resized or tiled as `fit` decides.
        `progress(n)` hears of each batch of n tiles done."""
        height, width = rgb.shape[:2]
        plan = self.plan(width, height)
        lr, scale, final = self.manifest.lr_size, self.manifest.scale, plan.size[::-1]
        if plan.mode == "direct":
            return self._final(self._generate(rgb.transpose(2, 0, 1)[None], emb)[0].transpose(1, 2, 0), final)
        if plan.mode == "resize":
            warnings.warn(f"input {width}x{height} resized to the model's {lr}x{lr} (output resized to "
                          f"{final[1]}x{final[0]})", ClipsrWarning, stacklevel=2)
            sr = self._generate(resize_float(rgb, (lr, lr)).transpose(2, 0, 1)[None], emb)[0]
            return np.clip(resize_float(sr.transpose(1, 2, 0), final), -1, 1)
        grown = (max(height, self.tile), max(width, self.tile))
        if grown != (height, width):
            warnings.warn(f"input {width}x{height} stretched to {grown[1]}x{grown[0]} to fit {self.tile} px "
                          "tiles", ClipsrWarning, stacklevel=2)
        sr = upscale_tiled(resize_float(rgb, grown), lambda b: self._generate(b, emb), self.tile,
                           self.tile_pad, scale, self.batch, progress)
        return self._final(sr, final)

    def upscale_image(self, image: RuntimeImage, prompt: str,
                      progress: Callable[[int], object] | None = None) -> RuntimeImage:
        emb = self.encode_prompt(prompt)  # an empty prompt fails before any image work
        sr = self.upscale_rgb(image.rgb, emb, progress)
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
            loaded = read_image(image, self.max_pixels, before_decode=self.plan)
        return to_pil(self.upscale_image(loaded, prompt))

    def upscale_file(self, src: str | Path, dst: str | Path, prompt: str,
                     on_plan: Callable[[Plan], object] | None = None,
                     progress: Callable[[int], object] | None = None, overwrite: bool = True) -> Path:
        """Read `src`, upscale, write `dst` atomically in the input's mode family. The plan is made
        from the header, so an output over the limit is refused before decoding; `on_plan` sees it.
        `dst` may never be `src` (by any spelling or link); `overwrite=False` keeps an existing `dst`,
        also one that appears while this runs (FileExistsError)."""
        if _same_file(src, dst):
            raise OptionError(f"{dst} is the input {src}: writing it would destroy the input; choose "
                              "another output")
        if not overwrite and (Path(dst).exists() or Path(dst).is_symlink()):
            raise FileExistsError(f"{dst} exists (written meanwhile by another run?): kept; --overwrite "
                                  "(overwrite=True) replaces it")

        def check(width: int, height: int) -> None:
            plan = self.plan(width, height)
            if on_plan is not None:
                on_plan(plan)

        loaded = read_image(src, self.max_pixels, before_decode=check)
        return write_image(to_pil(self.upscale_image(loaded, prompt, progress)), dst, loaded.icc_profile,
                           replace=overwrite)

    # --- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the backend (ONNX Runtime sessions, TensorRT engines, CUDA stream and buffers)."""
        self.backend.close()

    def __enter__(self) -> Upscaler:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
