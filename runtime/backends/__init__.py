"""Backend choice: `auto` takes native TensorRT, then ONNX Runtime CUDA, then on the CPU OpenVINO when it is
installed (as fast or faster, measured), else ONNX Runtime CPU."""

from __future__ import annotations

from pathlib import Path

from clipsr_runtime.backends.base import Backend, BackendClosedError, BackendUnavailableError
from clipsr_runtime.errors import OptionError
from clipsr_runtime.manifest import Manifest

BACKENDS = ("auto", "ort", "trt", "ort-cpu", "ort-cuda", "ort-trt", "openvino")
# INT8 graphs hold ONNX Runtime's dynamic-quantization ops (MatMulInteger...), which native TensorRT does
# not build: no engines for them, and `auto` never picks TensorRT for them.
TRT_SKIPS = ("int8",)
MAX_THREADS = 1024  # far above any CPU this runs on; more would reach the libraries as a raw error

__all__ = ["BACKENDS", "Backend", "BackendClosedError", "BackendUnavailableError", "check_threads",
           "create_backend", "resolve_backend_name"]


def check_threads(threads: int | None, flag: str = "threads") -> None:
    """A CPU thread count every backend accepts (None: the library's default)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise OptionError(f"{flag} must be between 1 and {MAX_THREADS}, got {threads}")


def resolve_backend_name(backend: str, precision: str = "fp32") -> str:
    """The concrete backend `auto` / `ort` stand for on this machine (OpenVINO runs fp32 graphs only,
    TensorRT not int8 ones)."""
    from clipsr_runtime.backends import openvino, ort, tensorrt

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        if tensorrt.unavailable_reason() is None and precision not in TRT_SKIPS:
            return "trt"
        best = ort.best_ort_backend()
        return "openvino" if best == "ort-cpu" and precision == "fp32" and openvino.installed() else best
    if backend == "ort":
        return ort.best_ort_backend()
    return backend


def create_backend(manifest: Manifest, backend: str = "auto", precision: str = "fp32",
                   threads: int | None = None, max_batch: int = 8, tile: int | None = None,
                   engine_dir: Path | None = None) -> Backend:
    """Open the model's graphs with the requested (or best available) backend."""
    check_threads(threads)
    name = resolve_backend_name(backend, precision)
    if name == "trt" and precision in TRT_SKIPS:
        raise ValueError(f"{precision} graphs run on ONNX Runtime (CPU): use --backend ort-cpu or auto")
    if name == "trt":
        from clipsr_runtime.backends.tensorrt import TrtBackend

        return TrtBackend(manifest, precision, max_batch=max_batch, tile=tile, engine_dir=engine_dir)
    if name == "openvino":
        from clipsr_runtime.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(manifest, precision, threads=threads)
    from clipsr_runtime.backends.ort import OrtBackend

    return OrtBackend.from_manifest(manifest, name, precision, threads=threads, engine_dir=engine_dir)
