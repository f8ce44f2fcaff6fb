"""The repository's Python-backend models. Each `model.py` there is one import of a class below, so the
server's Python needs clipsr installed (`pip install clipsr`) and the logic lives here, tested once.

Dynamic batching hands `execute` several requests at once: their inputs are checked one by one (a bad
request gets its own error response and the others still run), then concatenated into one batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class _Step:
    """Plumbing shared by the steps: config parameters, per-request checks, one batched compute."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # exists only inside Triton's Python stub

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_batch = int(config.get("max_batch_size", 1)) or 1
        self.folder = Path(args["model_repository"]) / args["model_version"]
        self.setup()

    def setup(self) -> None:
        """Step-specific state (tokenizer, backend) from self.params and self.folder."""

    def check(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """One request's inputs, validated and converted; ValueError answers that request alone."""
        return arrays

    def compute(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def finalize(self) -> None:
        """Triton calls it when it unloads the model: free what `setup` opened."""

    def _error(self, message: str):
        return self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(message))

    def execute(self, requests):
        responses, good = [None] * len(requests), []
        for index, request in enumerate(requests):
            try:
                arrays = [self.pb.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs]
                good.append((index, self.check(*arrays)))
            except ValueError as exc:
                responses[index] = self._error(str(exc))
        if good:
            batch = [np.concatenate([arrays[i] for _, arrays in good]) for i in range(len(self.inputs))]
            try:
                results = self.compute(*batch)
            except (ValueError, RuntimeError) as exc:
                for index, _ in good:
                    responses[index] = self._error(f"{type(exc).__name__}: {exc}")
                return responses
            start = 0
            for index, arrays in good:
                stop = start + len(arrays[0])
                tensors = [self.pb.Tensor(name, np.ascontiguousarray(out[start:stop]))
                           for name, out in zip(self.outputs, results)]
                responses[index] = self.pb.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses


class TokenizerStep(_Step):
    """PROMPT (bytes, UTF-8) -> tokens (int32) with the runtime's torch-free CLIP tokenizer."""

    inputs, outputs = ("PROMPT",), ("tokens",)

    def setup(self) -> None:
        from clipsr_runtime.tokenizer import Tokenizer

        p = self.params
        ends = [int(p[k]) if k in p else None for k in ("sot_token", "eot_token")]
        self.tokenizer = Tokenizer(self.folder / p["vocab"], int(p["context_length"]), *ends)

    def check(self, prompts: np.ndarray) -> tuple[np.ndarray]:
        texts = []
        for raw in prompts.reshape(-1):
            try:
                texts.append(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
            except UnicodeDecodeError as exc:
                raise ValueError(f"PROMPT is not UTF-8 text ({exc.reason})") from exc
        return (np.stack([self.tokenizer(t) for t in texts]),)

    def compute(self, tokens: np.ndarray) -> tuple[np.ndarray]:
        return (tokens,)


class PreprocessStep(_Step):
    """IMAGE (N,H,W,3) uint8 -> lr (N,3,H,W) float32 in the model's value_range."""

    inputs, outputs = ("IMAGE",), ("lr",)

    def setup(self) -> None:
        self.low, self.high = float(self.params["low"]), float(self.params["high"])
        self.max_pixels = int(self.params["max_pixels"])

    def check(self, image: np.ndarray) -> tuple[np.ndarray]:
        height, width = image.shape[1:3]
        if height * width > self.max_pixels:
            raise ValueError(f"IMAGE is {width}x{height} pixels, over this server's limit of {self.max_pixels}")
        return (image,)

    def compute(self, image: np.ndarray) -> tuple[np.ndarray]:
        unit = image.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return (self.low + unit * (self.high - self.low),)


class PostprocessStep(_Step):
    """sr (N,3,H,W) float32 in value_range -> SR_IMAGE (N,H,W,3) uint8, clamped and rounded."""

    inputs, outputs = ("sr",), ("SR_IMAGE",)

    def setup(self) -> None:
        self.low, self.high = float(self.params["low"]), float(self.params["high"])

    def compute(self, sr: np.ndarray) -> tuple[np.ndarray]:
        unit = np.clip((sr - self.low) / (self.high - self.low), 0.0, 1.0)
        return (np.round(unit.transpose(0, 2, 3, 1) * 255).astype(np.uint8),)


class NetworkStep(_Step):
    """text_encoder or generator through clipsr_runtime's backends (ONNX Runtime CPU/CUDA, TensorRT),
    for servers without Triton's ONNX Runtime or TensorRT backend. The model folder is in `model/`."""

    def setup(self) -> None:
        from clipsr_runtime.backends import create_backend
        from clipsr_runtime.manifest import load_manifest

        p = self.params
        manifest = load_manifest(self.folder / "model")  # verifies every listed file's sha256
        self.stage, precision = p["stage"], p["precision"]
        spec = getattr(manifest, self.stage)
        self.inputs, self.outputs = tuple(spec.inputs), tuple(spec.outputs)
        self.backend = create_backend(manifest, backend=p["runtime_backend"], precision=precision,
                                      threads=int(p["threads"]) if "threads" in p else None,
                                      max_batch=self.max_batch, tile=manifest.lr_size)

    def finalize(self) -> None:
        self.backend.close()

    def compute(self, *arrays: np.ndarray) -> tuple[np.ndarray]:
        if self.stage == "text_encoder":
            return (self.backend.run_text(*arrays),)
        return (self.backend.run_generator(*arrays),)
