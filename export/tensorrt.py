"""TensorRT engines for a model folder, built at export time so the runtime's first run is instant.

Engines are strongly typed: the precision comes from the ONNX file (the FP16 engine is built from the
mixed-precision ONNX; TensorRT 11 has no BuilderFlag.FP16, TensorRT 10 needs the STRONGLY_TYPED
network flag). Each engine is named by the same cache key the runtime computes
(`clipsr_runtime.backends.tensorrt.engine_cache_key`, docs/model-folder.md), over the ONNX sha256, the
TensorRT version, the GPU, the precision and the optimisation-profile shapes, so the runtime finds it.
The profile shapes are the runtime's: batches (1, max_batch // 2, max_batch) at the model's LR size.
A timing cache file speeds up rebuilds of the same layers (per TensorRT version and GPU).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

# The runtime finds engines by this key: one formula, kept where the runtime (the reader) lives.
from clipsr_runtime.backends.tensorrt import Shapes, TrtEngine, engine_cache_key, engine_file_name  # noqa: F401


class TensorRTUnavailableError(RuntimeError):
    """--trt asked for engines on a machine without TensorRT or a CUDA GPU."""


def profile_shapes(stage: str, max_batch: int, lr_size: int, text_dim: int, context_length: int = 77) -> Shapes:
    """(min, opt, max) input shapes of a stage, as the runtime's TensorRT backend asks for them."""
    batches = (1, max(1, max_batch // 2), max_batch)
    if stage == "text_encoder":
        return {"tokens": tuple((b, context_length) for b in batches)}
    return {"lr": tuple((b, 3, lr_size, lr_size) for b in batches),
            "text_embedding": tuple((b, text_dim) for b in batches)}


def require_tensorrt() -> tuple[str, str]:
    """(TensorRT version, GPU name) or a clear TensorRTUnavailableError; checked before any export."""
    if importlib.util.find_spec("tensorrt") is None:
        raise TensorRTUnavailableError("--trt needs TensorRT, which is not installed (pip install "
                                       "'clipsr[trt]' where NVIDIA's package index is reachable)")
    import tensorrt as trt
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("--trt needs a CUDA GPU, and torch sees none")
    return trt.__version__, torch.cuda.get_device_name(0)


def default_timing_cache(trt_version: str, gpu: str) -> Path:
    """Per-user timing cache, shared by every export on this TensorRT version and GPU."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    tag = hashlib.sha256(f"{trt_version}|{gpu}".encode()).hexdigest()[:16]
    return base / "clipsr" / "tensorrt" / f"timing-{tag}.cache"


def build_engine(onnx_path: str | Path, engine_path: str | Path, shapes: Shapes, timing_cache: str | Path) -> Path:
    """Build and serialise a strongly typed engine with one optimisation profile (the runtime's own
    builder, so an engine made here is the one the runtime would make); updates the timing cache."""
    TrtEngine(Path(engine_path)).build(Path(onnx_path), shapes, timing_cache=Path(timing_cache))
    return Path(engine_path)
