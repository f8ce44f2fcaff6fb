"""Native TensorRT backend: build (once) or load engines, run them with name-based I/O.

Follows the `Engine` of TensorRT's demo/Diffusion (build from ONNX with an optimisation profile,
`set_input_shape` + `set_tensor_address` + `execute_async_v3`), but torch-free: device buffers and
the stream come from NVIDIA's `cuda-python`. Engines are specific to the TensorRT version, the GPU,
the precision and the shapes, so the cache file name is a key over all of them plus the ONNX sha256.
`tensorrt` and `cuda` are imported lazily: this module imports on machines without them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from clipsr_runtime.atomic import atomic_write
from clipsr_runtime.backends.base import Backend, BackendUnavailableError, check_graph_io
from clipsr_runtime.manifest import ENGINES, Manifest

Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def profile_shapes(stage: str, max_batch: int, tile: int, text_dim: int, context_length: int) -> Shapes:
    """(min, opt, max) input shapes of a stage's optimisation profile: batches 1, max_batch // 2 and
    max_batch, square `tile` px LR inputs. Export builds its engines with these, so the runtime finds them."""
    batches = (1, max(1, max_batch // 2), max_batch)
    if stage == "text_encoder":
        return {"tokens": tuple((b, context_length) for b in batches)}
    return {"lr": tuple((b, 3, tile, tile) for b in batches),
            "text_embedding": tuple((b, text_dim) for b in batches)}


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str,
                     shapes: Shapes) -> str:
    """sha256 over everything an engine depends on (docs/model-folder.md, 'engines/')."""
    blob = json.dumps({"onnx_sha256": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name,
                       "precision": precision,
                       "shapes": {k: [list(s) for s in v] for k, v in sorted(shapes.items())}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def engine_file_name(stage: str, key: str) -> str:
    return f"{stage}-{key[:32]}.engine"


def user_cache_dir(*parts: str) -> Path:
    """clipsr's per-user cache folder (under $XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "clipsr", *parts)


def timing_cache_file(trt_version: str, gpu: str) -> Path:
    """Per-user layer timings, shared by every build on this TensorRT version and GPU (faster rebuilds)."""
    tag = hashlib.sha256(f"{trt_version}|{gpu}".encode()).hexdigest()[:16]
    return user_cache_dir("tensorrt", f"timing-{tag}.cache")


def unavailable_reason() -> str | None:
    """Why native TensorRT cannot run here, or None when it can."""
    for module, extra in (("tensorrt", "tensorrt"), ("cuda", "cuda-python")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'clipsr[trt]' gives {extra})"
    try:
        count = _check(_cudart().cudaGetDeviceCount())
    except RuntimeError as exc:
        return f"no usable CUDA device ({exc})"
    return None if count > 0 else "no CUDA device"


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart
    return cudart


def _check(result):
    """cuda-python calls return (error, *values): raise on error, unwrap the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else (values or None)


def gpu_name() -> str:
    props = _check(_cudart().cudaGetDeviceProperties(0))
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")


class TrtEngine:
    """One serialized engine file: build from ONNX, load, and infer with numpy arrays.
    A context manager; `close()` frees its device buffers and execution context."""

    def __init__(self, path: Path) -> None:
        import tensorrt as trt

        self.trt = trt
        self.path = Path(path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = self.context = None
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def build(self, onnx_path: Path, shapes: Shapes, timing_cache: Path | None = None) -> None:
        """Strongly typed build: precision comes from the ONNX (fp16 graph -> fp16 engine).
        `timing_cache`: a file of layer timings read before and updated after, to speed up rebuilds."""
        trt = self.trt
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        builder = trt.Builder(self.logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ValueError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # keep fp32 engines at fp32 parity
        if timing_cache is not None:
            cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
        atomic_write(self.path, lambda tmp: tmp.write_bytes(bytes(serialized)))
        if timing_cache is not None:
            timings = bytes(config.get_timing_cache().serialize())
            atomic_write(timing_cache, lambda tmp: tmp.write_bytes(timings))

    def load(self) -> None:
        runtime = self.trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{self.path}: TensorRT cannot load this engine (delete it to rebuild)")
        self.context = self.engine.create_execution_context()

    def _io(self) -> list[tuple[str, bool]]:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        return [(n, self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT) for n in names]

    def io_shapes(self, inputs: bool) -> dict[str, list[int]]:
        """The loaded engine's input (or output) tensors and their shapes, -1 for a free dimension."""
        return {n: list(self.engine.get_tensor_shape(n)) for n, is_input in self._io() if is_input == inputs}

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            cudart = _cudart()
            if ptr:
                _check(cudart.cudaFree(ptr))
            ptr, size = int(_check(cudart.cudaMalloc(nbytes))), nbytes
            self.buffers[name] = (ptr, size)
        return ptr

    def infer(self, feed: dict[str, np.ndarray], stream: int) -> dict[str, np.ndarray]:
        """Copy inputs in, execute_async_v3 on `stream`, copy outputs out (synchronised)."""
        cudart, trt = _cudart(), self.trt
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        host: dict[str, np.ndarray] = {}
        for name, is_input in self._io():
            if is_input:
                arr = np.ascontiguousarray(feed[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                self.context.set_input_shape(name, arr.shape)
                host[name] = arr
        for name, is_input in self._io():
            if not is_input:
                shape = tuple(self.context.get_tensor_shape(name))
                host[name] = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            ptr = self._device(name, max(host[name].nbytes, 1))
            self.context.set_tensor_address(name, ptr)
            if is_input:
                _check(cudart.cudaMemcpyAsync(ptr, host[name].ctypes.data, host[name].nbytes, h2d, stream))
        if not self.context.execute_async_v3(stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        outputs = {}
        for name, is_input in self._io():
            if not is_input:
                ptr = self.buffers[name][0]
                _check(cudart.cudaMemcpyAsync(host[name].ctypes.data, ptr, host[name].nbytes, d2h, stream))
                outputs[name] = host[name]
        _check(cudart.cudaStreamSynchronize(stream))
        return outputs

    def close(self) -> None:
        """Free the device buffers and drop the context and engine; safe to call twice."""
        buffers, self.buffers = self.buffers, {}
        for ptr, _ in buffers.values():
            _check(_cudart().cudaFree(ptr))
        self.context = self.engine = None

    def __enter__(self) -> TrtEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def engine_dir_for(manifest: Manifest) -> Path:
    """The model's engines/ folder when writable, else a per-user cache (built-in models are read-only)."""
    local = manifest.root / ENGINES
    if os.access(local if local.is_dir() else manifest.root, os.W_OK):
        return local
    return user_cache_dir("engines", manifest.name)


def cached_engine(folder: Path, stage: str, onnx_path: Path, onnx_sha256: str, precision: str, shapes: Shapes,
                  trt_version: str, gpu: str) -> tuple[TrtEngine, str]:
    """(engine, cache key) for these inputs: the file in `folder` named by the key over everything that
    invalidates an engine, built (with the timing cache) only when missing. Export and the runtime both
    call it, so the engines an export writes are the ones the runtime looks for."""
    key = engine_cache_key(onnx_sha256, trt_version, gpu, precision, shapes)
    engine = TrtEngine(folder / engine_file_name(stage, key))
    if not engine.path.is_file():
        engine.build(onnx_path, shapes, timing_cache=timing_cache_file(trt_version, gpu))
    return engine, key


class TrtBackend(Backend):
    """Text encoder + generator engines, built on first use and cached under their key.
    A context manager; `close()` frees both engines and the CUDA stream."""

    def __init__(self, manifest: Manifest, precision: str = "fp32", max_batch: int = 8,
                 tile: int | None = None, engine_dir: Path | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"backend 'trt' is not available: {reason}")
        import tensorrt as trt

        super().__init__("trt", precision)
        self._text = self._gen = None
        self._stream = 0
        context_length = manifest.tokenizer["context_length"]
        dim = int(manifest.text_encoder.outputs["text_embedding"]["shape"][-1])
        shapes = {stage: profile_shapes(stage, max_batch, tile or manifest.lr_size, dim, context_length)
                  for stage in ("text_encoder", "generator")}
        folder = engine_dir or engine_dir_for(manifest)
        self._stream = int(_check(_cudart().cudaStreamCreate()))
        try:
            self._text = self._engine(manifest, "text_encoder", shapes["text_encoder"], trt.__version__, folder)
            self._gen = self._engine(manifest, "generator", shapes["generator"], trt.__version__, folder)
        except BaseException:
            self.close()
            raise

    def _engine(self, manifest: Manifest, stage: str, shapes: Shapes, version: str, folder: Path) -> TrtEngine:
        onnx_name = getattr(manifest, stage).files[self.precision]
        engine, _ = cached_engine(folder, stage, manifest.path(onnx_name), manifest.sha256(onnx_name),
                                  self.precision, shapes, version, gpu_name())
        engine.load()
        try:
            check_graph_io(engine.path, stage, engine.io_shapes(True), set(engine.io_shapes(False)),
                           getattr(manifest, stage))
        except ValueError:
            engine.close()
            raise
        return engine

    def _run_text(self, tokens: np.ndarray) -> np.ndarray:
        return self._text.infer({"tokens": tokens}, self._stream)["text_embedding"]

    def _run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        return self._gen.infer({"lr": lr, "text_embedding": text_embedding}, self._stream)["sr"]

    def _release(self) -> None:
        """Free both engines' buffers and the CUDA stream."""
        engines, self._text, self._gen = (self._text, self._gen), None, None
        for engine in engines:
            if engine is not None:
                engine.close()
        stream, self._stream = self._stream, 0
        if stream:
            _check(_cudart().cudaStreamDestroy(stream))
