"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers, whichever the install has."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipsr_runtime.backends.base import BackendUnavailableError
from clipsr_runtime.manifest import Manifest

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


class OrtBackend:
    """Two InferenceSessions (text encoder, generator) with name-based I/O from the manifest."""

    def __init__(self, manifest: Manifest, name: str = "ort-cpu", precision: str = "fp32",
                 threads: int | None = None, engine_dir: Path | None = None) -> None:
        import onnxruntime as ort

        if name not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime backend {name!r} ({', '.join(PROVIDERS)})")
        first = PROVIDERS[name][0]
        if first not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"backend {name!r} is not available: onnxruntime has no {first} "
                f"(installed providers: {', '.join(ort.get_available_providers())}; "
                "for GPUs: pip uninstall onnxruntime && pip install onnxruntime-gpu)")
        self.name, self.precision = name, precision
        options = ort.SessionOptions()
        # FP16 graphs crash ORT's CPU optimiser at ENABLE_ALL (docs/DESIGN.md section 6).
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if precision == "fp16" and name == "ort-cpu"
            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if threads:
            options.intra_op_num_threads = threads
        providers: list = list(PROVIDERS[name])
        if name == "ort-trt":
            cache = str(engine_dir or manifest.root / "engines")
            providers[0] = (providers[0], {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                                           "trt_fp16_enable": precision == "fp16"})
        self._text = self._session(ort, manifest, "text_encoder", precision, options, providers)
        self._gen = self._session(ort, manifest, "generator", precision, options, providers)

    @staticmethod
    def _session(ort, manifest: Manifest, stage: str, precision: str, options, providers):
        path = manifest.stage_file(stage, precision)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        spec = getattr(manifest, stage)
        have = ({i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()})
        if have != (set(spec.inputs), set(spec.outputs)):
            raise ValueError(f"{path}: graph I/O {sorted(have[0])} -> {sorted(have[1])} does not match "
                             f"model.json {sorted(spec.inputs)} -> {sorted(spec.outputs)}")
        return session

    def run_text(self, tokens: np.ndarray) -> np.ndarray:
        return self._text.run(["text_embedding"], {"tokens": tokens.astype(np.int32)})[0]

    def run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        feed = {"lr": lr.astype(np.float32), "text_embedding": text_embedding.astype(np.float32)}
        return self._gen.run(["sr"], feed)[0]
