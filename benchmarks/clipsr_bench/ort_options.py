"""ONNX Runtime session settings, tried on the generator against what `clipsr_runtime`'s OrtBackend
does, in the same run: graph optimisation level, execution mode, memory pattern, IO binding. A ratio
above 1 means the setting is faster than the runtime's; it is what decides edits to backends/ort.py."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipsr_bench.timing import measure

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
    """Generator latency per setting and its speed ratio over the runtime's own backend (`baseline`)."""
    import onnxruntime as ort

    path, provider = str(manifest.stage_file("generator", "fp32")), PROVIDER[backend]

    def time_it(fn: Callable[[], object]) -> float:
        return measure(fn, len(lr), runs, warmup).median_ms

    reference = time_it(baseline)
    results = {"runtime OrtBackend": {"median_ms": reference, "speedup_vs_runtime": 1.0}}
    feed = {"lr": lr, "text_embedding": emb}
    for name, settings in _variants(ort).items():
        session = _session(ort, path, provider, threads, settings)
        ms = time_it(lambda: session.run(["sr"], feed))
        results[name] = {"median_ms": ms, "speedup_vs_runtime": reference / ms}
    session = _session(ort, path, provider, threads, _variants(ort)["level=all (as runtime)"])
    ms = time_it(_io_bound(session, lr, emb, "cuda" if backend == "ort-cuda" else "cpu"))
    results["io_binding"] = {"median_ms": ms, "speedup_vs_runtime": reference / ms}
    return {"backend": backend, "batch": len(lr), "threads": threads, "variants": results}
