"""clipsr_runtime: torch-free CLIP-SR inference (ONNX Runtime / TensorRT) from an exported model folder.

`Upscaler` is imported on first use so that `import clipsr_runtime` (and `clipsr-run --help`)
does not load numpy, Pillow or onnxruntime.
"""

from __future__ import annotations

__all__ = ["Upscaler"]


def __getattr__(name: str):
    if name == "Upscaler":
        from clipsr_runtime.upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module 'clipsr_runtime' has no attribute {name!r}")
