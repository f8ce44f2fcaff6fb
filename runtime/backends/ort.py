"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers, whichever the install has.

`session_options` is the one place ONNX Runtime is configured: `clipsr_export`'s parity check opens
the exported graphs through `OrtBackend` too, so what parity checks is what users run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipsr_runtime.backends.base import Backend, BackendUnavailableError, check_graph_io
from clipsr_runtime.manifest import ENGINES, Manifest, Stage

# backend name -> execution providers in preference order (CPU last, as ORT's fallback)
PROVIDERS = {
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-cpu": ["CPUExecutionProvider"],
}


def available_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def best_ort_backend() -> str:
    """ort-cuda when onnxruntime-gpu sees CUDA, else ort-cpu."""
    return "ort-cuda" if "CUDAExecutionProvider" in available_providers() else "ort-cpu"


def session_options(name: str, precision: str, threads: int | None = None):
    """Session options for a backend and precision. Mixed-precision (FP16) graphs crash ORT's CPU
    optimiser at ORT_ENABLE_ALL, so the CPU runs them at ORT_ENABLE_EXTENDED."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if precision == "fp16" and name == "ort-cpu"
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if threads:
        options.intra_op_num_threads = threads
    return options


class OrtBackend(Backend):
    """Two InferenceSessions (text encoder, generator) with the contract's name-based I/O."""

    def __init__(self, text_encoder: Path, generator: Path, name: str = "ort-cpu", precision: str = "fp32",
                 threads: int | None = None, engine_cache: Path | None = None,
                 declared: dict[str, Stage] | None = None) -> None:
        """`engine_cache`: where the ort-trt provider keeps its engines (default: next to the graphs);
        `declared`: the manifest's stages, whose input shapes the graphs must agree with."""
        import onnxruntime as ort

        super().__init__(name, precision)
        self._text = self._gen = None
        if name not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime backend {name!r} ({', '.join(PROVIDERS)})")
        first = PROVIDERS[name][0]
        if first not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"backend {name!r} is not available: onnxruntime has no {first} "
                f"(installed providers: {', '.join(ort.get_available_providers())}; "
                "for GPUs: pip uninstall onnxruntime && pip install onnxruntime-gpu)")
        options = session_options(name, precision, threads)
        providers: list = list(PROVIDERS[name])
        if name == "ort-trt":
            cache = str(engine_cache or Path(generator).parent / ENGINES)
            providers[0] = (providers[0], {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                                           "trt_fp16_enable": precision == "fp16"})
        declared = declared or {}
        self._text = self._session(ort, Path(text_encoder), "text_encoder", options, providers,
                                   declared.get("text_encoder"))
        self._gen = self._session(ort, Path(generator), "generator", options, providers, declared.get("generator"))

    @classmethod
    def from_manifest(cls, manifest: Manifest, name: str = "ort-cpu", precision: str = "fp32",
                      threads: int | None = None, engine_dir: Path | None = None) -> OrtBackend:
        return cls(manifest.stage_file("text_encoder", precision), manifest.stage_file("generator", precision),
                   name, precision, threads, engine_dir or manifest.root / ENGINES,
                   {"text_encoder": manifest.text_encoder, "generator": manifest.generator})

    @staticmethod
    def _session(ort, path: Path, stage: str, options, providers, declared: Stage | None):
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        check_graph_io(path, stage, {i.name: i.shape for i in session.get_inputs()},
                       {o.name for o in session.get_outputs()}, declared)
        return session

    def _run_text(self, tokens: np.ndarray) -> np.ndarray:
        return self._text.run(["text_embedding"], {"tokens": tokens})[0]

    def _run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        return self._gen.run(["sr"], {"lr": lr, "text_embedding": text_embedding})[0]

    def _release(self) -> None:
        """Drop both sessions (ONNX Runtime frees their memory, GPU memory included, with them)."""
        self._text = self._gen = None
