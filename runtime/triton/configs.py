"""The `config.pbtxt` of every model in a clipsr Triton repository, as dicts (see docs/serving.md).

Models: `tokenizer` (prompt -> tokens), `text_encoder`, `preprocess` (uint8 HWC -> float CHW),
`generator`, `postprocess` (float CHW -> uint8 HWC) and the ensemble `clipsr` chaining them. Every step
batches (max_batch_size > 0 makes dim 0 the implicit batch axis) and has dynamic batching on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clipsr_runtime.backends import check_threads
from clipsr_runtime.errors import OptionError
from clipsr_runtime.manifest import Manifest
from clipsr_runtime.triton.pbtxt import Enum, parameters

PLATFORMS = ("onnxruntime", "tensorrt", "python")
ENSEMBLE = "clipsr"
TOKENIZER, PREPROCESS, POSTPROCESS = "tokenizer", "preprocess", "postprocess"
NETWORKS = ("text_encoder", "generator")
_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
          "uint8": "TYPE_UINT8"}


@dataclass(frozen=True)
class ServeOptions:
    """How the repository serves the model.

    platform: where text_encoder and generator run: onnxruntime (`onnxruntime_onnx`), tensorrt
    (`tensorrt_plan`, from the model folder's engines/) or python (clipsr_runtime's own backends on
    Triton's Python backend; `runtime_backend` picks which, `threads` its CPU threads).
    ort_trt: None, or "fp32"/"fp16": ONNX Runtime's TensorRT execution accelerator at that precision.
    """

    platform: str = "onnxruntime"
    precision: str = "fp32"
    max_batch: int = 8
    queue_delay_us: int = 2000
    instances: int = 1
    gpu: bool = True
    ort_trt: str | None = None
    runtime_backend: str = "auto"
    threads: int | None = None
    max_pixels: int = 1 << 22

    def check(self) -> None:
        """Values that cannot work are usage errors (exit 2), found before anything is written."""
        if self.platform not in PLATFORMS:
            raise OptionError(f"platform must be one of {', '.join(PLATFORMS)}, got {self.platform!r}")
        if self.max_batch < 1 or self.instances < 1 or self.queue_delay_us < 0:
            raise OptionError("max batch and instances must be >= 1, the queue delay >= 0")
        if self.ort_trt not in (None, "fp32", "fp16"):
            raise OptionError(f"the TensorRT accelerator precision must be fp32 or fp16, got {self.ort_trt!r}")
        if self.ort_trt and self.platform != "onnxruntime":
            raise OptionError("the TensorRT execution accelerator is an ONNX Runtime backend option: "
                             "use it with --platform onnxruntime")
        check_threads(self.threads, "--threads")
        if self.ort_trt and not self.gpu:
            raise OptionError("the TensorRT execution accelerator runs on GPUs: drop --ort-trt or --cpu")


def _dims(shape: list[Any]) -> list[int]:
    """model.json shape without its batch axis; named (dynamic) axes become -1."""
    return [d if isinstance(d, int) else -1 for d in shape[1:]]


def _tensor(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "data_type": Enum(_TYPES.get(dtype, dtype)), "dims": dims}


def _batching(opts: ServeOptions) -> dict[str, Any]:
    preferred = sorted({max(1, opts.max_batch // 2), opts.max_batch})
    return {"max_batch_size": opts.max_batch,
            "dynamic_batching": {"preferred_batch_size": preferred,
                                 "max_queue_delay_microseconds": opts.queue_delay_us}}


def _instances(opts: ServeOptions, gpu: bool) -> dict[str, Any]:
    return {"instance_group": [{"kind": Enum("KIND_GPU" if gpu else "KIND_CPU"), "count": opts.instances}]}


def image_dims(manifest: Manifest) -> tuple[list[int], list[int]]:
    """(LR, SR) image dims as the ensemble takes them: height, width, 3."""
    lr = _dims(manifest.generator.inputs["lr"]["shape"])
    sr = _dims(manifest.generator.outputs["sr"]["shape"])
    return [lr[1], lr[2], 3], [sr[1], sr[2], 3]


def check_batch_axis(manifest: Manifest) -> None:
    """Triton batches along a dynamic first axis; a graph exported with a fixed batch cannot."""
    for stage in NETWORKS:
        io = {**getattr(manifest, stage).inputs, **getattr(manifest, stage).outputs}
        fixed = [name for name, spec in io.items() if isinstance(spec["shape"][0], int)]
        if fixed:
            raise ValueError(f"model {manifest.root}: {stage} has a fixed batch axis on {', '.join(fixed)}; "
                             "Triton needs a dynamic one (re-export it)")


def network_config(manifest: Manifest, stage: str, opts: ServeOptions) -> dict[str, Any]:
    """text_encoder or generator, with model.json's tensor names, on the chosen platform."""
    spec = getattr(manifest, stage)
    config: dict[str, Any] = {"name": stage}
    if opts.platform == "python":
        config["backend"] = "python"
    else:
        config["platform"] = "onnxruntime_onnx" if opts.platform == "onnxruntime" else "tensorrt_plan"
    config["input"] = [_tensor(n, s["dtype"], _dims(s["shape"])) for n, s in spec.inputs.items()]
    config["output"] = [_tensor(n, s["dtype"], _dims(s["shape"])) for n, s in spec.outputs.items()]
    config.update(_batching(opts))
    config.update(_instances(opts, opts.gpu and opts.platform != "python"))
    if opts.platform == "python":
        step = {"step": "network", "stage": stage, "precision": opts.precision,
                "runtime_backend": opts.runtime_backend}
        if opts.threads:
            step["threads"] = opts.threads
        config["parameters"] = parameters(step)
    if opts.ort_trt:
        accelerator = {"precision_mode": opts.ort_trt.upper(), "max_workspace_size_bytes": str(1 << 30)}
        trt = {"name": "tensorrt",  # here parameters is a map of string -> string, not ModelParameter
               "parameters": [{"key": k, "value": v} for k, v in accelerator.items()]}
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [trt]}}
    return config


def _python_step(name: str, step: str, inputs: list, outputs: list, opts: ServeOptions,
                 params: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "backend": "python", "input": inputs, "output": outputs, **_batching(opts),
            **_instances(opts, False), "parameters": parameters({"step": step, **params})}


def tokenizer_config(manifest: Manifest, opts: ServeOptions) -> dict[str, Any]:
    tok = manifest.tokenizer
    context = tok["context_length"]  # the manifest always sets it
    params = {"vocab": tok["vocab"], "context_length": context}
    params.update({k: tok[k] for k in ("sot_token", "eot_token") if k in tok})
    return _python_step(TOKENIZER, "tokenizer", [_tensor("PROMPT", "TYPE_STRING", [1])],
                        [_tensor("tokens", "int32", [context])], opts, params)


def image_configs(manifest: Manifest, opts: ServeOptions) -> list[dict[str, Any]]:
    """preprocess and postprocess: uint8 HWC <-> float CHW in the model's value_range."""
    lr_hwc, sr_hwc = image_dims(manifest)
    lr_chw = _dims(manifest.generator.inputs["lr"]["shape"])
    sr_chw = _dims(manifest.generator.outputs["sr"]["shape"])
    lo, hi = manifest.value_range
    params = {"low": lo, "high": hi}
    return [
        _python_step(PREPROCESS, "preprocess", [_tensor("IMAGE", "uint8", lr_hwc)],
                     [_tensor("lr", "float32", lr_chw)], opts, {**params, "max_pixels": opts.max_pixels}),
        _python_step(POSTPROCESS, "postprocess", [_tensor("sr", "float32", sr_chw)],
                     [_tensor("SR_IMAGE", "uint8", sr_hwc)], opts, params),
    ]


def _step(model: str, inputs: list[str], outputs: list[str],
          rename: dict[str, str] | None = None) -> dict[str, Any]:
    """An ensemble step; tensors keep their names between steps except the ensemble's own I/O."""
    rename = rename or {}
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": n, "value": rename.get(n, n)} for n in inputs],
            "output_map": [{"key": n, "value": rename.get(n, n)} for n in outputs]}


def ensemble_config(manifest: Manifest, opts: ServeOptions) -> dict[str, Any]:
    """`clipsr`: PROMPT (string) + IMAGE (uint8 LR, HWC) -> SR_IMAGE (uint8, HWC)."""
    lr_hwc, sr_hwc = image_dims(manifest)
    return {
        "name": ENSEMBLE, "platform": "ensemble", "max_batch_size": opts.max_batch,
        "input": [_tensor("PROMPT", "TYPE_STRING", [1]), _tensor("IMAGE", "uint8", lr_hwc)],
        "output": [_tensor("SR_IMAGE", "uint8", sr_hwc)],
        "ensemble_scheduling": {"step": [
            _step(TOKENIZER, ["PROMPT"], ["tokens"]),
            _step("text_encoder", ["tokens"], ["text_embedding"]),
            _step(PREPROCESS, ["IMAGE"], ["lr"]),
            _step("generator", ["lr", "text_embedding"], ["sr"]),
            _step(POSTPROCESS, ["sr"], ["SR_IMAGE"]),
        ]},
    }
