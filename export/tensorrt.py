"""TensorRT engines for a model folder, built at export time so the runtime's first run is instant.

Everything an engine's identity depends on is the runtime's: `cached_engine` (its builder, its cache key
and file name, docs/model-folder.md, and the per-user timing cache), the optimisation-profile shapes
(`profile_shapes`) and the GPU name (`gpu_name`, from cuda-python as at run time), so the runtime finds
these engines instead of rebuilding them. This module only checks, before any work, that they can be built.
"""
from __future__ import annotations

from clipsr_runtime.backends import tensorrt as runtime_trt


class TensorRTUnavailableError(RuntimeError):
    """--trt asked for engines on a machine without TensorRT or a CUDA GPU."""


def require_tensorrt() -> tuple[str, str]:
    """(TensorRT version, GPU name) or a clear TensorRTUnavailableError; checked before any export."""
    reason = runtime_trt.unavailable_reason()
    if reason:
        raise TensorRTUnavailableError(f"--trt needs TensorRT and a CUDA GPU: {reason}")
    import tensorrt as trt

    return trt.__version__, runtime_trt.gpu_name()
