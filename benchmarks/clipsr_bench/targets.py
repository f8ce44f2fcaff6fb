"""The backends under test, each opened as a `Target`: two zero-argument calls (text encoder on a token
batch, generator on an LR batch) plus the GPU synchronisation its timing needs.

PyTorch targets take their inputs already on the device (the usual PyTorch reference); runtime targets
take numpy arrays, as `clipsr_runtime` does, so host/device copies are part of their time."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from clipsr.model import CLIPSR
from clipsr_bench.timing import cuda_sync

BACKENDS = ("torch", "torch-compile", "torch-fp16", "torch-cudagraphs", "ort-cpu", "ort-cuda", "ort-trt", "trt",
            "openvino")
RUNTIME_BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "trt", "openvino")


class Unavailable(RuntimeError):
    """This target cannot run here; the message says why."""


@dataclass(frozen=True)
class RowSpec:
    """One row of the latency table: a backend at a device and precision."""

    row: str
    backend: str
    device: str
    precision: str


@dataclass
class Target:
    spec: RowSpec
    text_call: Callable[[np.ndarray], Callable[[], object]]
    generator_call: Callable[[np.ndarray, np.ndarray], Callable[[], object]]
    sync: Callable[[], None] | None


def parse_backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise ValueError(f"--backends takes a comma list of {', '.join(BACKENDS)}, got {text!r}")
    return list(dict.fromkeys(names))


def plan_rows(backends: list[str], fp16: bool) -> list[RowSpec]:
    """Rows for the chosen backends: FP32 everywhere, plus FP16 for the GPU runtimes when exported."""
    rows = []
    for b in backends:
        if b == "torch":
            rows += [RowSpec("torch-cpu", b, "cpu", "fp32"), RowSpec("torch-cuda", b, "cuda", "fp32")]
        elif b in ("torch-compile", "torch-cudagraphs"):
            rows.append(RowSpec(b, b, "cuda", "fp32"))
        elif b == "torch-fp16":
            rows.append(RowSpec(b, b, "cuda", "fp16"))
        elif b in ("ort-cpu", "openvino"):
            rows.append(RowSpec(b, b, "cpu", "fp32"))
        else:
            rows.append(RowSpec(b, b, "cuda", "fp32"))
            if fp16:
                rows.append(RowSpec(f"{b}-fp16", b, "cuda", "fp16"))
    return rows


def open_target(spec: RowSpec, model: CLIPSR, manifest, threads: int, max_batch: int, cpu_only: bool) -> Target:
    """Load `spec`'s backend; raises Unavailable with the reason when it cannot run here."""
    if spec.device == "cuda" and cpu_only:
        raise Unavailable("skipped: --quick is a CPU run")
    if spec.backend in RUNTIME_BACKENDS:
        return _runtime_target(spec, manifest, threads, max_batch)
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("no CUDA device (torch.cuda.is_available() is False)")
    return _torch_target(spec, model)


def _torch_target(spec: RowSpec, model: CLIPSR) -> Target:
    dtype = torch.float16 if spec.precision == "fp16" else torch.float32
    if spec.device == "cuda":
        model = copy.deepcopy(model).to("cuda", dtype)
    text_encoder, generator = model.encode_text, model.generator
    if spec.backend == "torch-compile":
        text_encoder, generator = torch.compile(text_encoder), torch.compile(generator)

    wrap = _cuda_graph if spec.backend == "torch-cudagraphs" else _inference

    def text_call(tokens: np.ndarray) -> Callable[[], object]:
        t = torch.from_numpy(tokens).long().to(spec.device)
        return wrap(lambda: text_encoder(t))

    def generator_call(lr: np.ndarray, emb: np.ndarray) -> Callable[[], object]:
        x, e = (torch.from_numpy(a).to(spec.device, dtype) for a in (lr, emb))
        return wrap(lambda: generator(x, e))

    return Target(spec, text_call, generator_call, cuda_sync if spec.device == "cuda" else None)


def _inference(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return fn()
    return call


def _cuda_graph(fn: Callable[[], object], warmup: int = 3) -> Callable[[], object]:
    """`fn` (fixed input tensors) captured once as a CUDA graph; each call replays it: one launch instead
    of one per kernel, which is where a small batch spends its time on a GPU."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(stream):  # capture needs the allocator warmed up on a side stream
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    return graph.replay


def _runtime_target(spec: RowSpec, manifest, threads: int, max_batch: int) -> Target:
    from clipsr_runtime.backends import BackendUnavailableError, create_backend

    if spec.precision not in manifest.text_encoder.files:
        raise Unavailable(f"the model folder has no {spec.precision} graphs")
    try:
        backend = create_backend(manifest, spec.backend, spec.precision, threads=threads, max_batch=max_batch)
    except BackendUnavailableError as exc:
        raise Unavailable(str(exc)) from None
    return Target(spec, lambda tokens: lambda: backend.run_text(tokens),
                  lambda lr, emb: lambda: backend.run_generator(lr, emb), None)

