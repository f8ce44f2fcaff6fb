"""TensorRT engines for a model folder, built at export time so the runtime's first run is instant.

Everything an engine's identity depends on is the runtime's: its builder (`TrtEngine.build`: strongly
typed, so the precision comes from the ONNX file), its cache key and file name (`engine_cache_key`,
docs/model-folder.md), its optimisation-profile shapes (`profile_shapes`) and its GPU name (`gpu_name`,
from cuda-python as at run time), so the runtime finds these engines instead of rebuilding them.
A timing cache file speeds up rebuilds of the same layers (per TensorRT version and GPU).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from clipsr_runtime.backends import tensorrt as runtime_trt
from clipsr_runtime.backends.tensorrt import TrtEngine, engine_cache_key, engine_file_name  # noqa: F401


class TensorRTUnavailableError(RuntimeError):
    """--trt asked for engines on a machine without TensorRT or a CUDA GPU."""


def require_tensorrt() -> tuple[str, str]:
    """(TensorRT version, GPU name) or a clear TensorRTUnavailableError; checked before any export."""
    reason = runtime_trt.unavailable_reason()
    if reason:
        raise TensorRTUnavailableError(f"--trt needs TensorRT and a CUDA GPU: {reason}")
    import tensorrt as trt

    return trt.__version__, runtime_trt.gpu_name()


def default_timing_cache(trt_version: str, gpu: str) -> Path:
    """Per-user timing cache, shared by every export on this TensorRT version and GPU."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    tag = hashlib.sha256(f"{trt_version}|{gpu}".encode()).hexdigest()[:16]
    return base / "clipsr" / "tensorrt" / f"timing-{tag}.cache"


def build_engine(onnx_path: str | Path, engine_path: str | Path, shapes: runtime_trt.Shapes,
                 timing_cache: str | Path) -> Path:
    """Build and serialise an engine with the runtime's own builder; updates the timing cache."""
    with TrtEngine(Path(engine_path)) as engine:
        engine.build(Path(onnx_path), shapes, timing_cache=Path(timing_cache))
    return Path(engine_path)
