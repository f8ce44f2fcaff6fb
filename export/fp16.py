"""Mixed-precision (FP16) copies of the exported graphs, for GPUs.

Weights and most ops go to float16; the ops whose fp16 range or accumulation breaks CLIP-like models
stay float32: LayerNorm (variance overflows fp16, a known TensorRT/CLIP problem), Softmax and every
reduction, plus onnxconverter-common's own list of ops ONNX Runtime has no fp16 kernel for. Inputs and
outputs stay float32, so the runtime feeds both precisions the same arrays. On CPU, ORT runs these
graphs only at ORT_ENABLE_EXTENDED (`clipsr_runtime.backends.ort.session_options` does that).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx

KEEP_FP32 = (
    "LayerNormalization", "Softmax", "LogSoftmax", "Pow", "Sqrt",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
)


def block_list() -> list[str]:
    """Ops kept in float32: ours plus the converter's default (ops without fp16 kernels)."""
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(KEEP_FP32))


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write a mixed-precision copy of `src` to `dst` (float32 I/O); the result passes onnx.checker."""
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    with warnings.catch_warnings():
        # Every weight below fp16's smallest normal is reported ("truncated to 1e-07"): expected, noisy.
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block_list())
    onnx.checker.check_model(half)
    dst = Path(dst)
    onnx.save(half, str(dst))
    return dst
