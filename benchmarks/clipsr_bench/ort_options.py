"""ONNX Runtime session settings, tried on the generator against what `clipsr_runtime`'s OrtBackend
does, interleaved call by call in the same run: graph optimisation level, execution mode, memory
pattern, IO binding. A ratio above 1 means the setting is faster than the runtime's; it is what decides
edits to backends/ort.py."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipsr_bench.timing import interleave, pairwise_ratio

RUNTIME = "runtime OrtBackend"
PROVIDER = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider"}


def _variants(ort) -> dict[str, dict]:
    level, mode = ort.GraphOptimizationLevel, ort.ExecutionMode
    return {
        "level=all (as runtime)": {"graph_optimization_level": level.ORT_ENABLE_ALL},
        "level=extended": {"graph_optimization_level": level.ORT_ENABLE_EXTENDED},
        "level=basic": {"graph_optimization_level": level.ORT_ENABLE_BASIC},
        "level=disabled": {"graph_optimization_level": level.ORT_DISABLE_ALL},
        "execution=parallel": {"graph_optimization_level": level.ORT_ENABLE_ALL, "execution_mode": mode.ORT_PARALLEL},
        "mem_pattern=off": {"graph_optimization_level": level.ORT_ENABLE_ALL, "enable_mem_pattern": False},
    }


def _session(ort, path: str, provider: str, threads: int, settings: dict):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    for key, value in settings.items():
        setattr(options, key, value)
    return ort.InferenceSession(path, sess_options=options, providers=[provider])


def _io_bound(session, lr: np.ndarray, emb: np.ndarray, device: str) -> Callable[[], object]:
    """IO binding: inputs bound once (on the device for CUDA), output allocated by ORT on the device."""
    import onnxruntime as ort

    binding = session.io_binding()
    ort_device = "cuda" if device == "cuda" else "cpu"
    for name, array in (("lr", lr), ("text_embedding", emb)):
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, ort_device, 0))
    binding.bind_output("sr", ort_device)
    return lambda: session.run_with_iobinding(binding)


def sweep(manifest, backend: str, lr: np.ndarray, emb: np.ndarray, threads: int, runs: int, warmup: int,
          baseline: Callable[[], object]) -> dict:
    """Generator latency per setting, all interleaved with the runtime's own backend (`baseline`), and
    each setting's speed over it as the median (and spread) of the per-round ratios."""
    import onnxruntime as ort

    path, provider = str(manifest.stage_file("generator", "fp32")), PROVIDER[backend]
    feed = {"lr": lr, "text_embedding": emb}
    calls = {RUNTIME: baseline}
    for name, settings in _variants(ort).items():
        session = _session(ort, path, provider, threads, settings)
        calls[name] = lambda session=session: session.run(["sr"], feed)
    session = _session(ort, path, provider, threads, _variants(ort)["level=all (as runtime)"])
    calls["io_binding"] = _io_bound(session, lr, emb, "cuda" if backend == "ort-cuda" else "cpu")
    samples, errors = interleave(calls, runs, warmup)
    if RUNTIME in errors:
        raise RuntimeError(errors[RUNTIME])
    results = {name: {"median_ms": float(np.median(ms)), "speedup_vs_runtime": pairwise_ratio(samples[RUNTIME], ms)}
               for name, ms in samples.items()}
    results |= {name: {"error": error} for name, error in errors.items()}
    return {"backend": backend, "batch": len(lr), "threads": threads, "variants": results}
