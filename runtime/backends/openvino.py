"""OpenVINO backend (CPU): the model folder's FP32 graphs on OpenVINO's CPU plugin.

Measured interleaved against ONNX Runtime on a 2-core AVX2 CPU (benchmarks/README.md): as fast at one
tile per call, 1.4x faster at the runtime's default 4 tiles per call on the tiny model. Each input shape
is compiled once with static shapes (what made it fast; a run sees one tile shape and at most two batch
sizes), with FP32 inference forced: on CPUs with bf16 units OpenVINO would otherwise lower precision.
"""
from __future__ import annotations

import numpy as np

from clipsr_runtime.backends.base import Backend, BackendUnavailableError, check_graph_io
from clipsr_runtime.manifest import Manifest


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OpenVinoBackend(Backend):
    """Two OpenVINO models (text encoder, generator), compiled per input shape on first use."""

    def __init__(self, manifest: Manifest, precision: str = "fp32", threads: int | None = None) -> None:
        try:
            import openvino
        except ImportError:
            raise BackendUnavailableError("backend 'openvino' is not available: OpenVINO is not installed "
                                          "(pip install 'clipsr[openvino]')") from None
        if precision != "fp32":
            raise ValueError(f"backend 'openvino' runs the fp32 graphs only (its CPU plugin picks its own "
                             f"kernels), got precision {precision!r}")
        super().__init__("openvino", precision)
        self._ov, self._core = openvino, openvino.Core()
        self._config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._models = {stage: self._read(manifest, stage) for stage in ("text_encoder", "generator")}
        self._compiled: dict[tuple, object] = {}

    def _read(self, manifest: Manifest, stage: str):
        path = manifest.stage_file(stage, "fp32")
        try:
            model = self._core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own exception types for bad graphs
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            raise ValueError(f"{path}: OpenVINO cannot load it ({lines[-1]})") from exc  # the last line says why
        inputs = {i.any_name: [d.get_length() if d.is_static else None for d in i.get_partial_shape()]
                  for i in model.inputs}
        check_graph_io(path, stage, inputs, {o.any_name for o in model.outputs}, getattr(manifest, stage))
        return model

    def _run(self, stage: str, feed: dict[str, np.ndarray], output: str) -> np.ndarray:
        key = (stage, *(a.shape for a in feed.values()))
        if key not in self._compiled:
            model = self._models[stage].clone()
            model.reshape({name: self._ov.PartialShape(list(a.shape)) for name, a in feed.items()})
            self._compiled[key] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        request = self._compiled[key]
        request.infer(feed)
        return np.array(request.get_tensor(output).data)  # a copy: the request reuses its buffer

    def _run_text(self, tokens: np.ndarray) -> np.ndarray:
        return self._run("text_encoder", {"tokens": tokens}, "text_embedding")

    def _run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        return self._run("generator", {"lr": lr, "text_embedding": text_embedding}, "sr")

    def _release(self) -> None:
        """Drop the compiled models and their requests (OpenVINO frees them with the last reference)."""
        self._compiled.clear()
        self._models.clear()
